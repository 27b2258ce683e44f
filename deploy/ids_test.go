package deploy

import (
	"sync"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

// The fixtures name releases by labels ("old", "new", "r1"); rel gives a
// label's release id, and labelOf the label back, for what the tests
// compare and log.
var (
	labelsMu sync.Mutex
	labels   = map[image.ID]string{}
)

// rel is label's release id, the zero id for "" (none).
func rel(label string) image.ID {
	if label == "" {
		return image.ID{}
	}
	id := testid.Of(label)
	labelsMu.Lock()
	defer labelsMu.Unlock()
	labels[id] = label
	return id
}

// labelOf is the label rel gave id ("" for the zero id), else its digits.
func labelOf(id image.ID) string {
	if id.IsZero() {
		return ""
	}
	labelsMu.Lock()
	defer labelsMu.Unlock()
	if l, ok := labels[id]; ok {
		return l
	}
	return id.String()
}

package deploy

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/loopcast/loopcast/image"
)

// AuditEntry is one line of the sender's audit log: every deploy and
// rollback, who ran it, and how it ended.
type AuditEntry struct {
	Time     time.Time `json:"time"`
	User     string    `json:"user"`
	Action   string    `json:"action"` // "deploy" or "rollback"
	Group    string    `json:"group"`
	Release  image.ID  `json:"release"`
	Label    string    `json:"label,omitempty"`
	Hosts    []string  `json:"hosts"`
	Outcome  string    `json:"outcome"` // all, partial, none, or error
	Error    string    `json:"error,omitempty"`
	DeployID uint64    `json:"deploy_id,omitempty"`
	// Refused names each host that refused the release (or whose key was
	// refused), with the cause and detail, as the report shows them.
	Refused map[string]string `json:"refused,omitempty"`
	// Halted says why a rollout stopped and switched its hosts back.
	Halted string `json:"halted,omitempty"`
}

// AppendAudit appends e to the log at path and syncs it.
func AppendAudit(path string, e AuditEntry) error {
	if e.User == "" {
		e.User = "unknown"
		if u, err := user.Current(); err == nil {
			e.User = u.Username
		}
	}
	if e.Time.IsZero() {
		e.Time = time.Now().UTC()
	}
	line, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("deploy: audit: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("deploy: audit: %w", err)
	}
	defer f.Close()
	if _, err := f.Write(append(line, '\n')); err != nil {
		return fmt.Errorf("deploy: audit %s: %w", path, err)
	}
	return f.Sync()
}

// ErrNoHistory: the audit log does not say what came before a release.
var ErrNoHistory = errors.New("deploy: no earlier release in this sender's deploy history")

// PreviousRelease returns the release this sender deployed to group
// (successfully on some hosts) before the last deploy of current. It moves
// back through history: after a rollback to B, the next one goes to what
// came before B, never forward again.
// A line that does not read (a rollback an older sender logged with a
// target that is no release id) is no deploy of this sender: it is passed.
func PreviousRelease(path, group string, current image.ID) (image.ID, error) {
	f, err := os.Open(path)
	if err != nil {
		return image.ID{}, fmt.Errorf("%w (%v)", ErrNoHistory, err)
	}
	defer f.Close()
	var seq []image.ID
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e AuditEntry
		if json.Unmarshal(sc.Bytes(), &e) != nil || e.Action != "deploy" || e.Group != group || e.Release.IsZero() {
			continue
		}
		if e.Outcome == OutcomeAll.String() || e.Outcome == OutcomePartial.String() {
			seq = append(seq, e.Release)
		}
	}
	last := -1
	for i, id := range seq {
		if id == current {
			last = i
		}
	}
	for i := last - 1; i >= 0; i-- {
		if seq[i] != current {
			return seq[i], nil
		}
	}
	if last < 0 {
		return image.ID{}, fmt.Errorf("%w: %s was not deployed from here", ErrNoHistory, current)
	}
	return image.ID{}, fmt.Errorf("%w before %s", ErrNoHistory, current)
}

package release

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

// TestStateFileFormat: a state file written before release ids were typed
// (testdata/state-v1.json, printed by saveState of that code: ids as
// strings, a failure of no known id as "") loads into the typed state and
// is written back byte for byte; an empty store's state keeps its text.
func TestStateFileFormat(t *testing.T) {
	old, err := os.ReadFile("testdata/state-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := os.WriteFile(path, old, 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := loadState(path)
	if err != nil {
		t.Fatal(err)
	}
	a, b, q := testid.Parse("0123456789abcdef"), testid.Parse("fedcba9876543210"), testid.Parse("00000000000000aa")
	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	if st.Current != a || st.Previous != b || !cmp.Equal(st.Staged, []image.ID{q, testid.Parse("1111111111111111")}) ||
		len(st.Failed) != 2 || !st.Failed[0].ID.IsZero() || st.Failed[1].ID != q ||
		len(st.History) != 5 || st.History[0].ID != b || !st.History[0].LeftCurrentAt.Equal(at) ||
		!cmp.Equal(st.Slots, map[string]image.ID{"a": a, "b": b}) {
		t.Errorf("loaded %+v", st)
	}
	if err := saveState(path, st); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != string(old) {
		t.Errorf("written back (-old +new):\n%s", cmp.Diff(string(old), string(got)))
	}

	empty := filepath.Join(dir, "empty")
	if err := saveState(empty, &State{}); err != nil {
		t.Fatal(err)
	}
	want := "{\n  \"staged\": [],\n  \"failed\": [],\n  \"history\": [],\n  \"seq\": 0\n}\n"
	if got, _ := os.ReadFile(empty); string(got) != want {
		t.Errorf("empty state:\n%s\nwant\n%s", got, want)
	}
	for _, bad := range []string{`{"current": "v1"}`, `{"history": [{"id": "../../etc"}]}`} {
		if err := os.WriteFile(empty, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		if st, err := loadState(empty); err == nil {
			t.Errorf("loadState(%s) = %+v, want an error", bad, st)
		}
	}
}

package deploy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

func TestPreviousReleaseWalksBack(t *testing.T) {
	log := filepath.Join(t.TempDir(), "audit.log")
	v1, v2, v3, x9, bad := testid.Of("v1"), testid.Of("v2"), testid.Of("v3"), testid.Of("x9"), testid.Of("bad")
	for _, e := range []AuditEntry{
		{Action: "deploy", Group: "g", Release: v1, Outcome: "all"},
		{Action: "deploy", Group: "other", Release: x9, Outcome: "all"},
		{Action: "deploy", Group: "g", Release: v2, Outcome: "all"},
		{Action: "deploy", Group: "g", Release: bad, Outcome: "none"},
		{Action: "deploy", Group: "g", Release: v3, Outcome: "partial"},
		{Action: "rollback", Group: "g", Release: v2, Outcome: "all"},
		{Action: "deploy", Group: "g", Release: v3, Outcome: "all"},
	} {
		if err := AppendAudit(log, e); err != nil {
			t.Fatal(err)
		}
	}
	for cur, want := range map[image.ID]image.ID{v3: v2, v2: v1, x9: {}} {
		got, err := PreviousRelease(log, "g", cur)
		if want.IsZero() {
			if !errors.Is(err, ErrNoHistory) {
				t.Errorf("before %s: %q, %v; want ErrNoHistory", cur, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("before %s: %q, %v; want %s", cur, got, err, want)
		}
	}
	if _, err := PreviousRelease(log, "g", v1); !errors.Is(err, ErrNoHistory) {
		t.Errorf("before the first release: %v, want ErrNoHistory", err)
	}
}

// TestAuditLogFormat: an audit log written before release ids were typed
// (ids as strings; a rollback whose --to named no release, which that
// sender logged) still gives the history; a line is written as before.
func TestAuditLogFormat(t *testing.T) {
	log := filepath.Join(t.TempDir(), "audit.log")
	old := `{"time":"2024-05-01T12:00:00Z","user":"ops","action":"deploy","group":"g","release":"00000000000000a1","hosts":["web1"],"outcome":"all","deploy_id":7}
{"time":"2024-05-01T12:01:00Z","user":"ops","action":"rollback","group":"g","release":"v1","hosts":null,"outcome":"none"}
{"time":"2024-05-01T12:02:00Z","user":"ops","action":"deploy","group":"g","release":"00000000000000a2","hosts":["web1"],"outcome":"all","deploy_id":8}
`
	if err := os.WriteFile(log, []byte(old), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err := PreviousRelease(log, "g", testid.Parse("00000000000000a2")); err != nil || got != testid.Parse("00000000000000a1") {
		t.Errorf("PreviousRelease over the old log: %s, %v; want 00000000000000a1", got, err)
	}
	e := AuditEntry{Action: "deploy", Group: "g", Release: testid.Parse("00000000000000a3"), User: "ops", Hosts: []string{"web1"}, Outcome: "all", DeployID: 9}
	e.Time, _ = time.Parse(time.RFC3339, "2024-05-01T12:03:00Z")
	if err := AppendAudit(log, e); err != nil {
		t.Fatal(err)
	}
	want := old + `{"time":"2024-05-01T12:03:00Z","user":"ops","action":"deploy","group":"g","release":"00000000000000a3","hosts":["web1"],"outcome":"all","deploy_id":9}` + "\n"
	if b, _ := os.ReadFile(log); string(b) != want {
		t.Errorf("log:\n%s\nwant\n%s", b, want)
	}
}

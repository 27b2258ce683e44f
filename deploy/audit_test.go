package deploy

import (
	"errors"
	"path/filepath"
	"testing"
)

func TestPreviousReleaseWalksBack(t *testing.T) {
	log := filepath.Join(t.TempDir(), "audit.log")
	for _, e := range []AuditEntry{
		{Action: "deploy", Group: "g", Release: "v1", Outcome: "all"},
		{Action: "deploy", Group: "other", Release: "x9", Outcome: "all"},
		{Action: "deploy", Group: "g", Release: "v2", Outcome: "all"},
		{Action: "deploy", Group: "g", Release: "bad", Outcome: "none"},
		{Action: "deploy", Group: "g", Release: "v3", Outcome: "partial"},
		{Action: "rollback", Group: "g", Release: "v2", Outcome: "all"},
		{Action: "deploy", Group: "g", Release: "v3", Outcome: "all"},
	} {
		if err := AppendAudit(log, e); err != nil {
			t.Fatal(err)
		}
	}
	for cur, want := range map[string]string{"v3": "v2", "v2": "v1", "x9": ""} {
		got, err := PreviousRelease(log, "g", cur)
		if want == "" {
			if !errors.Is(err, ErrNoHistory) {
				t.Errorf("before %s: %q, %v; want ErrNoHistory", cur, got, err)
			}
			continue
		}
		if err != nil || got != want {
			t.Errorf("before %s: %q, %v; want %s", cur, got, err, want)
		}
	}
	if _, err := PreviousRelease(log, "g", "v1"); !errors.Is(err, ErrNoHistory) {
		t.Errorf("before the first release: %v, want ErrNoHistory", err)
	}
}

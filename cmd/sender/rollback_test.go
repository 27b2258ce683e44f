package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestRollbackTargetIsAReleaseID: --to takes a release id (16 lowercase
// hex digits); anything else is refused, naming the flag, before anything
// is sent.
func TestRollbackTargetIsAReleaseID(t *testing.T) {
	dir := t.TempDir()
	for _, to := range []string{"v1", "0123456789ABCDEF", "../../etc"} {
		_, err := run(t, "rollback", "--key", filepath.Join(dir, "release.key"), "--state-dir", dir, "--to", to)
		if err == nil || !strings.Contains(err.Error(), "--to \""+to+"\" is not a release id") {
			t.Errorf("rollback --to %s: %v, want a refusal naming --to", to, err)
		}
	}
}

// Package testenv gates tests on the machine's capabilities: root, loop
// devices, network namespaces, external tools. Outside CI a missing
// prerequisite skips the test with the reason; under CI=true it fails it,
// so a CI run never passes by silently skipping.
package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under CI (CI=true).
func InCI() bool { return os.Getenv("CI") == "true" }

// Missing skips t outside CI and fails it under CI.
func Missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if InCI() {
		t.Fatalf("prerequisite missing under CI=true: "+format, args...)
	}
	t.Skipf("skipped, prerequisite missing: "+format, args...)
}

// RequireRoot needs uid 0.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		Missing(t, "needs root")
	}
}

// RequireTool needs an executable on PATH and returns its path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(t, "needs %s on PATH (run scripts/install-deps.sh)", name)
	}
	return p
}

// RequireLoop needs root and /dev/loop-control.
func RequireLoop(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		Missing(t, "needs /dev/loop-control: %v", err)
	}
}

// RequireNetns needs root and the ip tool for network namespaces.
func RequireNetns(t testing.TB) {
	t.Helper()
	RequireRoot(t)
	RequireTool(t, "ip")
	RequireTool(t, "nsenter")
}

// Long skips t under -short.
func Long(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("skipped under -short")
	}
}

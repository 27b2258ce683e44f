package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/agent"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/release"
)

func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer, app.ErrWriter = &out, &out
	err := app.Run(append([]string{"receiver"}, args...))
	return out.String(), err
}

func TestStatusOfAnEmptyStore(t *testing.T) {
	root := t.TempDir()
	if _, err := release.Open(root, release.Options{}); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "status", "--root", root)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^current +-$`).MatchString(out) || !regexp.MustCompile(`(?m)^last refusal +-$`).MatchString(out) {
		t.Errorf("status of an empty store:\n%s", out)
	}
	out, err = run(t, "status", "--root", root, "--json")
	if err != nil {
		t.Fatal(err)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Errorf("status --json is not JSON: %v\n%s", err, out)
	}
}

func TestLocalCommandsRefuseAMissingStore(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "nope")
	for _, cmd := range []string{"status", "rollback"} {
		_, err := run(t, cmd, "--root", missing)
		if err == nil || !strings.Contains(err.Error(), "no release store at "+missing) {
			t.Errorf("%s on a missing root: %v", cmd, err)
		}
		if _, serr := os.Stat(missing); !errors.Is(serr, os.ErrNotExist) {
			t.Errorf("%s created %s", cmd, missing)
		}
	}
}

func TestRollbackWithNothingToRollBackTo(t *testing.T) {
	root := t.TempDir()
	release.Open(root, release.Options{})
	_, err := run(t, "rollback", "--root", root)
	if !errors.Is(err, release.ErrNoPrevious) {
		t.Errorf("rollback of an empty store: %v, want ErrNoPrevious", err)
	}
}

func TestRunChecksItsArguments(t *testing.T) {
	dir := t.TempDir()
	pub, err := image.GenerateKeyFiles(filepath.Join(dir, "release.key"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"run", "--root", dir}, "--trust"},
		{[]string{"run", "--root", dir, "--trust", pub, "--group", "10.0.0.1:5000"}, "not a multicast"},
		{[]string{"run", "--root", dir, "--trust", pub, "--host-id", ""}, "--host-id"},
		{[]string{"run", "--root", dir, "--trust", filepath.Join(dir, "missing.pub")}, "missing.pub"},
		{[]string{"run", "--root", dir, "--trust", pub, "--relay-iface", "eth1"}, "--relay-iface needs --relay"},
		{[]string{"run", "--root", dir, "--trust", pub, "--relay", "--relay-group", "10.0.0.1:5000"}, "--relay-group"},
		{[]string{"run", "--root", dir, "--trust", pub, "--relay", "--relay-rate", "fast"}, "--relay-rate"},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("receiver %v: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
}

// TestReleaseIDArguments: a release named on the command line is 16
// lowercase hex digits; anything else is refused, naming the flag, before
// the store changes.
func TestReleaseIDArguments(t *testing.T) {
	root := t.TempDir()
	if _, err := release.Open(root, release.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"rollback", "--root", root, "--to", "v1"}, `--to "v1" is not a release id`},
		{[]string{"rollback", "--root", root, "--to", "0000000000000000"}, "names no release"},
		{[]string{"verify", "--root", root, "../../etc"}, `"../../etc" is not a release id`},
	} {
		_, err := run(t, tc.args...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("receiver %v: %v, want an error mentioning %q", tc.args, err, tc.want)
		}
	}
	if _, err := os.Stat(filepath.Join(root, agent.LocalCommandFile)); err == nil {
		t.Error("a refused rollback recorded a local command")
	}
}

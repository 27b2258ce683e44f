package e2e

import (
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/creack/pty"
)

// csi matches a terminal control sequence (cursor moves, clears, colours);
// phaseLine a line the console prints when a phase is over.
var (
	csi       = regexp.MustCompile("\x1b\\[[0-9;?]*[A-Za-z]")
	phaseLine = regexp.MustCompile(`^(transfer \w+|stage|switch): +[0-9.]+(ms|s|µs)$`)
)

// TestDeployTerminalOutput runs a deploy under a pseudo-terminal, as an
// operator would: the live display is drawn, no line printed meanwhile
// shares a screen line with it, and idle repair rounds are not printed one
// by one.
func TestDeployTerminalOutput(t *testing.T) {
	c, work, key := newTestCluster(t, "t")
	tree := filepath.Join(work, "tree")
	synthTree(t, tree, "small", 3)
	cmd := exec.Command(filepath.Join(c.repo, "scripts/cluster.sh"), "--name", c.name, "exec", c.name+"-s",
		filepath.Join(c.bin, "sender"), "deploy", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3",
		"--rate", "10M" /* a transfer long enough for the display to redraw while lines print */, "--state-dir", filepath.Join(work, "state"), tree)
	cmd.Env = append(os.Environ(), "LOOPCAST_BIN="+c.bin, "TERM=xterm", "NO_COLOR=")
	f, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 40, Cols: 200})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(f)
	var pe *os.PathError
	if err != nil && !(errors.As(err, &pe)) { // EIO once the child closes the terminal
		t.Fatal(err)
	}
	f.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("deploy: %v\n%s", err, raw)
	}
	out := string(raw)
	if n := strings.Count(out, "on the wire"); n < 2 {
		t.Errorf("the live display was drawn %d times, want it redrawn as the transfer went:\n%q", n, out)
	}
	// what each screen line shows: a cursor-up or clear starts a fresh
	// line, as a carriage return does
	screen := strings.ReplaceAll(out, "\r\n", "\n")
	screen = regexp.MustCompile("\x1b\\[[0-9]*[AJK]").ReplaceAllString(screen, "\n")
	screen = csi.ReplaceAllString(screen, "")
	logs := 0
	for _, line := range regexp.MustCompile("[\r\n]").Split(screen, -1) {
		log := strings.Contains(line, "deploy: built release") || phaseLine.MatchString(line)
		bar := strings.Contains(line, "on the wire") || strings.Contains(line, "registered,") || strings.Contains(line, "% of ")
		if log && bar {
			t.Errorf("a printed line shares its screen line with the live display: %q", line)
		}
		if log {
			logs++
		}
	}
	if logs < 3 {
		t.Errorf("%d lines printed besides the display; want the build and the phases:\n%q", logs, out)
	}
	if n := strings.Count(out, " round "); n > 0 {
		t.Errorf("%d repair rounds printed without -v", n)
	}
	if !strings.Contains(out, "NEEDED") || !strings.Contains(out, "multicast") {
		t.Errorf("the final table lacks the received bytes or the path:\n%s", csi.ReplaceAllString(out, ""))
	}
}

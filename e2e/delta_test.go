package e2e

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/synth"
)

// TestDeltaDeploy deploys tree A, wipes one host, then deploys C (A with
// files modified, added and deleted): every host, the wiped one too, must
// end serving exactly C.
func TestDeltaDeploy(t *testing.T) {
	c, work, key := newTestCluster(t, "d")
	tree := filepath.Join(work, "tree")
	synthTree(t, tree, "small", 7)
	deploy := func(what string) string {
		out, log, err := c.sender("deploy", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3",
			"--state-dir", filepath.Join(work, "state"), "--epoch", "1700000000", tree)
		if err != nil {
			t.Fatalf("deploy %s: %v\n%s\n%s", what, err, out, log)
		}
		return out + log
	}
	deploy("A")
	if out, err := c.script("wipe", "2"); err != nil {
		t.Fatalf("wipe r2: %v\n%s", err, out)
	}
	ch, err := synth.ApplyChanges(tree, synth.ChangeSet{Seed: 9, Modify: 20, Add: 5, Delete: 5})
	if err != nil {
		t.Fatal(err)
	}
	out := deploy("C")
	if !strings.Contains(out, "layout kept") {
		t.Errorf("deploy of C did not build on A's layout:\n%s", out)
	}
	checkServesTree(t, c, tree, fmt.Sprintf("C (%d modified, %d added, %d deleted)", len(ch.Modified), len(ch.Added), len(ch.Deleted)))

	// D: one more file changed; every host holds C, so only the chunks
	// that changed go on the wire.
	if _, err := synth.ApplyChanges(tree, synth.ChangeSet{Seed: 11, Modify: 1}); err != nil {
		t.Fatal(err)
	}
	out = deploy("D")
	m := chunkLine.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("deploy report has no chunk line:\n%s", out)
	}
	total, zero, reused, sent := atoi(m[1]), atoi(m[2]), atoi(m[3]), atoi(m[4])
	t.Logf("D: %d chunks, %d zero, %d reused, %d sent", total, zero, reused, sent)
	if reused == 0 || sent == 0 || sent >= total-zero {
		t.Errorf("D: %d reused, %d sent of %d non-zero chunks; want most reused and few sent", reused, sent, total-zero)
	}
	// every host holds C, the base of D: changed chunks go as deltas against it
	if d := deltaLine.FindStringSubmatch(out); d == nil || atoi(d[1]) == 0 {
		t.Errorf("D: no chunk sent as a delta against C:\n%s", out)
	}
	checkServesTree(t, c, tree, "D")
}

var (
	chunkLine = regexp.MustCompile(`chunks (\d+): (\d+) all-zero, (\d+) reused from the hosts' own images, (\d+) sent`)
	deltaLine = regexp.MustCompile(`\((\d+) as deltas\)`)
)

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// checkServesTree asserts every host's current release holds tree.
func checkServesTree(t *testing.T, c *cluster, tree, what string) {
	t.Helper()
	for i := 1; i <= c.n; i++ {
		served, err := filepath.EvalSymlinks(filepath.Join(c.dir, fmt.Sprintf("r%d", i), "current"))
		if err != nil {
			t.Fatalf("r%d: %v", i, err)
		}
		if diff := sameTree(t, tree, served); diff != "" {
			t.Errorf("r%d does not serve %s: %s", i, what, diff)
		}
	}
}

// sameTree compares regular files, symlinks and directories of want and
// got by path and content, and checks got holds nothing more than want
// (but lost+found); it returns the first difference.
func sameTree(t *testing.T, want, got string) string {
	var diff string
	filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || diff != "" {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		q := filepath.Join(got, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			a, _ := os.Readlink(p)
			if b, err := os.Readlink(q); err != nil || a != b {
				diff = "symlink " + rel
			}
		case d.Type().IsRegular():
			a, _ := os.ReadFile(p)
			if b, err := os.ReadFile(q); err != nil || !bytes.Equal(a, b) {
				diff = "file " + rel
			}
		case d.IsDir():
			if fi, err := os.Stat(q); err != nil || !fi.IsDir() {
				diff = "directory " + rel
			}
		}
		return nil
	})
	if diff == "" && count(got) != count(want)+1 {
		diff = fmt.Sprintf("%d entries, want %d and lost+found", count(got), count(want))
	}
	return diff
}

func count(root string) int {
	n := 0
	filepath.WalkDir(root, func(string, fs.DirEntry, error) error { n++; return nil })
	return n
}

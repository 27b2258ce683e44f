package release

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/loopcast/loopcast/internal/mounttest"

	"github.com/google/go-cmp/cmp"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/loopmount"
)

func TestStageActivate(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	a := f.stage(s, "A")
	mustMounted(t, s, a, true)
	if exists(s.CurrentPath()) {
		t.Fatal("current exists after staging only")
	}
	if st := state(t, s); !cmp.Equal(st.Staged, []image.ID{a}) || !st.Current.IsZero() {
		t.Errorf("state after stage: staged %v current %q; want [%s] and none", st.Staged, st.Current, a)
	}
	if err := s.Activate(a); err != nil {
		t.Fatal(err)
	}
	b := f.deploy(s, "B")
	if got := linkTarget(t, s); got != releaseLink(b) {
		t.Errorf("current -> %s, want %s", got, releaseLink(b))
	}
	if got := served(t, s); got != "B" {
		t.Errorf("serving %q, want B", got)
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if st.Current != b || st.Previous != a || len(st.Staged) != 0 || len(st.Releases) != 2 || st.FreeBytes <= 0 {
		t.Errorf("status %+v; want current %s previous %s, 2 releases, free space", st, b, a)
	}
	for _, r := range st.Releases {
		if !r.Mounted {
			t.Errorf("release %s not mounted", r.ID)
		}
	}
	raw, err := os.ReadFile(filepath.Join(s.Root(), "state"))
	if err != nil {
		t.Fatal(err)
	}
	var js map[string]any
	if err := json.Unmarshal(raw, &js); err != nil {
		t.Fatalf("state file is not JSON: %v", err)
	}
	for _, k := range []string{"current", "previous", "staged", "failed", "history"} {
		if _, ok := js[k]; !ok {
			t.Errorf("state file lacks %q: %s", k, raw)
		}
	}
}

// TestSwitchAtomic: a reader resolving current and reading files in it
// while switches repeat never sees a missing path or a mix of releases.
func TestSwitchAtomic(t *testing.T) {
	const (
		switches = 300     // flips between two releases
		minReads = 5000    // reads the reader does at least
		maxReads = 2000000 // bound, so a reader that never sees both ends
	)
	f := newFixture(t)
	s := f.open(Options{})
	a := f.deploy(s, "A")
	b := f.deploy(s, "B")
	ids := map[string]image.ID{"A": a, "B": b}
	var done atomic.Bool
	var wg sync.WaitGroup
	var readErr error
	seen := map[string]int{}
	wg.Go(func() {
		for i := 0; i < maxReads && (i < minReads || !done.Load() || len(seen) < 2); i++ {
			rel, err := readRelease(s.CurrentPath(), ids)
			if err != nil {
				readErr = err
				return
			}
			seen[rel]++
		}
	})
	for i := range switches {
		var err error
		if i%2 == 0 {
			_, err = s.Rollback(image.ID{})
		} else {
			err = s.Activate(b)
		}
		if err != nil {
			t.Fatalf("switch %d: %v", i, err)
		}
	}
	done.Store(true)
	wg.Wait()
	if readErr != nil {
		t.Fatal(readErr)
	}
	if seen["A"] == 0 || seen["B"] == 0 || len(seen) != 2 {
		t.Errorf("reader saw %v; want both A and B and nothing else", seen)
	}
	if got := state(t, s).Current; got != b {
		t.Errorf("after %d switches current = %s, want %s", switches, got, a)
	}
}

// readRelease reads like nginx with $realpath_root: resolve current once,
// then read files under that real path and through the link. The files
// must agree with each other and with the release directory (ids maps
// content to release id).
func readRelease(current string, ids map[string]image.ID) (string, error) {
	real, err := filepath.EvalSymlinks(current)
	if err != nil {
		return "", err
	}
	a, err := os.ReadFile(filepath.Join(real, "a.txt"))
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(real, "b.txt"))
	if err != nil {
		return "", err
	}
	if string(a) != string(b) || ids[string(a)].String() != filepath.Base(real) {
		return "", fmt.Errorf("mix of releases: %s holds %q and %q", real, a, b)
	}
	if _, err := os.ReadFile(filepath.Join(current, "id.txt")); err != nil {
		return "", err
	}
	return string(a), nil
}

func TestRollback(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	a := f.deploy(s, "A")
	b := f.deploy(s, "B")
	c := f.deploy(s, "C")
	before, err := loopmount.FindMounts(s.imagePath(b))
	if err != nil || len(before) != 1 {
		t.Fatalf("mounts of B = %v, %v", before, err)
	}
	if got, err := s.Rollback(image.ID{}); err != nil || got != b {
		t.Fatalf("Rollback() = %s, %v; want %s", got, err, b)
	}
	if got := served(t, s); got != "B" {
		t.Errorf("after rollback serving %q, want B", got)
	}
	after, _ := loopmount.FindMounts(s.imagePath(b))
	if !cmp.Equal(before, after) {
		t.Errorf("rollback remounted B: before %v, after %v", before, after)
	}
	if st := state(t, s); st.Current != b || st.Previous != c {
		t.Errorf("state current %s previous %s; want %s, %s", st.Current, st.Previous, b, c)
	}
	if got, err := s.Rollback(a); err != nil || got != a || served(t, s) != "A" {
		t.Fatalf("Rollback(A) = %s, %v; want A served", got, err)
	}
	if _, err := s.Rollback(a); !errors.Is(err, ErrAlreadyCurrent) {
		t.Errorf("Rollback to current: %v, want ErrAlreadyCurrent", err)
	}
	if _, err := s.Rollback(testid.Parse("0123456789abcdef")); !errors.Is(err, ErrNotStaged) {
		t.Errorf("Rollback to unknown: %v, want ErrNotStaged", err)
	}
	// A name that would climb out of the store is no release id: it is
	// refused where it is parsed, and never reaches the store.
	if id, err := image.ParseID("../../etc"); err == nil {
		t.Errorf("ParseID(../../etc) = %s, want an error", id)
	}
	// Rolling forward is an activation of a newer release.
	if err := s.Activate(c); err != nil || served(t, s) != "C" {
		t.Fatalf("Activate(C) after rollback: %v", err)
	}
	// Going back without a rollback is a downgrade.
	if err := s.Activate(a); !errors.Is(err, ErrDowngrade) {
		t.Errorf("Activate(A) with C current: %v, want ErrDowngrade", err)
	}
	if got := served(t, s); got != "C" || state(t, s).Current != c {
		t.Errorf("after refused downgrade serving %q (state %s), want C", got, state(t, s).Current)
	}
}

func TestRollbackWithoutPrevious(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	f.deploy(s, "A")
	if _, err := s.Rollback(image.ID{}); !errors.Is(err, ErrNoPrevious) {
		t.Errorf("Rollback with one release: %v, want ErrNoPrevious", err)
	}
	if st := state(t, s); !strings.Contains(st.LastError, "no previous") {
		t.Errorf("last error %q, want the rollback failure", st.LastError)
	}
}

// TestRetentionCountsGoodReleases: Keep counts activated releases;
// failed and never-activated releases push no good one out.
func TestRetentionCountsGoodReleases(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{Keep: 2})
	a := f.deploy(s, "A")
	b := f.deploy(s, "B")
	c := f.deploy(s, "C")
	// Keep 2: C (current), B (previous and good); A is retired.
	mustMounted(t, s, a, false)
	if exists(s.ReleaseDir(a)) || exists(s.imagePath(a)) || exists(s.manifestPath(a)) {
		t.Errorf("retired A left its directory or image behind")
	}
	d := f.stage(s, "D") // staged, never activated
	img, man := f.build("E")
	corrupt(t, img)
	if _, err := s.Stage(context.Background(), image.ID{}, img, man); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("stage corrupt E: %v, want ErrCorrupt", err)
	}
	for _, id := range []image.ID{b, c, d} {
		mustMounted(t, s, id, true)
	}
	mounttest.WaitLoops(t, f.dir, 3)
	if st := state(t, s); !cmp.Equal(st.Staged, []image.ID{d}) || len(st.Failed) != 1 {
		t.Errorf("state staged %v failed %v; want [%s] and E", st.Staged, st.Failed, d)
	}
	if err := s.Activate(d); err != nil {
		t.Fatal(err)
	}
	// Keep 2: D (current), C (previous); B is retired.
	mustMounted(t, s, b, false)
	for _, id := range []image.ID{c, d} {
		mustMounted(t, s, id, true)
	}
	mounttest.WaitLoops(t, f.dir, 2)
}

// corrupt flips a byte in the middle of a file.
func corrupt(t *testing.T, path string) {
	t.Helper()
	fh, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	fi, _ := fh.Stat()
	b := make([]byte, 1)
	off := fi.Size() / 2
	fh.ReadAt(b, off)
	b[0] ^= 0xff
	if _, err := fh.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// snapshot is what a refused stage must leave unchanged.
type snapshot struct {
	Link              string
	Current, Previous image.ID
	Staged            []image.ID
	Mounts            []string
	Images            []string
}

func takeSnapshot(t *testing.T, f *fixture, s *Store) snapshot {
	t.Helper()
	st := state(t, s)
	imgs, _ := filepath.Glob(filepath.Join(s.Root(), "images", "*"))
	link, _ := os.Readlink(s.CurrentPath())
	return snapshot{link, st.Current, st.Previous, st.Staged, mounttest.MountsUnder(t, f.dir), imgs}
}

func TestRefusals(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	f.deploy(s, "A")
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name    string
		prepare func(img, man string) (string, string)
		want    error
	}{
		{"corrupt image", func(img, man string) (string, string) { corrupt(t, img); return img, man }, ErrCorrupt},
		{"truncated image", func(img, man string) (string, string) { os.Truncate(img, 1<<20); return img, man }, ErrCorrupt},
		{"wrong key", func(img, man string) (string, string) { return img, f.manifest(img, "x", otherKey) }, image.ErrUntrustedKey},
		{"unsigned", func(img, man string) (string, string) { return img, unsign(t, man) }, image.ErrUnsigned},
		{"empty tree", func(string, string) (string, string) { return f.buildFiles("empty", nil, "4M") }, ErrEmptyTree},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			img, man := tc.prepare(f.build(strings.ReplaceAll(tc.name, " ", "-")))
			before := takeSnapshot(t, f, s)
			_, err := s.Stage(context.Background(), image.ID{}, img, man)
			if !errors.Is(err, tc.want) {
				t.Fatalf("Stage: %v, want %v", err, tc.want)
			}
			if diff := cmp.Diff(before, takeSnapshot(t, f, s)); diff != "" {
				t.Errorf("refused stage changed the store (-before +after):\n%s", diff)
			}
			if got := served(t, s); got != "A" {
				t.Errorf("serving %q, want A", got)
			}
			if st := state(t, s); st.LastError == "" || len(st.Failed) == 0 {
				t.Errorf("refusal not recorded: last error %q, failed %v", st.LastError, st.Failed)
			}
		})
	}
	t.Run("id mismatch", func(t *testing.T) {
		img, man := f.build("F")
		if _, err := s.Stage(context.Background(), testid.Parse("0123456789abcdef"), img, man); !errors.Is(err, ErrIDMismatch) {
			t.Errorf("Stage with the wrong id: %v, want ErrIDMismatch", err)
		}
	})
}

// unsign rewrites a manifest without its signature.
func unsign(t *testing.T, man string) string {
	t.Helper()
	m, err := image.ReadManifestFile(man)
	if err != nil {
		t.Fatal(err)
	}
	m.PublicKey, m.Signature = nil, nil
	if err := image.WriteManifestFile(man, m); err != nil {
		t.Fatal(err)
	}
	return man
}

// TestConcurrentStores: two stores on one root (the agent and a local
// command) switching at once stay consistent: the lock serialises them, so
// the state file agrees with the link.
func TestConcurrentStores(t *testing.T) {
	const rounds = 50 // per store; enough to interleave without a lock
	f := newFixture(t)
	s1 := f.open(Options{})
	a := f.deploy(s1, "A")
	b := f.deploy(s1, "B")
	s2 := f.open(Options{})
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, s := range []*Store{s1, s2} {
		wg.Go(func() {
			for range rounds {
				if _, err := s.Rollback(image.ID{}); err != nil {
					errs[i] = err
					return
				}
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	st := state(t, s1)
	if link := s1.linkedID(st); st.Current != link {
		t.Errorf("state current %s, link %s; want them equal", st.Current, link)
	}
	if got := map[image.ID]bool{st.Current: true, st.Previous: true}; !got[a] || !got[b] {
		t.Errorf("state current %s previous %s; want A and B", st.Current, st.Previous)
	}
	if st.Seq != uint64(4+2*rounds) {
		t.Errorf("seq %d, want %d: an update was lost", st.Seq, 4+2*rounds)
	}
}

// script is a shell started with its working directory in a release, like
// a long CLI job (`cd current && ...`); when told, it reads id.txt relative
// to that directory and a.txt by its absolute path, as PHP's
// `require __DIR__ . '/a.php'` does.
type script struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *strings.Builder
}

func startScript(t *testing.T, dir string) *script {
	t.Helper()
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `read go; cat id.txt; cat "$(pwd -P)/a.txt"`)
	cmd.Dir = real
	out := new(strings.Builder)
	cmd.Stdout = out
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill() // our own child, by pid
			cmd.Wait()
		}
	})
	return &script{cmd: cmd, stdin: stdin, out: out}
}

// finish lets the script read and waits for it to exit.
func (sc *script) finish() string {
	io.WriteString(sc.stdin, "go\n")
	sc.stdin.Close()
	if err := sc.cmd.Wait(); err != nil {
		return "error: " + err.Error()
	}
	return sc.out.String()
}

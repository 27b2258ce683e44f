package release

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/loopmount"
)

// clock is a settable time for retention tests.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC)} }

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// releaseStatus returns release id's line of the store's status, with its
// users.
func releaseStatus(t *testing.T, s *Store, id image.ID) ReleaseStatus {
	t.Helper()
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.WithUsers(st); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(st.Releases, func(r ReleaseStatus) bool { return r.ID == id })
	if i < 0 {
		t.Fatalf("release %s not in status %+v", id, st.Releases)
	}
	return st.Releases[i]
}

func hasUser(r ReleaseStatus, pid int, how string) bool {
	return slices.ContainsFunc(r.Users, func(p loopmount.Process) bool {
		return p.PID == pid && slices.Contains(p.Uses, how)
	})
}

// TestLongRunningScriptKeepsItsRelease is the scenario: a script
// started in `current` (its working directory the real path of release A)
// opens a file of A by absolute path after more than Keep deploys. A stays
// mounted while the script runs, status names the script, and A is
// retired once the script is gone.
func TestLongRunningScriptKeepsItsRelease(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{Keep: 2})
	a := f.deploy(s, "A")
	script := startScript(t, filepath.Join(s.CurrentPath(), "."))
	var later []image.ID
	for _, name := range []string{"B", "C", "D", "E", "F", "G"} {
		later = append(later, f.deploy(s, name))
	}
	mustMounted(t, s, a, true)
	for _, id := range later[:3] { // B, C, D: beyond Keep and used by nobody
		mustMounted(t, s, id, false)
	}
	r := releaseStatus(t, s, a)
	if r.Kept != keptInUse || !hasUser(r, script.cmd.Process.Pid, "cwd") {
		t.Errorf("status of A: kept %q, users %+v; want %q with pid %d (cwd)", r.Kept, r.Users, keptInUse, script.cmd.Process.Pid)
	}
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, a, true)
	if got := script.finish(); got != "AA" {
		t.Errorf("script in A read %q after 6 deploys, want AA (id.txt by a relative path, a.txt by its absolute path)", got)
	}
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, a, false)
	if exists(s.ReleaseDir(a)) || exists(s.imagePath(a)) {
		t.Errorf("A was not retired after its last user left")
	}
	mounttest.WaitLoops(t, f.dir, 2) // F (previous, within Keep), G (current)
}

// TestOpenFileKeepsItsRelease: a process holding a file of an old release
// open (nothing else) keeps it mounted, so new path lookups into it work.
func TestOpenFileKeepsItsRelease(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{Keep: 1})
	a := f.deploy(s, "A")
	held, err := os.Open(filepath.Join(s.CurrentPath(), "id.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	for _, name := range []string{"B", "C", "D"} {
		f.deploy(s, name)
	}
	if b, err := os.ReadFile(filepath.Join(s.ReleaseDir(a), "b.txt")); string(b) != "A" {
		t.Fatalf("a new lookup in A while a file of it is open = %q, %v; want A", b, err)
	}
	if r := releaseStatus(t, s, a); !hasUser(r, os.Getpid(), "fd") {
		t.Errorf("status of A does not list this process (an open file): %+v", r.Users)
	}
	held.Close()
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, a, false)
}

// TestKeepFor: a release that stopped being current less than KeepFor ago
// stays mounted beyond Keep; Retire retires it once KeepFor has passed; a
// reboot remounts every release still within KeepFor.
func TestKeepFor(t *testing.T) {
	f := newFixture(t)
	clk := newClock()
	opts := Options{Keep: 1, KeepFor: time.Hour, Clock: clk.now}
	s := f.open(opts)
	ids := map[string]image.ID{}
	for _, name := range []string{"A", "B", "C", "D"} {
		ids[name] = f.deploy(s, name)
		clk.advance(time.Minute)
	}
	// Keep 1 keeps D (current) and C (previous); A and B only by time.
	for _, name := range []string{"A", "B", "C", "D"} {
		mustMounted(t, s, ids[name], true)
	}
	if r := releaseStatus(t, s, ids["A"]); !strings.HasPrefix(r.Kept, keptFor) {
		t.Errorf("A kept %q, want %q", r.Kept, keptFor)
	}
	clk.advance(57 * time.Minute) // A left current 60 minutes ago, B 59
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, ids["A"], false)
	mustMounted(t, s, ids["B"], true)
	clk.advance(2 * time.Minute)
	ids["E"] = f.deploy(s, "E") // D left current now; B, C are past their hour
	ids["F"] = f.deploy(s, "F") // E is previous, D within --keep-for
	for name, want := range map[string]bool{"B": false, "C": false, "D": true, "E": true, "F": true} {
		mustMounted(t, s, ids[name], want)
	}
	reboot(t, f, s)
	s = f.open(opts)
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"D", "E", "F"} {
		mustMounted(t, s, ids[name], true)
	}
	if got := served(t, s); got != "F" {
		t.Errorf("serving %q after the reboot, want F", got)
	}
}

// TestMakeRoom, on a small tmpfs root with releases A and B kept only by
// --keep-for and a script working in A: a new release that needs B's space
// retires B (space wins over time) and never A; one that would need A's
// space too is refused with an error naming A and the script's pid, and
// nothing is lost.
func TestMakeRoom(t *testing.T) {
	f := newFixture(t)
	root := f.tmpfsRoot(32 << 20)
	clk := newClock()
	s := f.open(Options{Keep: 1, KeepFor: time.Hour, Reserve: 1 << 20, Clock: clk.now})
	a := f.deploy(s, "A")
	script := startScript(t, filepath.Join(s.CurrentPath(), "."))
	b := f.deploy(s, "B")
	f.deploy(s, "C")
	f.deploy(s, "D") // D current, C previous; A, B kept by --keep-for
	free, err := s.FreeBytes()
	if err != nil {
		t.Fatal(err)
	}
	room := free - s.opts.Reserve // what fits now
	before := takeSnapshot(t, f, s)
	err = s.MakeRoom(room + s.allocated(b) + s.allocated(a)/2)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("MakeRoom that needs A's space: %v, want ErrNoSpace", err)
	}
	for _, want := range []string{root, a.String(), fmt.Sprintf("pid %d", script.cmd.Process.Pid), "in use"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not name %q", err, want)
		}
	}
	if diff := cmp.Diff(before, takeSnapshot(t, f, s)); diff != "" {
		t.Errorf("a refused MakeRoom changed the store (-before +after):\n%s", diff)
	}
	if err := s.MakeRoom(room + s.allocated(b)/2); err != nil {
		t.Fatalf("MakeRoom that B's space covers: %v", err)
	}
	mustMounted(t, s, b, false)
	mustMounted(t, s, a, true)
	if got := script.finish(); got != "AA" {
		t.Errorf("script in A read %q, want AA", got)
	}
	if got := served(t, s); got != "D" {
		t.Errorf("serving %q, want D", got)
	}
}

// TestLease: a lease on current holds that release through later deploys
// (no working directory needed), and lets it go when closed.
func TestLease(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{Keep: 1})
	if _, err := LeaseCurrent(s.Root()); err == nil || !strings.Contains(err.Error(), "no current release") {
		t.Errorf("lease on an empty store: %v, want no current release", err)
	}
	a := f.deploy(s, "A")
	l, err := LeaseCurrent(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.ID != a || l.Dir != s.ReleaseDir(a) {
		t.Errorf("lease = %s at %s, want %s at %s", l.ID, l.Dir, a, s.ReleaseDir(a))
	}
	for _, name := range []string{"B", "C", "D"} {
		f.deploy(s, name)
	}
	if b, err := os.ReadFile(filepath.Join(l.Dir, "a.txt")); string(b) != "A" {
		t.Errorf("read in the leased release = %q, %v; want A", b, err)
	}
	l.Close()
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, a, false)
}

// Attack 9: stagings of older signed releases (replayed sessions, say)
// after a new release was staged must not retire that release before its
// ACTIVATE: pending releases are ranked by the signed build time.
func TestPendingKeptOverOlderStagings(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{Keep: 1, KeepFor: -1})
	f.created = 1000
	f.deploy(s, "cur")
	f.created = 3000
	next := f.stage(s, "next") // awaiting its ACTIVATE
	for i, name := range []string{"old1", "old2", "old3"} {
		f.created = int64(1100 + i)
		f.stage(s, name)
	}
	if err := s.Retire(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, next, true)
	if err := s.Activate(next); err != nil {
		t.Fatalf("activate the release staged before the older ones: %v", err)
	}
}

package release

import (
	"context"
	"errors"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/loopmount"
)

// fakeCache is a ScriptCache that records what the store asks of it.
type fakeCache struct {
	mu      sync.Mutex
	calls   []cacheCall
	busy    map[string][]string // dir -> running scripts
	unknown int                 // requests of unknown script
	ttl     time.Duration       // realpath_cache_ttl
	failInv error
}

type cacheCall struct {
	op    string
	dir   string
	paths []string // nil: everything under dir
}

func (c *fakeCache) Busy(_ context.Context, dir string) ([]string, int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.busy[dir], c.unknown, nil
}

func (c *fakeCache) RealpathCacheTTL(context.Context) (time.Duration, error) { return c.ttl, nil }

func (c *fakeCache) Invalidate(_ context.Context, dir string, paths []string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failInv != nil {
		return 0, c.failInv
	}
	c.calls = append(c.calls, cacheCall{"invalidate", dir, slices.Clone(paths)})
	return len(paths), nil
}

func (c *fakeCache) Compile(_ context.Context, dir string, paths []string) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, cacheCall{"compile", dir, slices.Clone(paths)})
	return len(paths), nil
}

// take returns the calls so far and forgets them.
func (c *fakeCache) take() []cacheCall {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := c.calls
	c.calls = nil
	return out
}

// slotRelease builds release name: id.txt and a.txt say name, same.txt is
// the same in every release.
func (f *fixture) slotRelease(s *Store, name string) image.ID {
	f.t.Helper()
	img, man := f.buildFiles(name, map[string]string{"id.txt": name, "a.txt": name, "same.txt": "same"}, "4M")
	id, err := s.Stage(context.Background(), image.ID{}, img, man)
	if err != nil {
		f.t.Fatalf("stage %s: %v", name, err)
	}
	return id
}

func (f *fixture) slotDeploy(s *Store, name string) image.ID {
	f.t.Helper()
	id := f.slotRelease(s, name)
	if err := s.Activate(id); err != nil {
		f.t.Fatalf("activate %s: %v", name, err)
	}
	return id
}

// twice: a slot's scripts are dropped before and after its old release is
// unbound.
func twice(c cacheCall) []cacheCall { return []cacheCall{c, c} }

func wantCalls(t *testing.T, got []cacheCall, want ...cacheCall) {
	t.Helper()
	if !slices.EqualFunc(got, want, func(a, b cacheCall) bool {
		return a.op == b.op && a.dir == b.dir && (a.paths == nil) == (b.paths == nil) && slices.Equal(a.paths, b.paths)
	}) {
		t.Fatalf("cache calls\n got %+v\nwant %+v", got, want)
	}
}

// TestSlotsRing deploys through a ring of three slots: each release takes
// the slot served longest ago, only the files that differ from the slot's
// old release are dropped from OPcache, `current` points at the slot, and a
// rollback is a flip to the previous release's slot.
func TestSlotsRing(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache, Keep: 5})
	slot := func(n string) string { return s.SlotDir(n) }

	ids := map[string]image.ID{}
	for i, name := range []string{"A", "B", "C"} {
		ids[name] = f.slotDeploy(s, name)
		n := string(rune('a' + i))
		// an empty slot: OPcache may hold anything from before under it
		wantCalls(t, cache.take(), twice(cacheCall{"invalidate", slot(n), nil})...)
		if got := linkTarget(t, s); got != "slots/"+n {
			t.Fatalf("after %s: current -> %s, want slots/%s", name, got, n)
		}
		if got := served(t, s); got != name {
			t.Fatalf("served %q, want %q", got, name)
		}
	}
	// D takes A's slot (served longest ago), not B's (the rollback target)
	ids["D"] = f.slotRelease(s, "D")
	wantCalls(t, cache.take(), twice(cacheCall{"invalidate", slot("a"), []string{"a.txt", "id.txt"}})...)
	st := state(t, s)
	if want := map[string]image.ID{"a": ids["D"], "b": ids["B"], "c": ids["C"]}; !maps.Equal(st.Slots, want) {
		t.Fatalf("slots %v, want %v", st.Slots, want)
	}
	mustMounted(t, s, ids["A"], true) // still kept, at its own path
	if err := s.Activate(ids["D"]); err != nil {
		t.Fatal(err)
	}
	if got := linkTarget(t, s); got != "slots/a" || served(t, s) != "D" {
		t.Fatalf("current -> %s serving %s, want slots/a serving D", got, served(t, s))
	}
	// the unchanged file is the same file at the same real path
	if b, _ := os.ReadFile(filepath.Join(slot("a"), "same.txt")); string(b) != "same" {
		t.Fatalf("same.txt in slot a: %q", b)
	}
	if to, err := s.Rollback(image.ID{}); err != nil || to != ids["C"] {
		t.Fatalf("rollback: %s, %v", to, err)
	}
	if got := linkTarget(t, s); got != "slots/c" || served(t, s) != "C" {
		t.Fatalf("after rollback: current -> %s serving %s", got, served(t, s))
	}
	// a rollback to a release that lost its slot flips to its own path
	if _, err := s.Rollback(ids["A"]); err != nil {
		t.Fatal(err)
	}
	if got := linkTarget(t, s); got != releaseLink(ids["A"]) || served(t, s) != "A" {
		t.Fatalf("rollback to A: current -> %s serving %s", got, served(t, s))
	}
	stat, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range stat.Releases {
		if r.ID == ids["D"] && (r.Slot != "a" || r.Dir != slot("a")) {
			t.Fatalf("status of D: slot %q dir %q", r.Slot, r.Dir)
		}
	}
}

// TestSlotsInUse: a slot a process works in, or where php-fpm runs a
// request, is not taken; with none free the release is served from its own
// path, and staging still succeeds.
func TestSlotsInUse(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{busy: map[string][]string{}}
	s := f.open(Options{Cache: cache, Keep: 5})
	ids := map[string]image.ID{}
	for _, name := range []string{"A", "B", "C"} {
		ids[name] = f.slotDeploy(s, name)
	}
	cache.take()
	sc := startScript(t, s.SlotDir("a")) // a long-running script in A's slot
	ids["D"] = f.slotRelease(s, "D")
	if got := state(t, s).Slots["b"]; got != ids["D"] {
		t.Fatalf("D went to %v; want slot b (a is in use)", state(t, s).Slots)
	}
	if got := sc.finish(); got != "AA" {
		t.Fatalf("the script in slot a read %q, want AA", got)
	}
	if err := s.Activate(ids["D"]); err != nil {
		t.Fatal(err)
	}
	// E: a is free again but php-fpm runs a request there; b is current;
	// C's slot c: a process works in it
	cache.busy[s.SlotDir("a")] = []string{s.SlotDir("a") + "/index.php"}
	sc = startScript(t, s.SlotDir("c"))
	cache.take()
	ids["E"] = f.slotRelease(s, "E")
	if st := state(t, s); st.slotOf(ids["E"]) != "" {
		t.Fatalf("E took a slot in use: %v", st.Slots)
	}
	wantCalls(t, cache.take()) // nothing dropped: no slot was taken
	if err := s.Activate(ids["E"]); err != nil {
		t.Fatal(err)
	}
	if got := linkTarget(t, s); got != releaseLink(ids["E"]) || served(t, s) != "E" {
		t.Fatalf("current -> %s serving %s, want E's own path", got, served(t, s))
	}
	if got := sc.finish(); got != "CC" {
		t.Fatalf("the script in slot c read %q", got)
	}
}

// TestSlotsCacheDown: when OPcache cannot be cleared the slot is not
// used.
func TestSlotsCacheDown(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{failInv: errors.New("pool down")}
	s := f.open(Options{Cache: cache})
	id := f.slotDeploy(s, "A")
	if got := linkTarget(t, s); got != releaseLink(id) {
		t.Fatalf("current -> %s, want %s", got, releaseLink(id))
	}
	if len(state(t, s).Slots) != 0 {
		t.Fatalf("slots %v with the pool down", state(t, s).Slots)
	}
}

// TestSlotsRetireAndReconcile: a retired release leaves its slot (the next
// release there drops every script under it), and Reconcile binds the
// slots again after their mounts are lost.
func TestSlotsRetireAndReconcile(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache, Keep: 1, Slots: 2})
	a := f.slotDeploy(s, "A")
	b := f.slotDeploy(s, "B")
	c := f.slotDeploy(s, "C") // Keep 1: A goes; its slot a is C's
	st := state(t, s)
	if st.live(a) != nil || !maps.Equal(st.Slots, map[string]image.ID{"a": c, "b": b}) {
		t.Fatalf("after C: A live %v, slots %v", st.live(a) != nil, st.Slots)
	}
	cache.take()
	d := f.slotDeploy(s, "D") // B (previous of C) is retired only after
	st = state(t, s)
	if st.Slots["b"] != d {
		t.Fatalf("D went to %v, want slot b", st.Slots)
	}
	wantCalls(t, cache.take(), twice(cacheCall{"invalidate", s.SlotDir("b"), []string{"a.txt", "id.txt"}})...)

	// A reboot: every mount gone, the state as it was.
	mounttest.UnmountUnder(t, s.Root())
	mounttest.WaitLoops(t, s.Root(), 0)
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := linkTarget(t, s); got != "slots/b" || served(t, s) != "D" {
		t.Fatalf("after reconcile: current -> %s serving %s", got, served(t, s))
	}
	if b, err := os.ReadFile(filepath.Join(s.SlotDir("a"), "id.txt")); err != nil || string(b) != "C" {
		t.Fatalf("slot a after reconcile: %q, %v", b, err)
	}
	// and a lease through current names the release, at the slot's path
	l, err := LeaseCurrent(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if l.ID != d || l.Dir != s.SlotDir("b") {
		t.Fatalf("lease %s at %s, want %s at %s", l.ID, l.Dir, d, s.SlotDir("b"))
	}
	// A store opened without a cache (a local command) keeps the slots.
	local := f.open(Options{})
	if _, err := local.Rollback(image.ID{}); err != nil {
		t.Fatal(err)
	}
	if got := linkTarget(t, s); got != "slots/a" || served(t, s) != "C" {
		t.Fatalf("local rollback: current -> %s serving %s", got, served(t, s))
	}
}

// TestSlotsWarm compiles the changed PHP files of the slot before the
// switch.
func TestSlotsWarm(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache, Warm: true, Slots: 2})
	build := func(name string) image.ID {
		img, man := f.buildFiles(name, map[string]string{"index.php": "<?php echo '" + name + "';", "lib.php": "<?php // same", "id.txt": name}, "4M")
		id, err := s.Stage(context.Background(), image.ID{}, img, man)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Activate(id); err != nil {
			t.Fatal(err)
		}
		return id
	}
	build("A")
	wantCalls(t, cache.take(), append(twice(cacheCall{"invalidate", s.SlotDir("a"), nil}), cacheCall{"compile", s.SlotDir("a"), []string{"index.php", "lib.php"}})...)
	build("B")
	cache.take()
	build("C")
	got := cache.take()
	wantCalls(t, got, append(twice(cacheCall{"invalidate", s.SlotDir("a"), []string{"id.txt", "index.php"}}), cacheCall{"compile", s.SlotDir("a"), []string{"index.php"}})...)
	if strings.Join(got[2].paths, ",") != "index.php" {
		t.Fatal(got)
	}
}

// TestSlotsCrash: a crash between emptying a slot and binding the new
// release there (state not yet saved) leaves the slot to its old release
// after Reconcile, the new one staged again from its image.
func TestSlotsCrash(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache, Slots: 2})
	a := f.slotDeploy(s, "A")
	b := f.slotDeploy(s, "B")
	img, man := f.buildFiles("C", map[string]string{"id.txt": "C", "a.txt": "C", "same.txt": "same"}, "4M")
	crashHook = func(step string) {
		if step == stepSlotUnbound {
			panic(step)
		}
	}
	func() {
		defer func() { crashHook = nil; recover() }()
		s.Stage(context.Background(), image.ID{}, img, man)
		t.Fatal("the stage did not reach the crash point")
	}()
	if mp, _ := isMount(s.SlotDir("a")); mp {
		t.Fatal("slot a is still bound at the crash point")
	}
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	st := state(t, s)
	if !maps.Equal(st.Slots, map[string]image.ID{"a": a, "b": b}) {
		t.Fatalf("slots after reconcile %v, want a: A, b: B", st.Slots)
	}
	if got, _ := os.ReadFile(filepath.Join(s.SlotDir("a"), "id.txt")); string(got) != "A" {
		t.Fatalf("slot a holds %q after reconcile, want A", got)
	}
	if served(t, s) != "B" || linkTarget(t, s) != "slots/b" {
		t.Fatalf("serving %s from %s", served(t, s), linkTarget(t, s))
	}
	// Reconcile adopted C's image, unplaced; the deploy, sent again,
	// places it and runs to its end.
	var c image.ID
	for _, e := range st.History {
		if e.ID != a && e.ID != b && !e.Retired {
			c = e.ID
		}
	}
	if c.IsZero() || st.slotOf(c) != "" {
		t.Fatalf("C (%q) not adopted, or placed by Reconcile: %v", c, st.Slots)
	}
	again := filepath.Join(f.dir, "C-again.img")
	if out, err := exec.Command("cp", s.imagePath(c), again).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, out)
	}
	if _, err := s.Stage(context.Background(), c, again, man); err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(c); err != nil || served(t, s) != "C" || linkTarget(t, s) != "slots/a" {
		t.Fatalf("deploy of C after the crash: %v, serving %s from %s", err, served(t, s), linkTarget(t, s))
	}
}

func isMount(dir string) (bool, error) { return loopmount.IsMountPoint(dir) }

// TestSlotsGrace: while php-fpm holds requests whose script it does not
// say (queued, reading headers), a slot served moments ago is not taken.
func TestSlotsGrace(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache, Keep: 5, Clock: func() time.Time { return now }})
	for _, name := range []string{"A", "B", "C"} {
		f.slotDeploy(s, name)
		now = now.Add(time.Second)
	}
	cache.unknown = 2
	d := f.slotRelease(s, "D")
	if st := state(t, s); st.slotOf(d) != "" {
		t.Fatalf("D took a slot served a second ago with 2 requests unplaced: %v", st.Slots)
	}
	now = now.Add(slotGrace)
	e := f.slotRelease(s, "E")
	if st := state(t, s); st.slotOf(e) != "a" {
		t.Fatalf("after the grace E went to %v, want slot a", st.Slots)
	}
}

// TestSlotsSymlinkChange: a release whose symlinks differ from the slot's
// drops every script of the slot, and only once the slot was last served
// longer ago than realpath_cache_ttl.
func TestSlotsSymlinkChange(t *testing.T) {
	f := newFixture(t)
	now := time.Now()
	cache := &fakeCache{ttl: time.Minute}
	s := f.open(Options{Cache: cache, Keep: 5, Slots: 2, Clock: func() time.Time { return now }})
	link := func(name, target string) image.ID {
		t.Helper()
		src := filepath.Join(f.dir, "src", name)
		os.MkdirAll(src, 0o755)
		os.Symlink(target, filepath.Join(src, "lib"))
		return f.slotDeploy(s, name)
	}
	link("A", "v1")
	now = now.Add(time.Second)
	link("B", "v1")
	now = now.Add(time.Second)
	cache.take()
	c := link("C", "v2") // slot a held A, served a second ago, lib -> v1
	if st := state(t, s); st.slotOf(c) != "" {
		t.Fatalf("C took a slot within realpath_cache_ttl of a symlink change: %v", st.Slots)
	}
	wantCalls(t, cache.take())
	now = now.Add(2 * time.Minute)
	d := link("D", "v3")
	if st := state(t, s); st.slotOf(d) == "" {
		t.Fatalf("D found no slot past realpath_cache_ttl: %v", st.Slots)
	}
	if got := cache.take(); len(got) != 2 || got[0].paths != nil {
		t.Fatalf("a symlink change dropped %+v, want everything under the slot, twice", got)
	}
}

// TestSlotsLostState: with the state file gone, Reconcile finds the slots
// from the kernel and current keeps serving through its slot.
func TestSlotsLostState(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache})
	f.slotDeploy(s, "A")
	b := f.slotDeploy(s, "B")
	if err := os.Remove(s.statePath()); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if served(t, s) != "B" || linkTarget(t, s) != "slots/b" || state(t, s).Slots["b"] != b {
		t.Fatalf("after losing the state: serving %s from %s, slots %v", served(t, s), linkTarget(t, s), state(t, s).Slots)
	}
	// an agent restarted without a pool keeps current's slot, and only it
	plain := f.open(Options{})
	if err := plain.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if served(t, s) != "B" || linkTarget(t, s) != "slots/b" {
		t.Fatalf("without a pool: serving %s from %s", served(t, s), linkTarget(t, s))
	}
	if st := state(t, s); len(st.Slots) != 1 {
		t.Fatalf("without a pool the slots are %v, want current's alone", st.Slots)
	}
}

// TestSlotsCrashAfterBind: a crash after a new release was bound but
// before the state was saved leaves the slot holding a tree the state does
// not name: Reconcile drops the slot's scripts before binding the recorded
// release back.
func TestSlotsCrashAfterBind(t *testing.T) {
	f := newFixture(t)
	cache := &fakeCache{}
	s := f.open(Options{Cache: cache, Slots: 2})
	a := f.slotDeploy(s, "A")
	f.slotDeploy(s, "B")
	img, man := f.buildFiles("C", map[string]string{"id.txt": "C", "a.txt": "C", "same.txt": "same"}, "4M")
	crashHook = func(step string) {
		if step == "stage"+stepSavingState {
			panic(step)
		}
	}
	func() {
		defer func() { crashHook = nil; recover() }()
		s.Stage(context.Background(), image.ID{}, img, man)
		t.Fatal("the stage did not reach the crash point")
	}()
	if got, _ := os.ReadFile(filepath.Join(s.SlotDir("a"), "id.txt")); string(got) != "C" {
		t.Fatalf("slot a holds %q at the crash, want C", got)
	}
	cache.take()
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(filepath.Join(s.SlotDir("a"), "id.txt")); string(got) != "A" || state(t, s).Slots["a"] != a {
		t.Fatalf("slot a after reconcile: %q, slots %v", got, state(t, s).Slots)
	}
	wantCalls(t, cache.take(), cacheCall{"invalidate", s.SlotDir("a"), nil})
}

package release

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/mounttest"

	"github.com/google/go-cmp/cmp"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// TestFullDisk: staging an image that does not fit on a small tmpfs root is
// refused with an error naming the root and the sizes; current keeps
// serving and nothing else changes.
func TestFullDisk(t *testing.T) {
	const (
		rootSize = 24 << 20 // room for one small release, not for the big one
		bigFile  = 30 << 20 // random, so it cannot be a hole
	)
	f := newFixture(t)
	root := f.tmpfsRoot(rootSize)
	s := f.open(Options{Reserve: 1 << 20})
	a := f.deploy(s, "A") // copied in: the images are built outside the tmpfs
	checkSparseCopy(t, s, a)
	big := make([]byte, bigFile)
	rand.Read(big)
	img, man := f.buildFiles("big", map[string]string{"id.txt": "big", "blob": string(big)}, "40M")
	before := takeSnapshot(t, f, s)
	_, err := s.Stage(context.Background(), image.ID{}, img, man)
	if !errors.Is(err, ErrNoSpace) {
		t.Fatalf("Stage of a too big image: %v, want ErrNoSpace", err)
	}
	for _, want := range []string{root, "need", "free"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
	if diff := cmp.Diff(before, takeSnapshot(t, f, s)); diff != "" {
		t.Errorf("refused stage changed the store (-before +after):\n%s", diff)
	}
	if got := served(t, s); got != "A" {
		t.Errorf("serving %q, want A", got)
	}
	if !exists(img) {
		t.Errorf("refused stage removed the caller's image %s", img)
	}
	if st, _ := s.Status(); st == nil || !strings.Contains(st.LastError, "free") {
		t.Errorf("status does not report the failure: %+v", st)
	}
}

// reboot unmounts every release below the fixture as a reboot would and
// waits for the devices to go.
func reboot(t *testing.T, f *fixture, s *Store) {
	t.Helper()
	mounttest.UnmountUnder(t, s.Root())
	mounttest.WaitLoops(t, f.dir, 0)
	if _, err := os.ReadFile(filepath.Join(s.CurrentPath(), "id.txt")); err == nil {
		t.Fatal("current still serves after the simulated reboot")
	}
}

func TestReconcileAfterReboot(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	a := f.deploy(s, "A")
	b := f.deploy(s, "B")
	c := f.deploy(s, "C")
	d := f.stage(s, "D")
	reboot(t, f, s)
	temps := []string{
		filepath.Join(s.Root(), ".state.tmp-1"),
		filepath.Join(s.Root(), "images", ".x.img.tmp-2"),
		filepath.Join(s.Root(), "images", "0123456789abcdef.manifest"), // its image never came
	}
	for _, p := range temps {
		os.WriteFile(p, []byte("partial"), 0o644)
	}
	s = f.open(Options{}) // the agent starts again
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []image.ID{a, b, c, d} {
		mustMounted(t, s, id, true)
	}
	if got := served(t, s); got != "C" {
		t.Errorf("after reconcile serving %q, want C", got)
	}
	for _, p := range temps {
		if exists(p) {
			t.Errorf("temporary file %s survived reconcile", p)
		}
	}
	if err := s.Reconcile(); err != nil || mounttest.LoopsUnder(t, f.dir) != 4 {
		t.Errorf("second reconcile: %v, %d loop devices; want no change, 4", err, mounttest.LoopsUnder(t, f.dir))
	}

	// C's image is lost: current is repaired to the previous release.
	reboot(t, f, s)
	os.Remove(s.imagePath(c))
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if got := served(t, s); got != "B" {
		t.Errorf("with C's image lost serving %q, want B", got)
	}
	if st := state(t, s); st.Current != b || len(st.Failed) != 1 || st.Failed[0].ID != c {
		t.Errorf("state current %s failed %v; want %s and C recorded", st.Current, st.Failed, b)
	}

	// A crash after the flip but before the state write: the link wins.
	if err := atomicfile.Symlink("releases/"+a.String(), s.CurrentPath()); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if st := state(t, s); st.Current != a || st.Previous != b {
		t.Errorf("state current %s previous %s; want %s, %s from the link", st.Current, st.Previous, a, b)
	}
}

// TestReconcileLostState: without a state file, reconcile adopts the
// verified images and takes current from the link.
func TestReconcileLostState(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	a := f.deploy(s, "A")
	b := f.deploy(s, "B")
	reboot(t, f, s)
	if err := os.Remove(filepath.Join(s.Root(), "state")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	mustMounted(t, s, a, true)
	if got := served(t, s); got != "B" {
		t.Errorf("serving %q, want B", got)
	}
	if st := state(t, s); st.Current != b || st.live(a) == nil {
		t.Errorf("state current %s, A live %v; want %s and A adopted", st.Current, st.live(a) != nil, b)
	}
}

// TestReconcileEmpty: a fresh store reconciles to nothing, without error.
func TestReconcileEmpty(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	if err := s.Reconcile(); err != nil {
		t.Fatal(err)
	}
	if exists(s.CurrentPath()) {
		t.Error("reconcile of an empty store made current")
	}
}

// checkSparseCopy checks that the copied image of id still matches its
// manifest and kept its holes.
func checkSparseCopy(t *testing.T, s *Store, id image.ID) {
	t.Helper()
	m, err := image.ReadManifestFile(s.manifestPath(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := verifyImage(context.Background(), s.imagePath(id), m); err != nil {
		t.Errorf("copied image: %v", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(s.imagePath(id), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks*512 >= st.Size {
		t.Errorf("copied image allocates %d of %d bytes; want holes", st.Blocks*512, st.Size)
	}
}

// A live release that cannot be mounted for a reason other than its image
// (here its directory is taken by another mount, as a transient failure
// would leave it) fails Reconcile, so the agent does not report ready, and
// keeps the image: the next Reconcile serves it again.
func TestReconcileKeepsImagesOnTransientFailure(t *testing.T) {
	f := newFixture(t)
	s := f.open(Options{})
	id := f.deploy(s, "a")
	mounttest.Cleanup(t, f.dir) // the reboot
	if err := unix.Mount("tmpfs", s.ReleaseDir(id), "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	err := s.Reconcile()
	unix.Unmount(s.ReleaseDir(id), 0)
	if err == nil || !strings.Contains(err.Error(), id.String()) {
		t.Fatalf("reconcile with the release dir taken: %v, want an error naming %s", err, id)
	}
	if _, err := os.Stat(s.imagePath(id)); err != nil {
		t.Fatalf("image discarded after a transient failure: %v", err)
	}
	if err := s.Reconcile(); err != nil {
		t.Fatalf("second reconcile: %v", err)
	}
	if got := served(t, s); got != "a" {
		t.Errorf("serving %q after the retry, want a", got)
	}
}

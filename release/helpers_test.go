package release

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/mounttest"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testenv"
	"golang.org/x/sys/unix"
)

// testKey signs the test manifests; the stores trust it.
var testPub, testKey, _ = ed25519.GenerateKey(rand.Reader)

// fixture is a test's scratch directory: images are built in dir/src, the
// store lives in dir/root.
type fixture struct {
	created int64 // the manifests' build time, when set
	t       *testing.T
	dir     string
}

// newFixture needs loop devices and mke2fs, and unmounts everything below
// its directory when the test ends, even on failure, then checks that no
// loop device backed by a file of the test is left.
func newFixture(t *testing.T) *fixture {
	t.Helper()
	testenv.RequireTool(t, "mke2fs")
	return &fixture{t: t, dir: mounttest.Dir(t)}
}

// tmpfsRoot mounts a tmpfs of size bytes where open puts the store's root,
// so the store sees a small filesystem of its own, and returns that path;
// the fixture's cleanup unmounts it.
func (f *fixture) tmpfsRoot(size int) string {
	f.t.Helper()
	root := filepath.Join(f.dir, "root")
	if err := os.MkdirAll(root, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size="+strconv.Itoa(size)); err != nil {
		f.t.Fatalf("mount tmpfs: %v", err)
	}
	return root
}

// open opens a store at dir/root trusting testKey. Unless opts say
// otherwise, --keep-for is off, so retention is by count (tests of the time
// rule set KeepFor).
func (f *fixture) open(opts Options) *Store {
	f.t.Helper()
	opts.TrustedKeys = []ed25519.PublicKey{testPub}
	if opts.KeepFor == 0 {
		opts.KeepFor = -1
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s, err := Open(filepath.Join(f.dir, "root"), opts)
	if err != nil {
		f.t.Fatal(err)
	}
	return s
}

// build makes an ext2 image whose files all say name (id.txt, a.txt,
// b.txt) and a signed manifest for it; it returns their paths.
func (f *fixture) build(name string) (img, man string) {
	f.t.Helper()
	return f.buildFiles(name, map[string]string{"id.txt": name, "a.txt": name, "b.txt": name}, "4M")
}

func (f *fixture) buildFiles(name string, files map[string]string, size string) (img, man string) {
	f.t.Helper()
	src := filepath.Join(f.dir, "src", name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		f.t.Fatal(err)
	}
	for n, c := range files {
		if err := os.WriteFile(filepath.Join(src, n), []byte(c), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	img = filepath.Join(f.dir, "src", name+".img")
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext2", "-d", src, img, size).CombinedOutput(); err != nil {
		f.t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return img, f.manifest(img, name, testKey)
}

// manifest hashes img and writes a manifest signed by key beside it.
func (f *fixture) manifest(img, label string, key ed25519.PrivateKey) string {
	f.t.Helper()
	m, err := image.HashFile(context.Background(), img, image.ChunkSize)
	if err != nil {
		f.t.Fatal(err)
	}
	m.Label = label
	if f.created != 0 {
		m.Created = f.created
	}
	m.Sign(key)
	man := strings.TrimSuffix(img, ".img") + ".manifest"
	if err := image.WriteManifestFile(man, m); err != nil {
		f.t.Fatal(err)
	}
	return man
}

// stage builds release name and stages it, returning its id.
func (f *fixture) stage(s *Store, name string) image.ID {
	f.t.Helper()
	img, man := f.build(name)
	id, err := s.Stage(context.Background(), image.ID{}, img, man)
	if err != nil {
		f.t.Fatalf("stage %s: %v", name, err)
	}
	return id
}

// deploy stages and activates release name.
func (f *fixture) deploy(s *Store, name string) image.ID {
	f.t.Helper()
	id := f.stage(s, name)
	if err := s.Activate(id); err != nil {
		f.t.Fatalf("activate %s (%s): %v", name, id, err)
	}
	return id
}

// served reads current/id.txt.
func served(t *testing.T, s *Store) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(s.CurrentPath(), "id.txt"))
	if err != nil {
		t.Fatalf("read current: %v", err)
	}
	return string(b)
}

// linkTarget reads the current symlink.
func linkTarget(t *testing.T, s *Store) string {
	t.Helper()
	l, err := os.Readlink(s.CurrentPath())
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func state(t *testing.T, s *Store) *State {
	t.Helper()
	st, err := s.State()
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func mustMounted(t *testing.T, s *Store, id image.ID, want bool) {
	t.Helper()
	if got := s.mounted(id); got != want {
		t.Errorf("release %s mounted = %v, want %v", id, got, want)
	}
}

func releaseLink(id image.ID) string { return fmt.Sprintf("releases/%s", id) }

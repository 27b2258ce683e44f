package release

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/loopmount"
)

// DefaultRoot is the agent's store when none is configured.
const DefaultRoot = "/srv/loopcast"

// DefaultKeep is how many activated releases stay mounted besides current
// and the rollback target: three deploys back covers a bad deploy found
// after the next one, at the cost of three images of disk.
const DefaultKeep = 3

// DefaultKeepFor is how long a release stays mounted after it stops being
// current, on top of Keep: a day covers the cron jobs, queue workers and
// CLI scripts of a web fleet that run for hours on one release, whatever
// the number of deploys in between.
const DefaultKeepFor = 24 * time.Hour

// DefaultReserve is the free space left on the root's filesystem after
// staging: room for the state file, logs and the web server's own writes,
// so staging never fills the disk the current release is served from.
const DefaultReserve = 64 << 20

// Names inside the root.
const (
	imagesDir   = "images"
	releasesDir = "releases"
	currentName = "current"
	stateName   = "state"
	lockName    = "lock"
)

// Options tune a Store.
type Options struct {
	// Keep is how many activated releases stay mounted besides current and
	// the rollback target; DefaultKeep when zero.
	Keep int
	// KeepFor is how long a release stays mounted after it stops being
	// current, on top of Keep; DefaultKeepFor when zero, none when negative.
	// When the disk needs the space for a new release, a release kept only
	// by KeepFor (and used by no process) is retired early, with a log line.
	KeepFor time.Duration
	// Reserve is the free space staging must leave; DefaultReserve when
	// zero, none when negative.
	Reserve int64
	// NoExec mounts releases noexec.
	NoExec bool
	// FSType is the image filesystem; loopmount.DefaultFSType when empty.
	FSType string
	// TrustedKeys, when set, makes Stage refuse a manifest not signed by
	// one of them. When empty the caller must have verified the manifest.
	TrustedKeys []ed25519.PublicKey
	// Cache is the OPcache of the php-fpm pool serving the releases. When
	// set, staged releases are placed in slots (see DefaultSlots).
	Cache ScriptCache
	// Slots is the slot ring's size with a Cache: DefaultSlots when zero,
	// none when negative.
	Slots int
	// Warm compiles a release's changed PHP files into OPcache when it is
	// placed in a slot, before any switch to it.
	Warm bool
	// Logger receives what the store does; slog.Default() when nil.
	Logger *slog.Logger
	// Clock is retention's clock and the time recorded in the state;
	// time.Now when nil. Tests set it.
	Clock func() time.Time
}

// Store is the release store under one root. Its methods are safe for
// concurrent use, also across processes (the agent and local commands).
type Store struct {
	root string
	opts Options
	log  *slog.Logger

	mu   sync.Mutex
	busy map[image.ID]string // release -> who held it when last logged
}

// Open opens the store at root, creating its directories.
func Open(root string, opts Options) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	for _, d := range []string{abs, filepath.Join(abs, imagesDir), filepath.Join(abs, releasesDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("release: %w", err)
		}
	}
	// The kernel reports mount points and backing files by real path.
	if abs, err = filepath.EvalSymlinks(abs); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if opts.Keep <= 0 {
		opts.Keep = DefaultKeep
	}
	if opts.KeepFor == 0 {
		opts.KeepFor = DefaultKeepFor
	}
	if opts.Slots == 0 {
		opts.Slots = DefaultSlots
	}
	if opts.Reserve == 0 {
		opts.Reserve = DefaultReserve
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Store{root: abs, opts: opts, log: log.With("root", abs)}, nil
}

// Root returns the store's root directory.
func (s *Store) Root() string { return s.root }

// A release's files are named by its id's 16 hex digits (image.ID), the
// only names the store makes under images/ and releases/: nothing from the
// network can name a path.

func (s *Store) imagePath(id image.ID) string {
	return filepath.Join(s.root, imagesDir, id.String()+".img")
}

func (s *Store) manifestPath(id image.ID) string {
	return filepath.Join(s.root, imagesDir, id.String()+".manifest")
}

// ReleaseDir returns the mount point of release id.
func (s *Store) ReleaseDir(id image.ID) string {
	return filepath.Join(s.root, releasesDir, id.String())
}

// CurrentPath returns the path of the `current` symlink.
func (s *Store) CurrentPath() string { return filepath.Join(s.root, currentName) }

// isID reports whether name is a release id's, as the store names files.
func isID(name string) bool {
	_, err := image.ParseID(name)
	return err == nil
}

// imageID returns the release an image path under images/ is of
// (<id>.img); ok is false for any other name.
func imageID(path string) (image.ID, bool) {
	name, ok := strings.CutSuffix(filepath.Base(path), ".img")
	if !ok {
		return image.ID{}, false
	}
	id, err := image.ParseID(name)
	if err != nil {
		return image.ID{}, false
	}
	return id, true
}

func (s *Store) statePath() string { return filepath.Join(s.root, stateName) }

func (s *Store) mountOptions() loopmount.Options {
	return loopmount.Options{FSType: s.opts.FSType, NoExec: s.opts.NoExec}
}

// lock takes the store's exclusive lock; the returned func releases it.
func (s *Store) lock() (func(), error) {
	path := filepath.Join(s.root, lockName)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("release: lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil
}

// update runs fn (operation op) on the state under the lock and saves the
// state, with fn's error recorded as the last error. fn's error is
// returned first.
func (s *Store) update(op string, fn func(st *State) error) error {
	return s.transact(op, func(st *State) (bool, error) { return true, fn(st) })
}

// transact is update for an fn that may change nothing: the state is saved
// only when fn says it changed it, or fails.
func (s *Store) transact(op string, fn func(st *State) (changed bool, err error)) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	st, err := loadState(s.statePath())
	if err != nil {
		return err
	}
	changed, opErr := fn(st)
	if !changed && opErr == nil {
		return nil
	}
	var ge guardError
	if errors.As(opErr, &ge) { // a guarded switch stopped: not a failure of the store
		return ge.err
	}
	if opErr != nil {
		st.LastError = opErr.Error() // the caller logs and reports opErr
	}
	crashPoint(op + stepSavingState)
	if err := saveState(s.statePath(), st); err != nil {
		if opErr != nil {
			s.log.Error("release: cannot record failure", "op", op, "err", err, "failure", opErr)
			return opErr
		}
		return err
	}
	return opErr
}

// State returns a copy of the state as last written.
func (s *Store) State() (*State, error) {
	return loadState(s.statePath())
}

// Kept is a live release's image and manifest on disk.
type Kept struct {
	ID              image.ID
	Image, Manifest string
}

// KeptImages lists the live releases, newest first, with the paths of
// their images and manifests: what a host can reuse chunks from.
func (s *Store) KeptImages() ([]Kept, error) {
	st, err := s.State()
	if err != nil {
		return nil, err
	}
	var out []Kept
	for _, e := range slices.Backward(st.History) {
		if e.Retired || e.Quarantined != "" || e.ID.IsZero() {
			continue
		}
		out = append(out, Kept{ID: e.ID, Image: s.imagePath(e.ID), Manifest: s.manifestPath(e.ID)})
	}
	return out, nil
}

// IncomingPath is where an image being received lands before staging:
// inside images/ (so staging renames it on the same filesystem), under a
// dot name (so it is never taken for a kept image).
func (s *Store) IncomingPath() string {
	return filepath.Join(s.root, imagesDir, ".incoming")
}

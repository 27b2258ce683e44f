package release

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/loopmount"
)

// lostFound is the directory mke2fs creates; alone it is not a tree.
const lostFound = "lost+found"

// now is the time recorded in the state file and retention's clock.
func (s *Store) now() time.Time {
	if s.opts.Clock != nil {
		return s.opts.Clock().UTC()
	}
	return time.Now().UTC()
}

func dirOf(path string) string { return filepath.Dir(path) }

// ensureMounted mounts release id's image at its release directory unless
// it is mounted there already, and checks that it holds a tree.
func (s *Store) ensureMounted(id image.ID) error {
	dir, img := s.ReleaseDir(id), s.imagePath(id)
	ms, err := loopmount.FindMounts(img)
	if err != nil {
		return err
	}
	for _, m := range ms {
		if m.Dir == dir {
			return checkTree(dir)
		}
	}
	if mp, err := loopmount.IsMountPoint(dir); err != nil || mp {
		return errors.Join(err, fmt.Errorf("release: %s is mounted, but not from %s", dir, img))
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if _, err := loopmount.MountImage(img, dir, s.mountOptions()); err != nil {
		return fmt.Errorf("release: mount %s: %w", id, err)
	}
	if err := checkTree(dir); err != nil {
		s.unmount(id)
		return err
	}
	s.log.Info("release: mounted", "id", id, "dir", dir)
	return nil
}

// mounted reports whether release id's directory is a mount point.
func (s *Store) mounted(id image.ID) bool {
	mp, err := loopmount.IsMountPoint(s.ReleaseDir(id))
	return err == nil && mp
}

// checkTree checks that a mounted release holds something besides
// lost+found.
func checkTree(dir string) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	for _, e := range ents {
		if e.Name() != lostFound {
			return nil
		}
	}
	return fmt.Errorf("%w: %s", ErrEmptyTree, dir)
}

// unmount unmounts release id and removes its mount point. A mount in use
// stays: the error matches loopmount.ErrBusy.
func (s *Store) unmount(id image.ID) error { return s.unmountDir(s.ReleaseDir(id)) }

// unmountDir unmounts a directory under releases/ (a release's, or a stray
// one named by no release) and removes it.
func (s *Store) unmountDir(dir string) error {
	if mp, err := loopmount.IsMountPoint(dir); err == nil && mp {
		if err := loopmount.Unmount(dir); err != nil {
			return err
		}
		s.log.Info("release: unmounted", "dir", dir)
	}
	if err := os.Remove(dir); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// discard unbinds release id from its slot, unmounts it and removes its
// image and manifest. A release in use is left whole (loopmount.ErrBusy).
func (s *Store) discard(st *State, id image.ID) error {
	if err := s.unbindRelease(st, id); err != nil {
		return err
	}
	err := s.unmount(id)
	if errors.Is(err, loopmount.ErrBusy) {
		return err
	}
	crashPoint(stepRetireUnmounted)
	for _, p := range []string{s.imagePath(id), s.manifestPath(id)} {
		if rerr := os.Remove(p); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) {
			err = errors.Join(err, fmt.Errorf("release: %w", rerr))
		}
	}
	return err
}

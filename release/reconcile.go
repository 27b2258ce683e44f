package release

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loopcast/loopcast/image"
)

// tmpMarker is in the names of atomicfile's temporary files.
const tmpMarker = ".tmp-"

// Reconcile brings the store in line with the disk at boot, before the
// agent reports ready: it removes temporary files, adopts images a crash
// left unrecorded, remounts every kept release, and repairs `current` when
// it points at a missing or broken release (to the recorded current, else
// the previous, else the newest activated one). It returns an error when
// releases exist but none can be served.
func (s *Store) Reconcile() error {
	return s.update("reconcile", func(st *State) error {
		s.removeTemps()
		adopted := s.adoptOrphans(st)
		if err := s.remountAll(st); err != nil {
			return err
		}
		s.rebindSlots(st)
		s.removeStrayDirs(st)
		if err := s.repairCurrent(st); err != nil {
			return err
		}
		// Adopted images stay until the next switch applies retention: with
		// the state lost, their history is unknown.
		_, err := s.prune(st, adopted...)
		return err
	})
}

// removeTemps removes temporary files an interrupted write left behind,
// and manifests whose image never arrived (Stage writes the manifest first).
func (s *Store) removeTemps() {
	for _, dir := range []string{s.root, filepath.Join(s.root, imagesDir)} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			n := e.Name()
			temp := strings.HasPrefix(n, ".") && strings.Contains(n, tmpMarker)
			if temp || dir != s.root && s.manifestOnly(n) {
				s.log.Info("release: removing leftover file", "path", filepath.Join(dir, n))
				os.Remove(filepath.Join(dir, n))
			}
		}
	}
}

// manifestOnly reports whether name is a manifest in images/ without its
// image.
func (s *Store) manifestOnly(name string) bool {
	base, ok := strings.CutSuffix(name, ".manifest")
	return ok && !exists(filepath.Join(s.root, imagesDir, base+".img"))
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// adoptOrphans records images that were adopted but not recorded (a crash
// in Stage after the rename, or a lost state file), oldest first by
// modification time. An image is only ever renamed into images/ after it
// was verified, so one with its manifest is staged; one without is
// removed, as is an image whose name is no release id. It returns the ids
// adopted.
func (s *Store) adoptOrphans(st *State) []image.ID {
	imgs, _ := filepath.Glob(filepath.Join(s.root, imagesDir, "*.img"))
	slices.SortFunc(imgs, func(a, b string) int { return cmp.Compare(mtime(a), mtime(b)) })
	var adopted []image.ID
	for _, img := range imgs {
		id, ok := imageID(img)
		if !ok {
			s.log.Warn("release: removing an image named by no release id", "path", img)
			os.Remove(img)
			os.Remove(strings.TrimSuffix(img, ".img") + ".manifest")
			continue
		}
		if st.live(id) != nil {
			continue
		}
		m, err := image.ReadManifestFile(s.manifestPath(id))
		if err == nil && m.ID() != id {
			err = fmt.Errorf("%w: %s names release %s", ErrIDMismatch, s.manifestPath(id), m.ID())
		}
		if err != nil {
			s.log.Warn("release: removing unrecorded image", "path", img, "err", err)
			s.discard(st, id)
			continue
		}
		s.log.Info("release: adopting unrecorded image", "id", id)
		s.record(st, id, m)
		adopted = append(adopted, id)
	}
	return adopted
}

// mtime returns a file's modification time in nanoseconds, 0 on error.
func mtime(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.ModTime().UnixNano()
}

// remountAll mounts every live release. One whose image is gone or holds
// no tree is recorded as failed and retired. Any other failure (no free
// loop device, a module not loaded yet at boot) may pass: the images stay
// and the first such error is returned, so the agent does not report ready
// and is started again, instead of throwing good releases away.
func (s *Store) remountAll(st *State) error {
	var transient error
	for i := range st.History {
		e := &st.History[i]
		if e.Retired {
			continue
		}
		err := s.ensureMounted(e.ID)
		switch {
		case err == nil:
		case errors.Is(err, fs.ErrNotExist) || errors.Is(err, ErrEmptyTree):
			if errors.Is(err, fs.ErrNotExist) {
				err = fmt.Errorf("release: image of %s is missing: %w", e.ID, err)
			}
			st.fail(e.ID, err)
			s.discard(st, e.ID)
			e.Retired = true
		case transient == nil:
			transient = fmt.Errorf("release: remount %s: %w (images kept; try again)", e.ID, err)
		}
	}
	return transient
}

// removeStrayDirs removes release directories that belong to no live
// release, unmounting them first.
func (s *Store) removeStrayDirs(st *State) {
	ents, _ := os.ReadDir(filepath.Join(s.root, releasesDir))
	for _, e := range ents {
		if id, err := image.ParseID(e.Name()); err != nil || st.live(id) == nil {
			if err := s.unmountDir(filepath.Join(s.root, releasesDir, e.Name())); err != nil {
				s.log.Warn("release: cannot remove stray release directory", "err", err)
			}
		}
	}
}

// repairCurrent makes `current` and the state agree on a live, mounted
// release. The link is the truth when it is sound: a crash between the
// flip and the state write leaves the state one switch behind.
func (s *Store) repairCurrent(st *State) error {
	if id := s.linkedID(st); st.live(id) != nil {
		if id != st.Current {
			s.log.Warn("release: state was behind current", "state", st.Current, "current", id)
			s.makeCurrent(st, st.live(id))
		}
		return nil
	}
	if ids := s.fallbacks(st); len(ids) > 0 {
		id := ids[0] // the best; a flip that fails here would fail for the others too
		s.log.Warn("release: repairing current", "link", s.CurrentPath(), "to", id)
		if err := s.flip(st, id); err != nil {
			return err
		}
		if id != st.Current {
			st.Previous, st.Current = st.Current, id
		}
		return nil
	}
	if len(st.History) == 0 || st.Current.IsZero() && st.Previous.IsZero() {
		return nil // nothing was ever served
	}
	return fmt.Errorf("release: no mounted release to serve under %s (current was %q)", s.root, st.Current.Text())
}

// fallbacks lists the live releases `current` may be repaired to, best
// first: the recorded current, the previous, then by latest activation.
func (s *Store) fallbacks(st *State) []image.ID {
	var ids []image.ID
	for _, id := range []image.ID{st.Current, st.Previous} {
		if st.live(id) != nil {
			ids = append(ids, id)
		}
	}
	var best *Entry
	for i := range st.History {
		e := &st.History[i]
		if !e.Retired && e.Activated > 0 && (best == nil || e.Activated > best.Activated) {
			best = e
		}
	}
	if best != nil {
		ids = append(ids, best.ID)
	}
	return ids
}

package release

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
)

// Activate makes staged release id current: `current` is flipped
// atomically and the previous current becomes the rollback target. A
// release older than current is refused with ErrDowngrade; only Rollback
// may name it. Activating the current release does nothing.
func (s *Store) Activate(id image.ID) error { return s.ActivateGuarded(id, nil) }

// ActivateGuarded is Activate that first calls guard, when set, under the
// store's lock (so after any switch another process, `receiver rollback`
// say, made or is making): an error from guard switches nothing and is
// returned.
func (s *Store) ActivateGuarded(id image.ID, guard func() error) error {
	return s.update("activate", func(st *State) error {
		if guard != nil {
			if err := guard(); err != nil {
				return guardError{err}
			}
		}
		e, err := s.target(st, id)
		if err != nil || id == st.Current {
			return err
		}
		if cur := st.live(st.Current); cur != nil && e.Order < cur.Order {
			return fmt.Errorf("%w: %s (staged #%d) is older than current %s (#%d); only a rollback may name it",
				ErrDowngrade, id, e.Order, st.Current, cur.Order)
		}
		if err := s.switchTo(st, e); err != nil {
			return err
		}
		_, err = s.prune(st)
		return err
	})
}

// Rollback makes release to current again; the zero id means the previous
// release. It is a symlink flip: a release still mounted is not remounted.
// It applies no retention (a local `receiver rollback` does not know the
// agent's Keep); the next activation does. It returns the release now
// current.
func (s *Store) Rollback(to image.ID) (image.ID, error) { return s.RollbackGuarded(to, nil) }

// RollbackGuarded is Rollback with a guard, as ActivateGuarded.
func (s *Store) RollbackGuarded(to image.ID, guard func() error) (image.ID, error) {
	err := s.update("rollback", func(st *State) error {
		if guard != nil {
			if err := guard(); err != nil {
				return guardError{err}
			}
		}
		if to.IsZero() {
			to = st.Previous
		}
		if to.IsZero() {
			return ErrNoPrevious
		}
		if to == st.Current {
			return fmt.Errorf("%w: %s", ErrAlreadyCurrent, to)
		}
		e, err := s.target(st, to)
		if err != nil {
			return err
		}
		return s.switchTo(st, e)
	})
	return to, err
}

// target returns the live entry of id.
func (s *Store) target(st *State, id image.ID) (*Entry, error) {
	e := st.live(id)
	if e == nil {
		return nil, fmt.Errorf("%w: %s under %s", ErrNotStaged, id, s.root)
	}
	if e.Quarantined != "" {
		return nil, fmt.Errorf("%w: %s: %s", ErrQuarantined, id, e.Quarantined)
	}
	return e, nil
}

// switchTo checks that e is mounted and holds a tree (mounting it again if
// its mount was lost), flips `current` to it and records it.
func (s *Store) switchTo(st *State, e *Entry) error {
	if err := s.ensureMounted(e.ID); err != nil {
		return err
	}
	if name := st.slotOf(e.ID); name != "" {
		if err := s.ensureBound(st, e.ID, name); err != nil {
			s.log.Warn("release: slot lost: serving the release from its own path", "id", e.ID, "slot", name, "err", err)
			s.unbind(st, name)
			delete(st.Slots, name)
		}
	}
	crashPoint(stepSwitchChecked)
	if err := s.flip(st, e.ID); err != nil {
		return err
	}
	crashPoint(stepFlipped)
	from := st.Current
	s.makeCurrent(st, e)
	st.LastError = ""
	s.log.Info("release: switched", "current", e.ID, "previous", from)
	return nil
}

// makeCurrent records that `current` now points at e: the old current
// becomes the rollback target and starts its --keep-for.
func (s *Store) makeCurrent(st *State, e *Entry) {
	t := s.now()
	if old := st.live(st.Current); old != nil && old != e {
		old.LeftCurrentAt = t
	}
	st.Previous, st.Current = st.Current, e.ID
	e.Activated, e.ActivatedAt, e.LeftCurrentAt = st.next(), t, time.Time{}
}

// flip points `current` at release id's slot, else at releases/<id>: a
// relative symlink under a temporary name renamed over `current`, then the
// root fsynced.
func (s *Store) flip(st *State, id image.ID) error {
	target, _ := filepath.Rel(s.root, s.servedDir(st, id))
	if err := atomicfile.Symlink(target, s.CurrentPath()); err != nil {
		return fmt.Errorf("release: switch %s to %s: %w", s.CurrentPath(), id, err)
	}
	return nil
}

// linkedID returns the release `current` points at (a slot is looked up
// in st), or the zero id when it is missing or points outside releases/
// and slots/.
func (s *Store) linkedID(st *State) image.ID {
	t, err := os.Readlink(s.CurrentPath())
	if err != nil {
		return image.ID{}
	}
	if !filepath.IsAbs(t) {
		t = filepath.Join(s.root, t)
	}
	return s.idAt(st, t)
}

// idAt returns the release whose served directory is path (releases/<id>
// or a slot recorded in st), or the zero id.
func (s *Store) idAt(st *State, path string) image.ID {
	dir, name := filepath.Split(filepath.Clean(path))
	if strings.HasPrefix(name, ".") {
		return image.ID{}
	}
	switch filepath.Clean(dir) {
	case filepath.Join(s.root, releasesDir):
		if id, err := image.ParseID(name); err == nil {
			return id
		}
		return image.ID{} // a name that is no id is no release
	case filepath.Join(s.root, slotsDir):
		return st.Slots[name]
	}
	return image.ID{}
}

// guardError is a guard's refusal: nothing changed, nothing is recorded.
type guardError struct{ err error }

func (g guardError) Error() string { return g.err.Error() }
func (g guardError) Unwrap() error { return g.err }

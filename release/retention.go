package release

import (
	"cmp"
	"errors"
	"slices"
)

// keepSet returns the releases retention keeps mounted: current, the
// rollback target, extra, the last Keep activated ones, and the newest Keep of
// those staged after current and never activated (pending activation).
// Failed and superseded never-activated releases push no good one out.
func (s *Store) keepSet(st *State, extra ...string) map[string]bool {
	keep := map[string]bool{}
	for _, id := range append([]string{st.Current, st.Previous}, extra...) {
		if id != "" {
			keep[id] = true
		}
	}
	var good, pending []Entry
	curOrder := uint64(0)
	if cur := st.live(st.Current); cur != nil {
		curOrder = cur.Order
	}
	for _, e := range st.History {
		switch {
		case e.Retired:
		case e.Activated > 0:
			good = append(good, e)
		case e.Order > curOrder:
			pending = append(pending, e)
		}
	}
	slices.SortFunc(good, func(a, b Entry) int { return cmp.Compare(b.Activated, a.Activated) })
	slices.SortFunc(pending, func(a, b Entry) int { return cmp.Compare(b.Order, a.Order) })
	for _, list := range [][]Entry{good, pending} {
		for _, e := range list[:min(len(list), s.opts.Keep)] {
			keep[e.ID] = true
		}
	}
	return keep
}

// prune retires the live releases retention does not keep, nor extra:
// unmounted (lazily when busy, so their users finish), images removed.
func (s *Store) prune(st *State, extra ...string) error {
	keep := s.keepSet(st, extra...)
	var errs []error
	for i := range st.History {
		e := &st.History[i]
		if e.Retired || keep[e.ID] {
			continue
		}
		if err := s.discard(e.ID); err != nil {
			errs = append(errs, err)
			continue
		}
		e.Retired = true
		s.log.Info("release: retired", "id", e.ID)
	}
	return errors.Join(errs...)
}

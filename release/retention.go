package release

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/loopmount"
)

// Why retention keeps a release mounted, as `receiver status` shows it.
const (
	keptCurrent  = "current"
	keptPrevious = "rollback target"
	keptExtra    = "just staged"
	keptRecent   = "within --keep"
	keptPending  = "staged, not yet activated"
	keptFor      = "within --keep-for" // followed by ", until <time>"
	keptInUse    = "in use"            // by no rule: processes still hold it
)

// keepSet returns the releases retention keeps mounted and why: current, the
// rollback target, extra, the last Keep activated ones, the newest Keep of
// those staged after current and never activated (pending activation), and
// those that stopped being current less than KeepFor ago. Failed and
// superseded never-activated releases push no good one out. A release not
// in the set is retired once no process uses it.
// The policy is the one the agent last applied (recorded in the state),
// else the store's own.
func (s *Store) keepSet(st *State, extra ...image.ID) map[image.ID]string {
	policy := Retention{Keep: s.opts.Keep, KeepFor: s.opts.KeepFor}
	if st.Retention != nil {
		policy = *st.Retention
	}
	keep := map[image.ID]string{}
	add := func(id image.ID, why string) {
		if _, ok := keep[id]; !id.IsZero() && !ok {
			keep[id] = why
		}
	}
	add(st.Current, keptCurrent)
	add(st.Previous, keptPrevious)
	for _, id := range extra {
		add(id, keptExtra)
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
	// the newest builds first, by the signed manifest's time, then by
	// staging order: restaging (or a replay of) older signed releases
	// cannot push out the release staged and awaiting its ACTIVATE
	slices.SortFunc(pending, func(a, b Entry) int { return cmp.Or(cmp.Compare(b.Built, a.Built), cmp.Compare(b.Order, a.Order)) })
	for _, e := range good[:min(len(good), policy.Keep)] {
		add(e.ID, keptRecent)
	}
	for _, e := range pending[:min(len(pending), policy.Keep)] {
		add(e.ID, keptPending)
	}
	now := s.now()
	for _, e := range good {
		if until := e.LeftCurrentAt.Add(policy.KeepFor); !e.LeftCurrentAt.IsZero() && now.Before(until) {
			add(e.ID, keptFor+", until "+until.Format("2006-01-02 15:04:05Z"))
		}
	}
	for _, e := range st.History { // a corrupt image is kept only while current
		if e.Quarantined != "" && e.ID != st.Current {
			delete(keep, e.ID)
		}
	}
	return keep
}

// prune retires the live releases retention does not keep, nor extra,
// that no process uses: unmounted, images removed. A release in use stays
// mounted, with a log line naming its users, and is tried again at the next
// prune. It returns how many it retired.
func (s *Store) prune(st *State, extra ...image.ID) (int, error) {
	st.Retention = &Retention{Keep: s.opts.Keep, KeepFor: s.opts.KeepFor}
	keep := s.keepSet(st, extra...)
	var ids []image.ID
	for _, e := range st.History {
		if _, ok := keep[e.ID]; !ok && !e.Retired {
			ids = append(ids, e.ID)
		}
	}
	if len(ids) == 0 {
		return 0, nil
	}
	users := s.users(st, ids)
	retired := 0
	var errs []error
	for _, id := range ids {
		if len(users[id]) > 0 {
			s.noteBusy(id, users[id])
			continue
		}
		err := s.discard(st, id)
		if errors.Is(err, loopmount.ErrBusy) { // a process came in since the scan
			s.noteBusy(id, nil)
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		st.entry(id).Retired = true
		retired++
		s.noteBusy(id, nil)
		s.log.Info("release: retired", "id", id)
	}
	return retired, errors.Join(errs...)
}

// Retire applies retention now: every release no longer kept whose last
// user has gone is retired. The agent calls it periodically, so a release
// held by a script goes soon after the script ends and a release's
// --keep-for ends on time. It writes the state only when it retires one.
func (s *Store) Retire() error {
	return s.transact("retire", func(st *State) (bool, error) {
		n, err := s.prune(st)
		return n > 0, err
	})
}

// users finds the processes using each release of ids (by its mount and
// its slot). When /proc cannot be read it logs and returns none: the
// unmount itself still refuses a mount in use.
func (s *Store) users(st *State, ids []image.ID) map[image.ID][]loopmount.Process {
	u, _, err := s.usersOf(st, ids)
	if err != nil {
		s.log.Warn("release: cannot tell which processes use the releases", "err", err)
		return nil
	}
	return u
}

// usersOf reads from /proc the processes using each release of ids, in
// its own mount or in its slot, and how many processes it could not
// inspect.
func (s *Store) usersOf(st *State, ids []image.ID) (map[image.ID][]loopmount.Process, int, error) {
	var dirs []string
	for _, id := range ids {
		dirs = append(dirs, s.ReleaseDir(id))
		if name := st.slotOf(id); name != "" {
			dirs = append(dirs, s.SlotDir(name))
		}
	}
	u, err := loopmount.Users(dirs...)
	if err != nil {
		return nil, 0, err
	}
	out := map[image.ID][]loopmount.Process{}
	for _, id := range ids {
		out[id] = u.Users[s.ReleaseDir(id)]
		if name := st.slotOf(id); name != "" {
			out[id] = append(out[id], u.Users[s.SlotDir(name)]...)
		}
	}
	return out, u.Hidden, nil
}

// noteBusy logs that release id stays mounted because procs use it, once
// per change of its users; nil procs clears the note.
func (s *Store) noteBusy(id image.ID, procs []loopmount.Process) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if procs == nil {
		delete(s.busy, id)
		return
	}
	who := describeUsers(procs)
	if s.busy[id] == who {
		return
	}
	if s.busy == nil {
		s.busy = map[image.ID]string{}
	}
	s.busy[id] = who
	s.log.Info("release: kept mounted, in use", "id", id, "users", who)
}

// maxNamedUsers bounds the processes an error or log line names.
const maxNamedUsers = 5

// describeUsers names up to maxNamedUsers processes.
func describeUsers(procs []loopmount.Process) string {
	var parts []string
	for _, p := range procs[:min(len(procs), maxNamedUsers)] {
		parts = append(parts, p.String())
	}
	if n := len(procs) - maxNamedUsers; n > 0 {
		parts = append(parts, fmt.Sprintf("and %d more", n))
	}
	return strings.Join(parts, ", ")
}

// MakeRoom checks that an image of n bytes fits under the root and leaves
// the reserve free. When it does not, it retires releases kept only by
// --keep-for that no process uses, the one that left current first first,
// each with a warning, until it fits: space wins over time. A release a
// process uses is never retired for space. When even retiring all the
// others would not make room, MakeRoom retires nothing and fails with
// ErrNoSpace, naming the releases in use and their users. The agent calls
// it before it receives an image.
func (s *Store) MakeRoom(n int64) error {
	if err := s.CheckSpace(n); err == nil || !errors.Is(err, ErrNoSpace) {
		return err
	}
	return s.update("make room", func(st *State) error {
		st.Retention = &Retention{Keep: s.opts.Keep, KeepFor: s.opts.KeepFor}
		short, err := s.shortfall(n)
		if short <= 0 || err != nil {
			return err
		}
		free, held, users := s.roomPlan(st)
		var can int64
		for _, e := range free {
			can += s.allocated(e.ID)
		}
		if can < short {
			return s.noRoom(n, held, users)
		}
		for _, e := range free {
			if short <= 0 {
				break
			}
			freed := s.allocated(e.ID)
			if err := s.discard(st, e.ID); err != nil {
				return fmt.Errorf("release: make room for %d bytes: %w", n, err)
			}
			e.Retired = true
			short -= freed
			s.log.Warn("release: retired before its --keep-for ended: the disk needs the room for a new release",
				"id", e.ID, "left_current", e.LeftCurrentAt, "freed", freed)
		}
		return nil
	})
}

// roomPlan sorts the releases space may take from: free are those kept
// only by --keep-for and used by no process, the one that left current
// first first; held are the others outside Keep that processes use, with
// their users.
func (s *Store) roomPlan(st *State) (free, held []*Entry, users map[image.ID][]loopmount.Process) {
	keep := s.keepSet(st)
	var ids []image.ID
	var timed []*Entry
	for i := range st.History {
		e := &st.History[i]
		why, kept := keep[e.ID]
		switch {
		case e.Retired:
			continue
		case strings.HasPrefix(why, keptFor):
			timed = append(timed, e)
		case !kept:
			held = append(held, e) // outside retention, so in use
		default:
			continue
		}
		ids = append(ids, e.ID)
	}
	users = s.users(st, ids)
	slices.SortFunc(timed, func(a, b *Entry) int { return a.LeftCurrentAt.Compare(b.LeftCurrentAt) })
	for _, e := range timed {
		if len(users[e.ID]) > 0 {
			held = append(held, e)
		} else {
			free = append(free, e)
		}
	}
	return free, held, users
}

// shortfall is how many bytes are missing for an image of n bytes plus the
// reserve; zero or less when it fits.
func (s *Store) shortfall(n int64) (int64, error) {
	free, err := s.FreeBytes()
	if err != nil {
		return 0, err
	}
	return n + max(s.opts.Reserve, 0) - free, nil
}

// allocated is the disk space release id's image takes, which retiring it
// frees (once the kernel lets go of its loop device).
func (s *Store) allocated(id image.ID) int64 {
	fi, err := os.Stat(s.imagePath(id))
	if err != nil {
		return 0
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// noRoom is MakeRoom's refusal: the space check's error, plus the releases
// that processes hold and who holds them.
func (s *Store) noRoom(n int64, held []*Entry, users map[image.ID][]loopmount.Process) error {
	err := s.CheckSpace(n)
	if err == nil {
		err = fmt.Errorf("%w on %s for %d bytes", ErrNoSpace, s.root, n)
	}
	var parts []string
	for _, e := range held {
		who := describeUsers(users[e.ID])
		if who == "" {
			who = "a process"
		}
		parts = append(parts, fmt.Sprintf("%s (used by %s)", e.ID, who))
	}
	if len(parts) == 0 {
		return err
	}
	return fmt.Errorf("%w; releases still in use are never retired for space: %s", err, strings.Join(parts, "; "))
}

package release

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/loopmount"
	"github.com/loopcast/loopcast/treediff"
	"golang.org/x/sys/unix"
)

// Slots give unchanged PHP files the same real path across deploys, so
// OPcache keeps their compiled scripts. Each live release is mounted at
// releases/<id> as always; a release placed in a slot is also bound at
// slots/<name>, and `current` points there. A new release takes the slot
// whose release was served longest ago, once no process and no php-fpm
// request (in any state but idle) uses it, and, while the pool holds
// requests it cannot place (queued), not within slotGrace of its last
// service; before the bind, and again once the old release is unbound,
// the scripts of every file that differs between the slot's old release
// and the new one are dropped from OPcache (treediff says which, exactly),
// so nothing stale is served with opcache.validate_timestamps=0. When a
// symlink differs, everything under the slot is dropped, and only a slot
// last served longer ago than PHP's realpath_cache_ttl is taken (a worker
// may still resolve a path through the old link). When no slot is free, or
// the pool cannot be reached, the release is served from releases/<id> as
// without slots, and the log says why.

// slotGrace is how recently a slot's release may have stopped being
// current while requests of unknown script (queued, or whose parameters
// php-fpm is still reading) may be in flight: such a slot is not taken.
const slotGrace = 10 * time.Second

// DefaultSlots is the slot ring's size: current, the rollback target and
// the next release each keep a path, so a rollback finds its scripts too.
const DefaultSlots = 3

// MaxSlots bounds the ring (slot names are the letters a..z).
const MaxSlots = 26

const slotsDir = "slots"

// ScriptCache is the OPcache of the php-fpm pool serving the releases
// (package opcache's Client).
type ScriptCache interface {
	// Busy returns the requests under dir, and how many requests might be
	// (queued, or in a process whose script is not known yet).
	Busy(ctx context.Context, dir string) (scripts []string, unknown int, err error)
	// RealpathCacheTTL is how long a worker may resolve a path as it did
	// before (PHP's realpath_cache_ttl).
	RealpathCacheTTL(ctx context.Context) (time.Duration, error)
	// Invalidate drops the scripts of paths relative to dir; nil paths
	// drops every script cached under dir.
	Invalidate(ctx context.Context, dir string, paths []string) (int, error)
	// Compile compiles paths relative to dir.
	Compile(ctx context.Context, dir string, paths []string) (int, error)
}

// slotNames are the ring's names, in order.
func (s *Store) slotNames() []string {
	n := s.opts.Slots
	if s.opts.Cache == nil || n <= 0 {
		return nil
	}
	names := make([]string, min(n, MaxSlots))
	for i := range names {
		names[i] = string(rune('a' + i))
	}
	return names
}

// SlotDir returns the path of slot name.
func (s *Store) SlotDir(name string) string { return filepath.Join(s.root, slotsDir, name) }

// isSlotName reports whether name is one of the ring's (a..z).
func isSlotName(name string) bool {
	return len(name) == 1 && name[0] >= 'a' && name[0] < 'a'+MaxSlots
}

// slotOf returns the slot release id is bound in, or "".
func (st *State) slotOf(id image.ID) string {
	for name, bound := range st.Slots {
		if bound == id && !id.IsZero() {
			return name
		}
	}
	return ""
}

// servedDir is where `current` points for release id: its slot, else its
// own mount.
func (s *Store) servedDir(st *State, id image.ID) string {
	if name := st.slotOf(id); name != "" {
		return s.SlotDir(name)
	}
	return s.ReleaseDir(id)
}

// placeReport says where a staged release is served from, for the log.
type placeReport struct {
	Slot     string   // "" when served from releases/<id>
	Replaced image.ID // the release the slot held before, if any
	Changed  int      // files that differ from the slot's old release (-1: unknown, all dropped)
	Dropped  int      // paths OPcache was told to forget that it knew
	Warmed   int      // scripts compiled before the switch
	Why      string   // why no slot, or a warning
	Took     time.Duration
}

// place binds release id (staged, mounted) in a free slot. It never fails
// the staging: what goes wrong is logged and the release is served from
// releases/<id>.
func (s *Store) place(ctx context.Context, st *State, id image.ID) {
	names := s.slotNames()
	if len(names) == 0 || st.slotOf(id) != "" {
		return
	}
	start := time.Now()
	rep := s.tryPlace(ctx, st, id, names)
	rep.Took = time.Since(start)
	if rep.Slot == "" {
		s.log.Warn("release: no slot for the release: it is served from its own path, and OPcache compiles it afresh",
			"id", id, "dir", s.ReleaseDir(id), "why", rep.Why)
	} else {
		s.log.Info("release: placed in slot", "id", id, "slot", rep.Slot, "replaced", rep.Replaced,
			"changed_files", rep.Changed, "invalidated", rep.Dropped, "warmed", rep.Warmed, "took", rep.Took.Round(time.Millisecond))
		if rep.Why != "" {
			s.log.Warn("release: slot warm-up incomplete", "id", id, "slot", rep.Slot, "why", rep.Why)
		}
	}
}

func (s *Store) tryPlace(ctx context.Context, st *State, id image.ID, names []string) *placeReport {
	rep := &placeReport{}
	var whys []string
	for _, name := range s.slotOrder(st, names) {
		dir := s.SlotDir(name)
		old := st.Slots[name]
		if why := s.slotBusy(ctx, st, name); why != "" {
			whys = append(whys, why)
			continue
		}
		paths, why := s.slotChanges(ctx, st, name, old, id)
		if why != "" {
			whys = append(whys, why)
			continue
		}
		rep.Changed = len(paths)
		if paths == nil {
			rep.Changed = -1
		}
		n, err := s.opts.Cache.Invalidate(ctx, dir, paths)
		if err != nil {
			rep.Why = fmt.Sprintf("OPcache of slot %s not cleared: %v", name, err)
			return rep
		}
		rep.Dropped = n
		if err := s.unbind(st, name); err != nil {
			whys = append(whys, fmt.Sprintf("slot %s: %v", name, err))
			continue
		}
		crashPoint(stepSlotUnbound)
		// once more with the slot empty: a request that compiled one of
		// these files between the first pass and the unbind left it behind
		if _, err := s.opts.Cache.Invalidate(ctx, dir, paths); err != nil {
			rep.Why = fmt.Sprintf("OPcache of slot %s not cleared: %v", name, err)
			return rep
		}
		if err := s.bind(id, name); err != nil {
			rep.Why = err.Error()
			return rep
		}
		if st.Slots == nil {
			st.Slots = map[string]image.ID{}
		}
		st.Slots[name] = id
		rep.Slot, rep.Replaced = name, old
		if s.opts.Warm {
			rep.Warmed, rep.Why = s.warm(ctx, id, name, paths)
		}
		return rep
	}
	rep.Why = "every slot is in use: " + strings.Join(whys, "; ")
	return rep
}

// slotChanges returns the files OPcache must forget for slot name to serve
// release id instead of old: those that differ, or nil (everything under
// the slot) when the slot's content is not known for sure. It refuses the
// slot (why) when a symlink changed and the slot was served within PHP's
// realpath_cache_ttl: a worker could still resolve a path through the old
// link.
func (s *Store) slotChanges(ctx context.Context, st *State, name string, old, id image.ID) (paths []string, why string) {
	e := st.live(old)
	if e == nil || !s.mounted(old) || !sameFS(s.SlotDir(name), s.ReleaseDir(old)) {
		return nil, "" // empty, or holding what the record does not say
	}
	res, err := s.changedFiles(ctx, old, id, e.Quarantined != "")
	if err != nil {
		s.log.Warn("release: cannot tell which files changed: dropping every script of the slot", "slot", name, "from", old, "to", id, "err", err)
		return nil, ""
	}
	if res.Links {
		ttl, err := s.opts.Cache.RealpathCacheTTL(ctx)
		if err != nil {
			return nil, fmt.Sprintf("slot %s: %v", name, err)
		}
		if served := e.LeftCurrentAt; !served.IsZero() && s.now().Sub(served) < ttl+time.Second || old == st.Current {
			return nil, fmt.Sprintf("slot %s: a symlink changed and the slot was served %s ago, within realpath_cache_ttl (%s)",
				name, s.now().Sub(served).Round(time.Second), ttl)
		}
		return nil, "" // and drop everything: links redirect whole subtrees
	}
	if res.Paths == nil {
		return []string{}, ""
	}
	return res.Paths, ""
}

// slotOrder lists the slots a new release may take, best first: empty
// ones, then by how long ago their release was served (never activated
// ones before the rollback target). The current release's slot is never
// taken.
func (s *Store) slotOrder(st *State, names []string) []string {
	type cand struct {
		name string
		rank int
		at   time.Time
	}
	var cands []cand
	for _, name := range names {
		id := st.Slots[name]
		e := st.live(id)
		switch {
		case !id.IsZero() && id == st.Current:
			continue
		case e == nil:
			cands = append(cands, cand{name, 0, time.Time{}})
		case id == st.Previous:
			cands = append(cands, cand{name, 3, e.LeftCurrentAt})
		case e.Activated == 0:
			cands = append(cands, cand{name, 2, e.StagedAt})
		default:
			cands = append(cands, cand{name, 1, e.LeftCurrentAt})
		}
	}
	slices.SortStableFunc(cands, func(a, b cand) int { return cmp.Or(cmp.Compare(a.rank, b.rank), a.at.Compare(b.at)) })
	out := make([]string, len(cands))
	for i, c := range cands {
		out[i] = c.name
	}
	return out
}

// slotBusy says why slot name cannot be taken now: a process works in it
// (a lease, a script's working directory or open file), the pool runs a
// request there, or its release stopped being current less than slotGrace
// ago while the pool has requests it cannot place. "" when it is free.
func (s *Store) slotBusy(ctx context.Context, st *State, name string) string {
	dir := s.SlotDir(name)
	if mp, _ := loopmount.IsMountPoint(dir); mp {
		u, err := loopmount.Users(dir)
		if err != nil {
			return fmt.Sprintf("slot %s: cannot tell its users: %v", name, err)
		}
		if procs := u.Users[dir]; len(procs) > 0 {
			return fmt.Sprintf("slot %s used by %s", name, describeUsers(procs))
		}
	}
	busy, unknown, err := s.opts.Cache.Busy(ctx, dir)
	if err != nil {
		return fmt.Sprintf("slot %s: %v", name, err)
	}
	if len(busy) > 0 {
		return fmt.Sprintf("slot %s: php-fpm runs %d requests there (%s)", name, len(busy), busy[0])
	}
	if e := st.live(st.Slots[name]); unknown > 0 && e != nil && !e.LeftCurrentAt.IsZero() && s.now().Sub(e.LeftCurrentAt) < slotGrace {
		return fmt.Sprintf("slot %s: served until %s ago, and php-fpm holds %d requests it does not say the script of",
			name, s.now().Sub(e.LeftCurrentAt).Round(time.Millisecond), unknown)
	}
	return ""
}

// changedFiles compares the trees of releases from and to; a corrupt
// (quarantined) from is compared byte by byte, its manifest not trusted.
func (s *Store) changedFiles(ctx context.Context, from, to image.ID, corrupt bool) (*treediff.Result, error) {
	mf, err1 := image.ReadManifestFile(s.manifestPath(from))
	mt, err2 := image.ReadManifestFile(s.manifestPath(to))
	if err := errors.Join(err1, err2); err != nil || corrupt {
		mf, mt = nil, nil // byte by byte, still exact
	}
	return treediff.Changed(ctx, treediff.Tree{Dir: s.ReleaseDir(from), Manifest: mf}, treediff.Tree{Dir: s.ReleaseDir(to), Manifest: mt})
}

// warm compiles the PHP files of paths (every one of the release's when
// paths is nil) in slot name.
func (s *Store) warm(ctx context.Context, id image.ID, name string, paths []string) (int, string) {
	if paths == nil {
		var all []string
		root := s.ReleaseDir(id)
		filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(root, p)
				all = append(all, rel)
			}
			return nil
		})
		paths = all
	}
	var php []string
	for _, p := range paths {
		if strings.HasSuffix(p, ".php") {
			if fi, err := os.Lstat(filepath.Join(s.ReleaseDir(id), p)); err == nil && fi.Mode().IsRegular() {
				php = append(php, p)
			}
		}
	}
	n, err := s.opts.Cache.Compile(ctx, s.SlotDir(name), php)
	if err != nil {
		return n, err.Error()
	}
	return n, ""
}

// bind binds release id's mount at slot name.
func (s *Store) bind(id image.ID, name string) error {
	dir := s.SlotDir(name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	if err := loopmount.Bind(s.ReleaseDir(id), dir, s.mountOptions()); err != nil {
		return fmt.Errorf("release: slot %s: %w", name, err)
	}
	return nil
}

// unbind empties slot name. A slot in use stays (loopmount.ErrBusy).
func (s *Store) unbind(st *State, name string) error {
	if mp, err := loopmount.IsMountPoint(s.SlotDir(name)); err == nil && mp {
		if err := loopmount.Unmount(s.SlotDir(name)); err != nil {
			return err
		}
	}
	delete(st.Slots, name)
	return nil
}

// unbindRelease empties the slot of release id, if it has one.
func (s *Store) unbindRelease(st *State, id image.ID) error {
	if name := st.slotOf(id); name != "" {
		return s.unbind(st, name)
	}
	return nil
}

// ensureBound checks that release id, recorded in slot name, is bound
// there. A lost bind is made again: by the record the slot served id, so
// what OPcache holds under it is id's. A slot holding another tree (a
// crash between a bind and the state's save) is emptied, and with a Cache
// its scripts dropped before id is bound; without one, or when the pool
// does not answer, the error says the slot is lost.
func (s *Store) ensureBound(st *State, id image.ID, name string) error {
	dir := s.SlotDir(name)
	if sameFS(dir, s.ReleaseDir(id)) {
		return nil
	}
	if mp, _ := loopmount.IsMountPoint(dir); mp {
		if err := loopmount.Unmount(dir); err != nil {
			return fmt.Errorf("release: slot %s holds another tree than %s: %w", name, id, err)
		}
		if s.opts.Cache == nil {
			return fmt.Errorf("release: slot %s held another tree than %s, and this process cannot clear OPcache", name, id)
		}
		if _, err := s.opts.Cache.Invalidate(context.Background(), dir, nil); err != nil {
			return fmt.Errorf("release: slot %s held another tree than %s: %w", name, id, err)
		}
	}
	return s.bind(id, name)
}

// sameFS reports whether a and b are mount points of the same filesystem
// (a loop mount and its bind): the same device, and each a mount point.
func sameFS(a, b string) bool {
	var sa, sb unix.Stat_t
	if unix.Stat(a, &sa) != nil || unix.Stat(b, &sb) != nil {
		return false
	}
	ma, _ := loopmount.IsMountPoint(a)
	mb, _ := loopmount.IsMountPoint(b)
	return ma && mb && sa.Dev == sb.Dev && sa.Ino == sb.Ino
}

// rebindSlots brings the slots in line with the state at boot. A slot
// the state does not name but that is bound to a live release (a lost
// state file) is recorded again, asked of the kernel. A live, mounted
// release recorded in a slot is bound there again; a slot whose release
// is gone, or beyond the ring (fewer --slots, or no pool now), is emptied,
// except the one `current` points at, which keeps serving. A release
// whose slot cannot be restored loses it (served from releases/<id>).
func (s *Store) rebindSlots(st *State) {
	ents, _ := os.ReadDir(filepath.Join(s.root, slotsDir))
	for _, e := range ents {
		name := e.Name()
		if _, ok := st.Slots[name]; ok {
			continue
		}
		if id := s.boundRelease(name); st.live(id) != nil && st.slotOf(id) == "" {
			if st.Slots == nil {
				st.Slots = map[string]image.ID{}
			}
			st.Slots[name] = id
			s.log.Warn("release: slot found bound, not recorded: recorded again", "slot", name, "id", id)
			continue
		}
		if err := s.unbind(st, name); err != nil {
			s.log.Warn("release: cannot empty a stray slot", "slot", name, "err", err)
		}
	}
	serving := s.currentSlot()
	for _, name := range slices.Sorted(maps.Keys(st.Slots)) {
		id := st.Slots[name]
		keep := name == serving || slices.Contains(s.slotNames(), name)
		if st.live(id) == nil || !s.mounted(id) || !keep {
			if err := s.unbind(st, name); err != nil {
				s.log.Warn("release: cannot empty a slot", "slot", name, "err", err)
			}
			continue
		}
		if err := s.ensureBound(st, id, name); err != nil {
			s.log.Warn("release: slot lost: the release is served from its own path", "slot", name, "id", id, "err", err)
			s.unbind(st, name)
			delete(st.Slots, name)
		}
	}
}

// boundRelease returns the release slot name is a bind of, from the loop
// device behind it, or the zero id.
func (s *Store) boundRelease(name string) image.ID {
	dir := s.SlotDir(name)
	if mp, _ := loopmount.IsMountPoint(dir); !mp {
		return image.ID{}
	}
	var st unix.Stat_t
	if unix.Stat(dir, &st) != nil {
		return image.ID{}
	}
	img, err := loopmount.BackingFileOfDev(uint64(st.Dev))
	if err != nil || filepath.Dir(img) != filepath.Join(s.root, imagesDir) {
		return image.ID{}
	}
	if id, ok := imageID(img); ok {
		return id
	}
	return image.ID{}
}

// currentSlot returns the slot `current` points at, or "".
func (s *Store) currentSlot() string {
	t, err := os.Readlink(s.CurrentPath())
	if err != nil {
		return ""
	}
	if !filepath.IsAbs(t) {
		t = filepath.Join(s.root, t)
	}
	dir, name := filepath.Split(filepath.Clean(t))
	if filepath.Clean(dir) != filepath.Join(s.root, slotsDir) {
		return ""
	}
	return name
}

package agent

import (
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
)

// FleetFile is the agent's record of the fleet pointer, in the store root.
const FleetFile = "fleet.json"

// LocalCommandFile records when an operator last switched this host by
// hand (`receiver rollback`): a fleet pointer issued before that is not
// acted on, so catch-up never undoes a local decision.
const LocalCommandFile = "fleet.local"

// Fleet is what the agent knows of its fleet: the newest signed fleet
// pointer it has seen, the newest command it obeyed, and what catch-up
// last failed on. It is safe for concurrent use.
type Fleet struct {
	root  string
	keys  []ed25519.PublicKey
	group string
	log   *slog.Logger
	// readOnly: a local reader (receiver status) that checks the pointer's
	// signature but not the agent's trust, and saves nothing
	readOnly bool

	mu    sync.Mutex
	rec   fleetRecord
	ptr   *control.Pointer
	peers map[string]peerInfo // by IP, from pointer answers
	wake  chan struct{}

	// switching is held while the store is switched by a command or by
	// catch-up, so catch-up's check that no newer command came and its
	// switch are one step.
	switching sync.Mutex
}

type fleetRecord struct {
	Pointer []byte    `json:"pointer,omitempty"` // the signed pointer, verbatim
	Learned time.Time `json:"learned,omitzero"`  // when this agent first saw it
	// LastCommand is the issue time (Unix ms, sender's clock) of the newest
	// ACTIVATE or ROLLBACK this host obeyed: a pointer issued before it is
	// already superseded here.
	LastCommand int64 `json:"last_command_ms,omitempty"`
	// FailedSeq is the pointer whose release failed to stage: catch-up
	// waits for a newer pointer instead of trying it again.
	FailedSeq   uint64 `json:"failed_seq,omitempty"`
	FailedError string `json:"failed_error,omitempty"`
	// Servable lists the releases this host received in the clear (or
	// from peers): only those are served to peers. A release received
	// sealed is for the hosts the sender chose, and one staged before the
	// agent kept this list is of unknown kind: neither is served.
	Servable []image.ID `json:"servable,omitempty"`
}

type peerInfo struct {
	serves     image.ID // the release it says it serves to peers, zero if none
	lastResort bool     // the sender's `sender serve`: used only when no peer serves
	at         time.Time
}

// LoadFleet reads root's fleet record; a pointer that no longer verifies
// (its key is not trusted any more, another group) is dropped.
func LoadFleet(root string, keys []ed25519.PublicKey, group string, log *slog.Logger) (*Fleet, error) {
	if log == nil {
		log = slog.Default()
	}
	return loadFleet(&Fleet{root: root, keys: keys, group: group, log: log})
}

func loadFleet(f *Fleet) (*Fleet, error) {
	f.peers, f.wake = map[string]peerInfo{}, make(chan struct{}, 1)
	log := f.log
	b, err := os.ReadFile(filepath.Join(f.root, FleetFile))
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return nil, fmt.Errorf("agent: fleet record: %w", err)
	}
	if err := json.Unmarshal(b, &f.rec); err != nil {
		log.Warn("agent: fleet record unreadable, starting without a pointer", "path", filepath.Join(f.root, FleetFile), "err", err)
		f.rec = fleetRecord{}
		return f, nil
	}
	if len(f.rec.Pointer) > 0 {
		p, err := f.check(f.rec.Pointer)
		if err != nil {
			log.Warn("agent: kept fleet pointer dropped", "err", err)
			f.rec.Pointer = nil
		}
		f.ptr = p
	}
	return f, nil
}

func (f *Fleet) check(raw []byte) (*control.Pointer, error) {
	p, err := control.ParsePointer(raw)
	if err != nil {
		return nil, err
	}
	if f.readOnly {
		return p, nil
	}
	if err := control.VerifyPointer(p, f.keys, f.group); err != nil {
		return nil, err
	}
	return p, nil
}

// save writes the record; the caller holds mu.
func (f *Fleet) save() {
	if f.readOnly {
		return
	}
	b, _ := json.MarshalIndent(&f.rec, "", "  ")
	if err := atomicfile.WriteFile(filepath.Join(f.root, FleetFile), append(b, '\n'), 0o644); err != nil {
		f.log.Warn("agent: cannot save the fleet record", "err", err)
	}
}

// Offer takes raw, a signed pointer from the sender or a peer, when it is
// newer than the one held: it returns whether it did. A pointer not newer
// (a replay, a peer behind) changes nothing.
func (f *Fleet) Offer(raw []byte, from string) (bool, error) {
	p, err := f.check(raw)
	if err != nil {
		return false, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ptr != nil && p.Seq <= f.ptr.Seq {
		if p.Seq < f.ptr.Seq {
			f.log.Debug("agent: an older fleet pointer was ignored", "pointer", p.String(), "held", f.ptr.Seq, "from", from)
		}
		return false, nil
	}
	f.ptr, f.rec.Pointer, f.rec.Learned = p, slices.Clone(raw), time.Now()
	f.save()
	f.log.Info("agent: fleet pointer", "seq", p.Seq, "release", p.Release, "issued", p.IssuedAt().UTC().Format(time.RFC3339Nano), "from", from)
	f.nudge()
	return true, nil
}

func (f *Fleet) nudge() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Pointer returns the held pointer and its encoding (nil when none).
func (f *Fleet) Pointer() (*control.Pointer, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ptr, f.rec.Pointer
}

// NoteCommand records a verified ACTIVATE or ROLLBACK issued at issued
// that this host obeyed: pointers issued before it are superseded.
func (f *Fleet) NoteCommand(issued time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ms := issued.UnixMilli(); ms > f.rec.LastCommand {
		f.rec.LastCommand = ms
		f.save()
	}
}

// NoteLocalCommand records, in root, that an operator switched the host by
// hand (`receiver rollback`): the agent does not act on any pointer it held
// then, nor an older one. It records the held pointer's sequence number,
// not a time: the host's clock is not the sender's.
func NoteLocalCommand(root string) error {
	seq := uint64(0)
	if s, err := ReadSync(root, image.ID{}, time.Now()); err == nil {
		seq = s.Seq
	}
	return atomicfile.WriteFile(filepath.Join(root, LocalCommandFile), []byte(strconv.FormatUint(seq, 10)+"\n"), 0o644)
}

// localCommand is the sequence number NoteLocalCommand recorded; 0 when
// none. A pointer at or below it was overruled by hand.
func (f *Fleet) localCommand() uint64 {
	b, err := os.ReadFile(filepath.Join(f.root, LocalCommandFile))
	if err != nil {
		return 0
	}
	seq, _ := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	return seq
}

// superseded reports whether a command this host obeyed came after p:
// one from the sender issued after it (the sender's clock on both), or a
// local rollback made while p, or a newer pointer, was held.
func (f *Fleet) superseded(p *control.Pointer) bool {
	f.mu.Lock()
	last := f.rec.LastCommand
	f.mu.Unlock()
	return p.Issued <= last || p.Seq <= f.localCommand()
}

func (f *Fleet) markFailed(p *control.Pointer, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rec.FailedSeq, f.rec.FailedError = p.Seq, control.TruncateText(err.Error())
	f.save()
}

func (f *Fleet) failed(p *control.Pointer) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rec.FailedSeq == p.Seq
}

// maxServable bounds the servable list; retention keeps far fewer.
const maxServable = 64

// NoteServable records that release came in the clear: it may be served
// to peers.
func (f *Fleet) NoteServable(release image.ID) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.rec.Servable, release) {
		f.rec.Servable = append(f.rec.Servable[max(0, len(f.rec.Servable)-(maxServable-1)):], release)
		f.save()
	}
}

func (f *Fleet) servable(release image.ID) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Contains(f.rec.Servable, release)
}

// notePeer records a pointer answer from ip.
func (f *Fleet) notePeer(ip string, serves image.ID, lastResort bool, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range f.peers { // forget what is too old to believe
		if now.Sub(v.at) >= peerMaxAge {
			delete(f.peers, k)
		}
	}
	if _, known := f.peers[ip]; !known && len(f.peers) >= maxPeers {
		oldest := ""
		for k, v := range f.peers { // and the stalest, to make room
			if oldest == "" || v.at.Before(f.peers[oldest].at) {
				oldest = k
			}
		}
		delete(f.peers, oldest)
	}
	f.peers[ip] = peerInfo{serves: serves, lastResort: lastResort, at: now}
}

// maxPeers bounds the peers remembered from answers; peerMaxAge is how
// long an answer is believed.
const (
	maxPeers   = 256
	peerMaxAge = 10 * time.Minute
)

// peersServing returns the IPs of peers that said, lately, that they serve
// release; only when none did, the sources of last resort that did.
func (f *Fleet) peersServing(release image.ID, now time.Time) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out, last []string
	for ip, p := range f.peers {
		if release.IsZero() || p.serves != release || now.Sub(p.at) >= peerMaxAge {
			continue
		}
		if p.lastResort {
			last = append(last, ip)
		} else {
			out = append(out, ip)
		}
	}
	if len(out) == 0 {
		out = last
	}
	slices.Sort(out)
	return out
}

// SyncState is how this host stands against the fleet pointer.
type SyncState struct {
	Pointer *control.Pointer `json:"-"`
	Seq     uint64           `json:"seq,omitempty"`
	Release image.ID         `json:"release,omitzero"` // the pointer's
	Current image.ID         `json:"current,omitzero"` // what this host serves
	InSync  bool             `json:"in_sync"`
	// Superseded: a command this host obeyed came after the pointer (a
	// deploy or rollback in progress, a local rollback): the host follows
	// that instead, and counts as in sync.
	Superseded bool `json:"superseded,omitempty"`
	// Behind is how long the host has lagged: since it learned the pointer.
	Behind time.Duration `json:"behind_ns,omitempty"`
	Failed string        `json:"failed,omitempty"` // why catch-up gave up on the pointer's release
}

// Sync returns how a host serving current stands against the pointer at
// now. With no pointer known, a host serving something is in sync.
func (f *Fleet) Sync(current image.ID, now time.Time) SyncState {
	f.mu.Lock()
	p, learned, rec := f.ptr, f.rec.Learned, f.rec
	f.mu.Unlock()
	s := SyncState{Pointer: p, Current: current}
	if p == nil {
		s.InSync = !current.IsZero()
		return s
	}
	s.Seq, s.Release = p.Seq, p.Release
	switch {
	case current == p.Release:
		s.InSync = true
	case p.Issued <= rec.LastCommand || p.Seq <= f.localCommand():
		s.InSync, s.Superseded = !current.IsZero(), true
	default:
		s.Behind = max(now.Sub(learned), 0)
		if rec.FailedSeq == p.Seq {
			s.Failed = rec.FailedError
		}
	}
	return s
}

// ReadSync reads root's fleet record (as `receiver status` does, beside a
// running agent) and says how current stands against it. The pointer's
// signature is checked, not whether the agent trusts its key: the agent
// checked that when it took it.
func ReadSync(root string, current image.ID, now time.Time) (SyncState, error) {
	f, err := loadFleet(&Fleet{root: root, log: slog.New(slog.DiscardHandler), readOnly: true})
	if err != nil {
		return SyncState{}, err
	}
	return f.Sync(current, now), nil
}

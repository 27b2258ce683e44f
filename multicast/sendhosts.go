package multicast

import (
	"cmp"
	"fmt"
	"net"
	"slices"
	"time"
)

// host is the sender's view of one receiver.
type host struct {
	id         string
	addr       net.Addr
	member     bool // closed group: listed; open group: registered
	registered bool
	have       []Range // chunks it held when it registered (ascending, disjoint)
	hasBase    bool    // it holds the announced base image
	complete   bool
	staged     bool          // its COMPLETE said it staged the image
	stageErr   string        // its COMPLETE said staging failed, and why
	doneAt     time.Duration // when its COMPLETE arrived, from the start
	failed     string        // the host's own reason for giving up
	dropped    string        // why the sender gave up on it
	asked      time.Time     // first STATUS it has not answered; zero when none pending
	parts      map[uint8]bool
	partsWant  uint8
	round      uint32 // round its parts belong to
}

// counts reports whether h takes part in the group's decisions (which
// chunks every host holds, whether all hold the delta base, who is still
// expected): a member still in the session. A guest (a host not listed in
// a closed group, or a forged REGISTER) decides nothing.
func (h *host) counts() bool { return h.member && h.active() }

func (h *host) active() bool { return h.registered && !h.complete && h.failed == "" && h.dropped == "" }

// handle processes one datagram from a receiver; anything malformed,
// foreign or out of place is counted and ignored.
func (s *sender) handle(p packet, now time.Time) {
	h, m, err := Parse(p.b)
	if err != nil {
		s.foreign.note(err, p.from, s.opts.Logf)
	}
	if err != nil || h.Session != s.opts.Session {
		s.stats.Ignored++
		return
	}
	switch m := m.(type) {
	case *Register:
		s.onRegister(m, p.from, now)
	case *Nack:
		s.onNack(m, p.from)
	case *Complete:
		s.onComplete(m, p.from)
	default:
		s.stats.Ignored++
	}
}

// hostFor finds or (in an open group, or as a closed group's guest)
// creates the host named id, and marks it heard from.
func (s *sender) hostFor(id string, from net.Addr) *host {
	h := s.hosts[id]
	if h == nil {
		if len(s.hosts) >= maxHosts {
			return nil
		}
		h = &host{id: id, member: len(s.opts.Hosts) == 0}
		s.hosts[id] = h
	}
	h.addr = from
	h.asked = time.Time{}
	return h
}

// maxHosts bounds the sender's host table against a flood of made-up ids.
const maxHosts = 1<<16 - 1 // ANNOUNCE counts hosts in a u16

func (s *sender) onRegister(m *Register, from net.Addr, now time.Time) {
	h := s.hostFor(m.Host, from)
	if h == nil {
		return
	}
	if m.NeedManifest {
		s.wantMan = true
		return
	}
	if !h.registered || h.dropped != "" {
		s.opts.Logf("session %08x: host %s registered from %v", s.opts.Session, h.id, from)
	}
	h.registered, h.dropped, h.have, h.hasBase = true, "", m.Have, m.HasBase
	s.reply(&Register{Host: h.id}, from)
}

func (s *sender) onNack(m *Nack, from net.Addr) {
	h := s.hosts[m.Host]
	if h == nil || !h.registered || h.complete {
		return // a complete host asking again (e.g. its agent re-joined) costs the others nothing
	}
	s.hostFor(m.Host, from)
	h.dropped = ""
	if m.Round&probeRound != 0 {
		s.heardLoss(m.Round, m.Loss)
		return
	}
	if s.agg == nil || m.Round != s.agg.round {
		return
	}
	if h.round != m.Round || h.parts == nil {
		h.round, h.parts = m.Round, map[uint8]bool{}
	}
	if h.parts[m.Part] {
		return // a duplicate part: each host's answer costs at most MaxNackParts packets of work
	}
	s.agg.add(m)
	h.parts[m.Part], h.partsWant = true, m.Parts
}

func (s *sender) onComplete(m *Complete, from net.Addr) {
	h := s.hosts[m.Host]
	if h == nil {
		return
	}
	s.hostFor(m.Host, from)
	switch {
	case !received(m.Status):
		h.failed = cmp.Or(m.Reason, "failed")
	case !h.complete:
		h.complete, h.dropped, h.doneAt = true, "", time.Since(s.started)
		h.staged = m.Status == CompleteStaged
		if m.Status == CompleteStageFailed {
			h.stageErr = cmp.Or(m.Reason, "staging failed")
		}
		s.opts.Logf("session %08x: host %s complete%s", s.opts.Session, h.id, stagedNote(m))
	}
	s.reply(m, from)
}

func stagedNote(m *Complete) string {
	switch m.Status {
	case CompleteStaged:
		return ", staged"
	case CompleteStageFailed:
		return ", staging failed: " + m.Reason
	}
	return ""
}

// reply sends a unicast acknowledgement, unpaced (it is tiny and rare).
func (s *sender) reply(m Message, to net.Addr) {
	if to == nil {
		return
	}
	b, err := AppendPacket(nil, Header{Session: s.opts.Session}, m) // seq 0: unicast, not counted in loss
	if err != nil {
		return
	}
	if _, err := s.conn.WriteTo(b, to); err == nil {
		s.stats.Packets++
	}
}

// dropSilent gives up on hosts that have left STATUS unanswered too long.
func (s *sender) dropSilent(now time.Time) {
	for _, h := range s.hosts {
		if h.active() && !h.asked.IsZero() && now.Sub(h.asked) > s.opts.HostTimeout {
			h.dropped = fmt.Sprintf("silent for %v (no answer to status requests)", now.Sub(h.asked).Round(time.Millisecond))
			s.opts.Logf("session %08x: dropping host %s: %s", s.opts.Session, h.id, h.dropped)
		}
	}
}

// startRound multicasts STATUS and starts collecting NACKs.
func (s *sender) startRound(now time.Time) {
	s.round++
	s.stats.Rounds++
	s.agg = newRoundAgg(s.round, uint32(len(s.opts.Manifest.Chunks)))
	for _, h := range s.hosts {
		if h.active() && h.asked.IsZero() {
			h.asked = now
		}
	}
	st := s.encode(&Status{Round: s.round})
	for range statusCopies {
		s.queue = append(s.queue, st)
	}
	s.phase, s.deadline = phaseCollect, now.Add(statusWait)
}

// roundAnswered reports whether every active host sent its whole answer.
func (s *sender) roundAnswered() bool {
	for _, h := range s.hosts {
		if h.active() && (h.round != s.round || len(h.parts) < int(h.partsWant) || h.partsWant == 0) {
			return false
		}
	}
	return len(s.queue) == 0
}

// finishRound turns the round's NACKs into repair jobs.
func (s *sender) finishRound(now time.Time) {
	s.pacer.reportLoss(int(s.agg.worst))
	s.fec.loss, s.fec.worst = s.agg.worst, max(s.fec.worst, s.agg.worst)
	s.jobs = s.sched.plan(s.agg, s.blockInfo)
	s.phase = phaseSend
	s.opts.Logf("session %08x: round %d: %d blocks and %d chunks asked for, worst loss %d‰, %d hosts to go",
		s.opts.Session, s.round, len(s.agg.blocks), len(s.agg.whole.list()), s.agg.worst, s.live())
}

// blockInfo gives a block's data symbol count and first fresh parity index.
func (s *sender) blockInfo(chunk uint32, block uint16) (k, first int, ok bool) {
	if int(chunk) >= len(s.src.clen) || s.src.clen[chunk] == 0 {
		return 0, 0, false
	}
	l := newLayout(int(s.src.clen[chunk]), s.opts.SymbolSize, s.opts.BlockSymbols)
	if int(block) >= l.blocks {
		return 0, 0, false
	}
	_, k = l.block(int(block))
	return k, k + parityFor(k, int(s.fec.pct[chunk])), true
}

// end closes the session: on failure, or with hosts dropped that may still
// be listening, it tells receivers to give up rather than wait for their
// timeout.
func (s *sender) end(now time.Time) error {
	s.stats.Duration = now.Sub(s.started)
	defer s.progress(now, true)
	if s.err != nil {
		s.abort(s.err.Error())
		return s.err
	}
	for _, h := range s.hosts {
		if h.registered && !h.complete && h.failed == "" {
			s.abort("session over: host dropped")
			break
		}
	}
	return nil
}

// abort tells every receiver to give up, best effort.
func (s *sender) abort(reason string) {
	if len(reason) > MaxReason {
		reason = reason[:MaxReason]
	}
	b := s.encode(&Abort{Reason: reason})
	for range 3 {
		s.conn.WriteTo(b, s.opts.Group)
	}
}

// finalReport lists every member host (and any guest) and how it ended.
func (s *sender) finalReport() *Report {
	r := s.stats
	r.Probes, r.LossPermille = int(s.fec.probes), int(s.fec.worst)
	for _, h := range s.hosts {
		hr := HostReport{ID: h.id, Member: h.member}
		if h.addr != nil {
			hr.Addr = h.addr.String()
		}
		switch {
		case h.complete:
			hr.State, hr.Staged, hr.StageError, hr.Done = HostComplete, h.staged, h.stageErr, h.doneAt
		case h.failed != "":
			hr.State, hr.Reason = HostFailed, h.failed
		case !h.registered:
			hr.State, hr.Reason = HostMissing, cmp.Or(h.dropped, "never registered")
		default:
			hr.State, hr.Reason = HostDropped, cmp.Or(h.dropped, "session ended before it completed")
		}
		r.Hosts = append(r.Hosts, hr)
	}
	slices.SortFunc(r.Hosts, func(a, b HostReport) int { return cmp.Compare(a.ID, b.ID) })
	return &r
}

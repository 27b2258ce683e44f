package multicast

import (
	"cmp"
	"crypto/ed25519"
	"net"
	"slices"
	"time"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// handle processes one datagram from a receiver; anything malformed,
// foreign or out of place is counted and ignored.
func (s *sender) handle(p packet, now time.Time) {
	h, m, err := wire.Parse(p.b)
	if err != nil {
		s.foreign.note(err, p.from, s.log.Debug)
	}
	if err != nil || h.Session != s.opts.Session {
		s.stats.Ignored++
		return
	}
	ok := false
	switch m := m.(type) {
	case *wire.Register:
		ok = s.onRegister(m, &h, p.from, now)
	case *wire.Nack:
		ok = s.onNack(m, &h)
	case *wire.Complete:
		ok = s.onComplete(m, &h)
	case *wire.Refuse:
		ok = s.onRefuse(m, &h, p.from)
	case *wire.RelayStatus:
		ok = s.onRelayStatus(m, &h, now)
	}
	if !ok {
		s.stats.Ignored++
	} else if s.opts.down != nil {
		s.opts.down.forward(m, p.b, len(s.opts.Manifest.Chunks))
	}
}

// identify checks a signed host packet (REGISTER, REFUSE): a valid host id
// and its signature by the key it carries, which the host table and
// HostKeys must accept. It returns the host, or nil to ignore the packet.
func (s *sender) identify(id string, key [32]byte, hdr *wire.Header) *host {
	if hostkey.CheckID(id) != nil || !signedBy(hdr, key[:]) {
		return nil
	}
	pub := ed25519.PublicKey(key[:])
	h := s.hosts.get(id)
	if h != nil && h.key != nil {
		if h.key.Equal(pub) {
			return h
		}
		// a second key for one host in one session: keep the first
		s.log.Warn("multicast: host signs with a second key: ignored", "host", id, "key", hostkey.KeyID(pub), "known_key", hostkey.KeyID(h.key))
		return nil
	}
	var keyErr error
	if s.opts.HostKeys != nil {
		keyErr = s.opts.HostKeys(id, pub)
	}
	if h == nil {
		member := len(s.opts.Hosts) == 0 && keyErr == nil // an open group admits a host whose key is accepted
		if h = s.hosts.admit(id, member); h == nil {
			return nil
		}
	}
	if keyErr != nil {
		if h.keyErr == "" {
			s.log.Warn("multicast: host refused", "host", id, "err", keyErr)
		}
		h.keyErr = keyErr.Error()
		return nil
	}
	h.key, h.keyErr = slices.Clone(pub), ""
	return h
}

// onRegister takes a signed REGISTER. A host's reply address and MAC keys
// change only with a REGISTER signed later than the one they came from, so
// a replayed one steers nothing.
func (s *sender) onRegister(m *wire.Register, hdr *wire.Header, from net.Addr, now time.Time) bool {
	if rl := s.relayAt(from); rl != nil && m.Host != rl.id {
		return s.onRelayedRegister(m, hdr, rl, now)
	}
	h := s.identify(m.Host, m.HostKey, hdr)
	if h == nil {
		return false
	}
	if !fresh(m.SignedAt, now) { // a replay, or a host whose clock is off: say which
		if !h.registered {
			h.refused = &Refusal{Code: RefuseOther, Detail: skewDetail("its", m.SignedAt, now)}
		}
		return false
	}
	if m.Ephemeral != h.eph || h.keys == nil {
		if m.SignedAt <= h.regAt {
			return false // an older REGISTER, replayed
		}
		keys, err := agree(s.dh, m.Ephemeral, s.opts.Session, h.id)
		if err != nil {
			return false
		}
		h.keys, h.eph = keys, m.Ephemeral
	}
	if m.SignedAt > h.regAt {
		h.regAt, h.addr, h.via = m.SignedAt, from, nil
	}
	h.asked = time.Time{}
	st := s.streamOf(from)
	if m.NeedManifest {
		if st != nil {
			st.hello.Store(true) // a host: it may take long to prepare before it registers
			s.streamManifest(st)
		} else {
			s.wantMan = true
		}
		return true
	}
	if !h.registered || h.dropped != "" {
		s.log.Debug("multicast: host registered", "host", h.id, "addr", h.addr)
	}
	h.registered, h.dropped, h.have, h.hasBase, h.refused = true, "", m.Have, m.HasBase, nil
	ack := &wire.Register{Host: h.id, Grant: s.grantFor(h, m, now)}
	if s.content != nil {
		ack.WrappedKey = wrapKey(s.content, &h.keys.wrap)
	}
	if st != nil && h.addr == from {
		s.streamRegistered(h, st)
	}
	s.reply(ack, h)
	return true
}

// streamOf returns the stream a packet came from, if it came from one.
func (s *sender) streamOf(from net.Addr) *stream {
	if sa, ok := from.(*streamAddr); ok && s.uni != nil {
		return s.uni.live[sa]
	}
	return nil
}

// hostMAC returns the registered host a MAC'd packet names, if the MAC is
// its: a NACK or COMPLETE no other machine can forge or redirect.
func (s *sender) hostMAC(id string, hdr *wire.Header) *host {
	h := s.hosts.get(id)
	if h == nil || h.keys == nil || !macBy(hdr, &h.keys.up) {
		return nil
	}
	h.asked = time.Time{}
	return h
}

func (s *sender) onNack(m *wire.Nack, hdr *wire.Header) bool {
	h := s.hostMAC(m.Host, hdr)
	if h == nil {
		return false
	}
	if !h.registered || h.complete {
		return true // a complete host asking again (e.g. its agent re-joined) costs the others nothing
	}
	if h.stream != nil {
		s.streamNack(h, m)
		return true
	}
	h.dropped, h.feedback = "", h.feedback+1
	s.countFeedback(m.Round)
	if m.Round&probeRound != 0 {
		s.heardLoss(m.Round, m.Loss)
		return true
	}
	if s.agg == nil || m.Round != s.agg.round {
		return true
	}
	if h.round != m.Round || h.parts == nil {
		h.round, h.parts, h.need = m.Round, map[uint8]bool{}, 0
	}
	if h.parts[m.Part] {
		return true // a duplicate part: each host's answer costs at most MaxNackParts packets of work
	}
	s.agg.add(m)
	h.parts[m.Part], h.partsWant = true, m.Parts
	h.need += asked(m)
	return true
}

// countFeedback counts a NACK packet towards its round's (or probe's)
// total.
func (s *sender) countFeedback(round uint32) {
	s.stats.Feedback++
	n := &s.fbRound
	switch {
	case round == probeRound|s.fec.probes:
		n = &s.fbProbe
	case round != s.round || round&probeRound != 0:
		return // a late answer: counted in all, not in a round's
	}
	*n++
	s.stats.FeedbackMax = max(s.stats.FeedbackMax, *n)
}

// onRefuse records why a host will not take the session.
func (s *sender) onRefuse(m *wire.Refuse, hdr *wire.Header, from net.Addr) bool {
	h := s.identify(m.Host, m.HostKey, hdr)
	if h == nil || h.registered || h.complete {
		return h != nil
	}
	if h.refused == nil || *h.refused != (Refusal{Code: m.Code, Detail: m.Detail}) {
		s.log.Warn("multicast: host refuses the session", "host", h.id, "addr", from, "code", m.Code, "detail", hostkey.Printable(m.Detail))
	}
	h.refused = &Refusal{Code: m.Code, Detail: m.Detail}
	if h.addr == nil && s.relayAt(from) == nil { // a REFUSE its relay forwarded does not say where it is
		h.addr = from
	}
	return true
}

// onComplete takes a host's COMPLETE: MAC'd under its session key, or
// signed by its host key (a relayed host's, which its relay forwards).
func (s *sender) onComplete(m *wire.Complete, hdr *wire.Header) bool {
	h := s.hostMAC(m.Host, hdr)
	if h == nil && hdr.Auth() == wire.AuthSig {
		h = s.hostSigned(m.Host, hdr)
	}
	if h == nil {
		return false
	}
	switch {
	case m.Status == wire.CompleteFailed: // any other status: the host has the verified image
		h.failed = cmp.Or(m.Reason, "failed")
	case !h.complete:
		h.complete, h.dropped, h.doneAt = true, "", time.Since(s.started)
		h.staged, h.stageTime = m.Status == wire.CompleteStaged, time.Duration(m.StageMillis)*time.Millisecond
		if m.Status == wire.CompleteStageFailed {
			h.stageErr = cmp.Or(m.Reason, "staging failed")
		}
		args := []any{"host", h.id, "staged", h.staged}
		if h.stageErr != "" {
			args = append(args, "stage_err", hostkey.Printable(h.stageErr))
		}
		s.log.Debug("multicast: host complete", args...)
	}
	s.reply(m, h)
	return true
}

// reply sends a unicast acknowledgement to h, under its MAC key, unpaced
// (it is tiny and rare).
func (s *sender) reply(m wire.Message, h *host) {
	if h.addr == nil || h.keys == nil {
		return
	}
	b, err := appendMAC(nil, wire.Header{Session: s.opts.Session}, m, &h.keys.down) // seq 0: unicast, not counted in loss
	if err != nil {
		return
	}
	if err := s.sendTo(b, h.addr); err == nil {
		s.stats.Packets++
	}
}

// dropSilent gives up on hosts that have left STATUS unanswered too long.
func (s *sender) dropSilent(now time.Time) {
	for _, h := range s.hosts.dropSilent(now, s.opts.HostTimeout) {
		s.log.Warn("multicast: dropping host", "host", h.id, "reason", h.dropped)
	}
}

// startRound multicasts STATUS and starts collecting NACKs.
func (s *sender) startRound(now time.Time) {
	if s.round == 0 && s.rate != nil {
		s.stats.Rate = s.pacer.bitsPerSec() // where the first pass's adaptation left it
	}
	s.round++
	s.stats.Rounds++
	s.fbRound = 0
	s.agg = newRoundAgg(s.round, uint32(len(s.opts.Manifest.Chunks)))
	s.hosts.ask(now)
	s.roundQuiet, s.roundHosts = s.quiet()
	st := s.encode(&wire.Status{Round: s.round, Quiet: s.roundQuiet, Hosts: s.roundHosts})
	for range statusCopies {
		s.queue = append(s.queue, st)
	}
	s.phase, s.deadline = phaseCollect, now.Add(statusWait)
	if s.roundQuiet {
		s.deadline, s.lastSummary = now.Add(quietWait), time.Time{}
	}
}

// roundAnswered reports whether every active host sent its whole answer.
func (s *sender) roundAnswered() bool {
	if s.roundQuiet {
		return false // silence is an answer: the round runs its time
	}
	return s.hosts.answered(s.round) && len(s.queue) == 0
}

// finishRound turns the round's NACKs into repair jobs.
func (s *sender) finishRound(now time.Time) {
	s.checkStalls(now)
	s.pacer.reportLoss(int(s.agg.worst))
	if !s.roundQuiet { // a quiet round hears only the hosts lacking most: the probes' percentile stands
		s.fec.loss = s.agg.worst
	}
	s.fec.worst = max(s.fec.worst, s.agg.worst)
	s.jobs = s.sched.plan(s.agg, s.blockInfo)
	s.phase = phaseSend
	s.logRound(roundSummary{blocks: len(s.agg.blocks), chunks: len(s.agg.whole.list()), nacks: s.fbRound,
		worst: int(s.agg.worst), hosts: s.hosts.live()})
}

// roundSummary is what a repair round's record says: the blocks and
// whole chunks asked for, in how many NACK packets, the worst loss (‰)
// and the hosts still to finish.
type roundSummary struct{ blocks, chunks, nacks, worst, hosts int }

// logRound logs a round's summary, once for a run of identical rounds
// (hosts still decoding answer the same empty NACK round after round):
// the first is logged, and the count of the others when the run ends.
func (s *sender) logRound(sum roundSummary) {
	if s.lastRound != nil && sum == *s.lastRound {
		s.sameRounds++
		return
	}
	s.flushRounds()
	s.lastRound = &sum
	s.log.Debug("multicast: repair round", "round", s.round, "blocks", sum.blocks, "chunks", sum.chunks, "nack_packets", sum.nacks,
		"worst_loss_permille", sum.worst, "hosts_to_go", sum.hosts)
}

func (s *sender) flushRounds() {
	if s.sameRounds > 0 {
		s.log.Debug("multicast: more rounds like it", "count", s.sameRounds, "to_round", s.round-1)
	}
	s.sameRounds = 0
}

// MaxStallRounds bounds the rounds a host may go on asking for repair
// without ever asking for less than its best: a broken host, or a member
// that NACKs everything to hold the session, is dropped after this many
// (and at least stallTime after its last progress), so no host can extend
// a session without bound. Honest repair asks for less every round or
// two; a round in which a host asks for nothing (it is decoding or
// copying its own chunks) is not a stall.
const MaxStallRounds = 30

// stallTime is the least time without progress before a stalled host is
// dropped: rounds can follow each other in a few milliseconds.
const stallTime = 30 * time.Second

// checkStalls drops hosts whose NACKs stopped getting smaller.
func (s *sender) checkStalls(now time.Time) {
	for _, h := range s.hosts.checkStalls(now, s.round) {
		s.log.Warn("multicast: dropping host", "host", h.id, "reason", h.dropped)
	}
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
	s.flushRounds()
	s.stats.Duration = now.Sub(s.started)
	defer s.progress(now, true)
	if s.err != nil {
		s.abort(s.err.Error())
		return s.err
	}
	if s.hosts.unfinished() {
		s.abort("session over: host dropped")
	}
	return nil
}

// abort tells every receiver to give up, best effort.
func (s *sender) abort(reason string) {
	if len(reason) > wire.MaxReason {
		reason = reason[:wire.MaxReason]
	}
	b := s.encode(&wire.Abort{Reason: reason})
	for range 3 {
		s.conn.WriteTo(b, s.opts.Group)
	}
	s.abortStreams(s.encodeUnicast(&wire.Abort{Reason: reason}))
}

// finalReport lists every member host (and any guest) and how it ended.
func (s *sender) finalReport() *Report {
	r := s.stats
	r.Probes, r.LossPermille = int(s.fec.probes), int(s.fec.worst)
	r.Hosts = s.hosts.reports()
	for _, hr := range r.Hosts {
		r.UnicastBytes += hr.UnicastBytes
	}
	r.Relays = s.relayReports()
	return &r
}

// asked measures what a NACK asks for, for the sender's progress check: a
// missing symbol counts one, a chunk of which nothing arrived counts as
// many as its symbols could be (MaxShards).
func asked(n *wire.Nack) int64 {
	var a int64
	for _, rg := range n.Chunks {
		a += int64(rg.Count) * wire.MaxShards
	}
	for _, b := range n.Blocks {
		a += int64(b.Missing)
	}
	return a
}

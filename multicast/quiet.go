package multicast

import (
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Quiet rounds: feedback that does not grow with the group. With more
// than quietHosts members still receiving, the sender's STATUS is quiet
// and says how many they are. Then a host that lacks nothing stays silent
// (a heartbeat NACK every heartbeatEvery, the first at a random moment
// after it registered, keeps it from being dropped), a
// loss probe is answered by a random quietSample of the hosts, and a host
// that lacks something waits a random backoff first, drawn from a
// truncated exponential over quietSpread with rate ln(hosts)+1 (NORM's
// suppression, RFC 5740 §5.5.2): about one host answers at once, then more
// and more. Meanwhile the sender multicasts, at most every summaryEvery, a
// signed summary of what the round's NACKs asked so far (chunks whole, and
// per block the most symbols any host lacks); a host whose every need it
// covers stays silent, since the repair it will get is at least what it
// would ask for. A host that answers sends the same NACKs as in a small
// group. Proactive parity is sized from the 90th percentile of the sampled
// loss, not the worst host's: the few lossier hosts are repaired by the
// rounds, instead of every host paying their share.
// quietHosts is the group size above which rounds are quiet (a variable
// only so the scale benchmark can show the group without them).
var quietHosts = 64

const (
	quietSample    = 64
	quietSpread    = 100 * time.Millisecond
	quietWait      = quietSpread + 100*time.Millisecond // a quiet round's collection, past the last backoff
	summaryEvery   = 10 * time.Millisecond
	heartbeatEvery = 5 * time.Second // a third of DefaultHostTimeout
	// silencedHeartbeat is how long a host with needs that summaries
	// cover may stay silent: longer than heartbeatEvery, so the hosts
	// whose heartbeat falls due do not all answer the round that covers
	// them, and still inside DefaultHostTimeout
	silencedHeartbeat = 2 * heartbeatEvery
	lossPercentile    = 0.9
)

// quiet reports whether the group is large enough for quiet rounds.
func (s *sender) quiet() (bool, uint16) {
	n := s.hosts.mcLive()
	return n > quietHosts, uint16(min(n, math.MaxUint16))
}

// summarize multicasts what the quiet round's NACKs asked so far, when it
// grew and summaryEvery has passed.
func (s *sender) summarize(now time.Time) {
	if !s.roundQuiet || s.agg == nil || !s.agg.changed || now.Sub(s.lastSummary) < summaryEvery {
		return
	}
	st := &wire.Status{Round: s.round, Quiet: true, Hosts: s.roundHosts, Summary: true}
	for _, c := range s.agg.whole.list() {
		st.Chunks = wire.AppendChunk(st.Chunks, c)
		if len(st.Chunks) > wire.MaxNackRanges {
			st.Chunks = st.Chunks[:wire.MaxNackRanges]
			break
		}
	}
	for k, n := range s.agg.blocks {
		if len(st.Blocks) == wire.MaxNackBlocks {
			break // the hosts needing the rest answer: less suppression, no less repair
		}
		st.Blocks = append(st.Blocks, wire.BlockNeed{Chunk: k.chunk, Block: k.block, Missing: n})
	}
	s.agg.changed, s.lastSummary = false, now
	s.queue = append(s.queue, s.encode(st))
}

// summaryDue is how long until the next summary may go, when one is
// wanted.
func (s *sender) summaryDue(now time.Time) (time.Duration, bool) {
	if s.phase != phaseCollect || !s.roundQuiet || s.agg == nil || !s.agg.changed {
		return 0, false
	}
	return s.lastSummary.Add(summaryEvery).Sub(now), true
}

// quietLoss takes a sampled probe answer: the estimate is the latest
// probe's 90th percentile.
func (s *sender) quietLoss(loss uint16) {
	if len(s.fec.samples) < 4*quietSample {
		s.fec.samples = append(s.fec.samples, loss)
	}
	v := slices.Clone(s.fec.samples)
	slices.Sort(v)
	s.fec.loss, s.fec.fresh = v[int(float64(len(v)-1)*lossPercentile)], true
}

// onQuietStatus answers a quiet STATUS: a probe by sample, a round only
// with a need (or a heartbeat) after a backoff, a summary by staying quiet
// when it covers every need.
func (r *receiver) onQuietStatus(s *wire.Status, now time.Time) {
	switch {
	case s.Probe:
		if r.probeAt.IsZero() && rand.Float64() < r.probeShare(s.Hosts) {
			r.probeAt, r.probeRound = now.Add(rand.N(nackSpread)), s.Round
		}
	case s.Summary:
		// a host silenced round after round keeps the sender hearing it
		// by its own heartbeat (heartbeatDue), spread in time, not by
		// answering a round: in a slow session every host would cross its
		// silence limit between the same two rounds
		if !r.nackAt.IsZero() && r.nackRound == s.Round && r.covered(s) {
			r.nackAt, r.nackDone = time.Time{}, s.Round
			r.res.Suppressed++
		}
	case !r.nackAt.IsZero() && r.nackRound == s.Round, r.nackDone == s.Round:
		// a copy of a STATUS already taken
	default:
		chunks, blocks := r.st.needs()
		if len(chunks) == 0 && len(blocks) == 0 {
			if now.Sub(r.lastAnswer) >= heartbeatEvery {
				r.nackAt, r.nackRound = now.Add(rand.N(nackSpread)), s.Round
			}
			return
		}
		r.nackAt, r.nackRound = now.Add(backoff(s.Hosts)), s.Round
	}
}

// probeShare is the chance this host answers a quiet probe: quietSample
// of the group; a host losing more than congestedProbe answers at
// congestedShare times that, so the sender's rate hears a host behind a
// slower link within a few probes (at 2,000 hosts 6% a probe: ~4 s on
// average), and a probe brings at most congestedShare × quietSample
// answers even when every host is congested (the sender's own link).
func (r *receiver) probeShare(hosts uint16) float64 {
	p := float64(quietSample) / float64(max(1, hosts))
	if r.seq.peekPermille() >= congestedProbe {
		p *= congestedShare
	}
	return p
}

// congestedProbe and congestedShare: see probeShare.
const (
	congestedProbe = startupExitLoss * 2
	congestedShare = 2
)

// heartbeatRound is the round a heartbeat NACK names: none the sender
// runs (rounds count from 1), so it counts as the host's life and in no
// round's feedback.
const heartbeatRound = 0

// heartbeatDue reports whether a host that summaries have silenced is due
// a heartbeat: it has sent nothing for its own hbAfter (drawn once, in
// (silencedHeartbeat-heartbeatEvery, silencedHeartbeat]), so the sender,
// which drops a host silent for its HostTimeout, hears it in time, and the
// group's heartbeats spread over heartbeatEvery instead of meeting in one
// round.
func (r *receiver) heartbeatDue(now time.Time) bool {
	return r.phase == recvReceiving && !r.res.Unicast && r.res.Suppressed > 0 &&
		r.hbAfter > 0 && r.silentFor(now) >= r.hbAfter
}

// heartbeat sends a heartbeat when one is due.
func (r *receiver) heartbeat(now time.Time) {
	if !r.heartbeatDue(now) {
		return
	}
	r.lastAnswer = now
	r.send(&wire.Nack{Host: r.opts.HostID, Round: heartbeatRound, Loss: r.seq.lossPermille(), Parts: 1})
}

// silentFor is how long the host has sent no NACK (since it began, when
// none yet: its register acknowledgement may have been lost).
func (r *receiver) silentFor(now time.Time) time.Duration {
	if r.lastAnswer.IsZero() {
		return now.Sub(r.begin)
	}
	return now.Sub(r.lastAnswer)
}

// backoff draws a quiet round's answer delay: a truncated exponential over
// quietSpread with rate ln(hosts)+1, so of n hosts about one answers at
// once and most near the end, after the summaries that may silence them.
func backoff(hosts uint16) time.Duration {
	lambda := math.Log(float64(max(2, hosts))) + 1
	x := 1 + math.Log(1-rand.Float64())/lambda // 1-u: never log(0)
	return time.Duration(max(0, x) * float64(quietSpread))
}

// covered reports whether a summary asks for at least everything this
// host lacks.
func (r *receiver) covered(s *wire.Status) bool {
	chunks, blocks := r.st.needs()
	for _, c := range chunks {
		for i := c.First; i < c.First+c.Count; i++ {
			if !slices.ContainsFunc(s.Chunks, func(rg wire.Range) bool { return i >= rg.First && i-rg.First < rg.Count }) {
				return false
			}
		}
	}
	if len(blocks) == 0 {
		return true
	}
	asked := make(map[blockKey]uint16, len(s.Blocks))
	for _, b := range s.Blocks {
		asked[blockKey{b.Chunk, b.Block}] = b.Missing
	}
	for _, b := range blocks {
		if asked[blockKey{b.Chunk, b.Block}] < b.Missing {
			return false
		}
	}
	return true
}

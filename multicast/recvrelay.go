package multicast

import (
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// A relay's upstream side is its receiver (relay.go) with these hooks: it
// asks to relay in REGISTER and takes the grant from the acknowledgement,
// keeps each verified frame, tells the sender it holds only what its
// hosts hold too, forwards their packets, reports them in RELAY-STATUS,
// and holds its own COMPLETE until its subnet's session ends.

// relayStatusEvery is a relay's RELAY-STATUS period: its hosts' states
// reach the sender within it, and the sender, which gives up on a relay's
// hosts after HostTimeout without one, hears several in that time.
const relayStatusEvery = time.Second

// relayUp is the relay's part of its receiver; the receiver's loop owns it.
type relayUp struct {
	link       *relayLink
	framesPath string
	frames     *frameStore
	desc       []byte // the sender's descriptor, as it came
	off        bool   // not relaying this session (sealed, or no grant)
	granted    bool
	started    bool // the sender's transfer began: what it pushes is settled
	heldGen    int  // the generation of the hosts' held set last registered with
	statusAt   time.Time
	seq        uint32
	released   bool // the subnet's session ended and its last RELAY-STATUS went
}

// relayWake is the channel that wakes the loop for the relay (nil, never
// ready, when the receiver is no relay).
func (r *receiver) relayWake() <-chan struct{} {
	if r.opts.relay == nil {
		return nil
	}
	return r.opts.relay.link.upWake
}

// relaying reports whether this receiver relays its session (or may: the
// grant may be on its way).
func (r *receiver) relaying() bool {
	up := r.opts.relay
	return up != nil && !up.off
}

// relayHolding reports whether the relay's COMPLETE waits: for its
// subnet's session, or, until its REGISTER is acknowledged, to learn
// whether it relays one (a COMPLETE first would end its part).
func (r *receiver) relayHolding() bool {
	up := r.opts.relay
	return up != nil && !up.off && !up.released && (up.granted || !r.phase.registered())
}

// relayJoin starts relaying the session whose descriptor b the receiver
// just accepted: a sealed session, or one that is itself relayed, is not
// relayed (slice 1): the host takes part as any host.
func (r *receiver) relayJoin(b []byte) error {
	up := r.opts.relay
	if up == nil {
		return nil
	}
	if r.ann.Encrypted || r.ann.Grant != nil {
		up.off = true
		r.log.Warn("multicast: not relaying a sealed or relayed session: taking part as a host", sessionAttr(r.res.Session))
		return nil
	}
	fs, err := openFrames(up.framesPath, r.ann.ChunkSize, r.lens)
	if err != nil {
		return err
	}
	up.frames, up.desc = fs, append([]byte(nil), b...)
	return nil
}

// relayBound is the disk the frame store may take besides the image.
func (r *receiver) relayBound() int64 {
	if r.opts.relay == nil || r.ann.Encrypted || r.ann.Grant != nil {
		return 0
	}
	return framesBound(r.lens)
}

// upHave is what the relay tells the sender it holds: what it holds that
// every host registered with it holds too. The chunks it holds but leaves
// out it takes again, for their frames.
func (r *receiver) upHave() []wire.Range {
	if !r.relaying() || r.st == nil {
		return r.have
	}
	held, gen := r.opts.relay.link.heldSet()
	r.opts.relay.heldGen = gen
	if held == nil {
		return r.have
	}
	var out []wire.Range
	for _, rg := range r.have {
		for c := rg.First; c < rg.First+rg.Count && int(c) < len(r.st.chunks); c++ {
			switch {
			case held.has(c):
				out = wire.AppendChunk(out, c)
			case !r.st.m.Chunks[c].Zero:
				r.st.want.addRange(c, c+1)
			}
		}
	}
	return out
}

// takeGrant takes the grant from the sender's acknowledgement of the
// relay's REGISTER; without one the relay takes part as a host.
func (r *receiver) takeGrant(m *wire.Register) {
	up := r.opts.relay
	if up == nil || up.off || up.granted {
		return
	}
	if m.Grant == nil || !grantFits(m.Grant, r.ann, r.res.Session) || m.Grant.RelayKey != r.hostPub {
		up.off, r.doneAt = true, time.Now() // its COMPLETE goes now, and lingers from now
		r.log.Warn("multicast: the sender grants this host no relay: taking part as a host", sessionAttr(r.res.Session))
		return
	}
	up.granted = true
	up.link.begin(&relaySession{grant: m.Grant, desc: up.desc, m: r.res.Manifest, frames: up.frames, rate: r.ann.Rate})
	r.log.Debug("multicast: relaying the session", sessionAttr(r.res.Session))
}

// relayStarted notes that the sender's transfer began (a symbol or a
// STATUS came): the relay's subnet session closes its registration.
func (r *receiver) relayStarted() {
	if up := r.opts.relay; up != nil && !up.started {
		up.started = true
		up.link.start()
	}
}

// relayArrived hands a verified frame to the relay's subnet session.
func (r *receiver) relayArrived(res decodeResult) {
	if up := r.opts.relay; up != nil && res.framed && up.granted {
		up.link.arrived(uint32(res.chunk))
	}
}

// relayTurn does the relay's share of a loop turn: register again while
// its hosts' held set shrinks, ask for the frames its session waits for,
// forward its hosts' packets, report them, and end its hold.
func (r *receiver) relayTurn(now time.Time) {
	up := r.opts.relay
	if up == nil || !up.granted || up.released {
		return
	}
	if _, gen := up.link.heldSet(); gen != up.heldGen && !up.started {
		r.lastReg = now // what it holds narrowed before the transfer: say so first
		r.send(&wire.Register{Host: r.opts.HostID, Relay: true, Have: r.upHave()})
	}
	r.relayWants()
	for _, f := range up.link.takeForwards() {
		r.conn.WriteTo(f.b, r.sender)
	}
	switch {
	case !up.link.holding():
		r.relayStatus(now)
		up.released, r.doneAt = true, now // its COMPLETE may go, and linger from now
		r.log.Debug("multicast: the relayed session ended", sessionAttr(r.res.Session))
	case now.Sub(up.statusAt) >= relayStatusEvery:
		r.relayStatus(now)
	}
}

// relayWants takes again the symbols of chunks the relay holds whose
// frames its subnet's session waits for (the chunks it lacks come
// anyway): its next answer to the sender asks for them.
func (r *receiver) relayWants() {
	for _, c := range r.opts.relay.link.takeWanted() {
		if int(c) < len(r.st.chunks) && r.st.chunks[c].done && !r.st.m.Chunks[c].Zero {
			r.st.want.addRange(c, c+1)
		}
	}
}

// relayStatus sends RELAY-STATUS, its hosts paged.
func (r *receiver) relayStatus(now time.Time) {
	up := r.opts.relay
	up.statusAt = now
	snap := up.link.snapshot()
	hosts := snap.hosts
	for first := true; first || len(hosts) > 0; first = false {
		n := min(len(hosts), wire.MaxRelayStatusHosts)
		up.seq++
		r.send(&wire.RelayStatus{Relay: r.opts.HostID, Seq: up.seq, DownBytes: uint64(snap.bytes), DownPackets: uint64(snap.packets),
			Rounds: uint32(snap.rounds), Hosts: hosts[:n]})
		hosts = hosts[n:]
	}
}

// relayUpstreamEnded gives up the hold when the sender's connection ended:
// nothing more can reach it. The subnet's session runs on to its end.
func (r *receiver) relayUpstreamEnded() {
	if up := r.opts.relay; up != nil {
		up.released = true
	}
}

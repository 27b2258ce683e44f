package multicast

import (
	"fmt"
	"math/rand/v2"
	"time"
)

// recvPhase is where a receiver stands in a session. It changes only in
// receiver.on, by the transitions in recvTransitions.
//
//	seeking ──candidate──▶ fetching ──manifest──▶ registering ──acked──▶ receiving
//	   ▲                      │                        │                     │
//	   └───────refused────────┘                     inPlace               inPlace
//	                                                   ▼                     ▼
//	                                               verified ────acked────▶ done
type recvPhase int

const (
	recvSeeking     recvPhase = iota // following no session: waiting for a trusted ANNOUNCE
	recvFetching                     // following a candidate: assembling and checking its manifest
	recvRegistering                  // manifest accepted, image open: REGISTER until acknowledged
	recvReceiving                    // registered: taking symbols, answering STATUS
	recvVerified                     // image in place before a REGISTER was acknowledged (every chunk local): still registering
	recvDone                         // image in place and registered: COMPLETE until echoed
)

var recvPhaseNames = [...]string{
	recvSeeking: "seeking", recvFetching: "fetching", recvRegistering: "registering",
	recvReceiving: "receiving", recvVerified: "verified", recvDone: "done",
}

func (p recvPhase) String() string {
	if p >= 0 && int(p) < len(recvPhaseNames) {
		return recvPhaseNames[p]
	}
	return fmt.Sprintf("recvPhase(%d)", int(p))
}

// recvEvent is what moves a receiver from one phase to the next.
type recvEvent int

const (
	evCandidate recvEvent = iota // a fresh ANNOUNCE signed by a trusted key: follow its session
	evRefused                    // the candidate is refused (untrusted, corrupt, slow, aborted)
	evManifest                   // its manifest verified and the partial image is open
	evAcked                      // the sender acknowledged this host's REGISTER
	evInPlace                    // the image is verified and in place
)

// recvTransitions are every phase change a receiver makes; an event not
// listed for a phase leaves it where it is.
var recvTransitions = map[recvPhase]map[recvEvent]recvPhase{
	recvSeeking:     {evCandidate: recvFetching},
	recvFetching:    {evRefused: recvSeeking, evManifest: recvRegistering},
	recvRegistering: {evAcked: recvReceiving, evInPlace: recvVerified},
	recvReceiving:   {evInPlace: recvDone},
	recvVerified:    {evAcked: recvDone},
}

// following reports whether the receiver follows a session (it has its
// signed ANNOUNCE).
func (p recvPhase) following() bool { return p != recvSeeking }

// joined reports whether the manifest is accepted and the store open.
func (p recvPhase) joined() bool { return p >= recvRegistering }

// registered reports whether the sender acknowledged a REGISTER.
func (p recvPhase) registered() bool { return p == recvReceiving || p == recvDone }

// registering reports whether REGISTER is still due (asking for the
// manifest while fetching).
func (p recvPhase) registering() bool { return p.following() && !p.registered() }

// transferring reports whether the image is open and not yet in place.
func (p recvPhase) transferring() bool { return p == recvRegistering || p == recvReceiving }

// inPlace reports whether the image is verified and in place.
func (p recvPhase) inPlace() bool { return p == recvVerified || p == recvDone }

// on moves the receiver by e, if e applies in its phase, and does what
// entering the new phase takes; it reports whether the phase changed.
func (r *receiver) on(e recvEvent, now time.Time) bool {
	next, ok := recvTransitions[r.phase][e]
	if !ok {
		return false
	}
	r.phase = next
	switch e {
	case evCandidate:
		r.join.progress, r.join.since, r.join.acked, r.join.alt = now, now, false, nil
	case evRefused: // forget the candidate
		r.ann, r.sender, r.res.Session, r.man, r.keys = nil, nil, 0, manifestBuf{}, nil
		r.lastReg = time.Time{}
	case evManifest:
		r.man, r.lastReg = manifestBuf{}, time.Time{}
	case evAcked: // heartbeats of a large group spread over heartbeatEvery
		r.lastAnswer = now.Add(-rand.N(heartbeatEvery))
		r.hbAfter = silencedHeartbeat - rand.N(heartbeatEvery)
	case evInPlace:
		r.doneAt = now
	}
	return true
}

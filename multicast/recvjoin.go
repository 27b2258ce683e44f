package multicast

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Joining tunables.
const (
	// candidateTimeout is how long a receiver waits on an announced
	// session's manifest without progress before it gives that session up
	// (a dead or forged announce must not hold a receiver). A LAN sender
	// answers a manifest request within milliseconds.
	candidateTimeout = time.Second
	// joinCheckEvery is the receiver's timer period before it has joined.
	joinCheckEvery = 100 * time.Millisecond
	// maxRefused bounds the remembered refused sessions; when full it is
	// cleared, so a forged flood costs memory no larger than this.
	maxRefused = 64
	// joinTimeout bounds the whole assembly of a candidate's descriptor,
	// progress or not: a trickle of fragments cannot hold a receiver.
	joinTimeout = 30 * time.Second
	// ackWait is how long a receiver waits for its REGISTER to be
	// acknowledged before it tries another address the session's signed
	// ANNOUNCE came from (a replayed ANNOUNCE may have drawn it away).
	ackWait = 3 * time.Second
	// refuseEvery rate-limits REFUSE per session and sender address.
	refuseEvery = time.Second
	// maxRefusesPerSecond bounds all REFUSEs a receiver sends: a flood of
	// sessions it refuses costs it a few signatures a second, and nobody
	// can use it to reflect traffic.
	maxRefusesPerSecond = 10
)

// joinState is what a receiver knows while choosing a session: it locks
// onto an announce, fetches and verifies the manifest, and on failure
// (untrusted, corrupt, or no manifest in time) refuses that session and
// sender and waits for another.
type joinState struct {
	progress time.Time // last manifest progress of the candidate session
	since    time.Time // when the candidate was taken
	refused  map[string]*refusal
	last     error // why the last candidate was refused
	solicit  time.Time
	acked    bool     // the sender acknowledged a REGISTER of ours
	alt      net.Addr // another address the session's signed ANNOUNCE came from
	refWin   time.Time
	refN     int // REFUSEs sent since refWin
}

// refusal is a refused session: why, and when the sender was last told.
type refusal struct {
	rf   *Refusal // nil: nothing to tell (the sender could not be authenticated)
	sent time.Time
	// until, if set, ends the refusal: a session given up only because its
	// manifest was slow (a busy sender, a lossy link) is tried again after
	// retryAfter, while a dead or forged announce still costs a receiver
	// no more than a try every retryAfter.
	until time.Time
}

// retryAfter is how long a session dropped for a slow manifest stays
// refused.
const retryAfter = 3 * time.Second

func refusalKey(session uint32, from net.Addr) string {
	return fmt.Sprintf("%08x/%v", session, from)
}

// accept reports whether a packet belongs to the session the receiver
// follows, locking onto a new candidate when it follows none and the
// packet is a fresh ANNOUNCE signed by a trusted key.
func (r *receiver) accept(h *wire.Header, m wire.Message, from net.Addr, now time.Time) bool {
	a, isAnn := m.(*wire.Announce)
	if r.phase.following() {
		if h.Session == r.res.Session && sameHost(from, r.sender) {
			return true
		}
		if isAnn && h.Session == r.res.Session && r.authentic(h, a, now) {
			r.join.alt = from
		} else if isAnn && h.Session != r.res.Session {
			r.refuseBusy(h, a, from, now)
		}
		return false
	}
	if r.opts.shun != nil && r.shunsAddr(h.Session, from) {
		return false // a relay given up on: not even asked for its manifest
	}
	if rf := r.join.refused[refusalKey(h.Session, from)]; rf != nil && (rf.until.IsZero() || now.Before(rf.until)) {
		if isAnn {
			r.tellRefusal(rf, h, a, from, now)
		}
		return false
	}
	if (r.opts.Session != 0 && h.Session != r.opts.Session) || slices.Contains(r.opts.Skip, h.Session) {
		return false
	}
	if !isAnn {
		r.solicitAnnounce(*h, from, now)
		return false
	}
	if !r.verifyAnnounce(h, a, now) {
		return false // forged: not worth an answer
	}
	if !fresh(a.SignedAt, now) {
		// replayed long after, or a sender whose clock is off: tell it
		// (rate-limited like any refusal), so a skewed clock is not silence
		r.refuseSession(h.Session, from, &Refusal{Code: RefuseOther, Detail: skewDetail("the sender's", a.SignedAt, now)}, now)
		return false
	}
	if err := r.trustKey(a); err != nil {
		r.refuseSession(h.Session, from, err, now)
		return false
	}
	if r.deaf(h, a, now) {
		r.goStream = &streamTarget{session: h.Session, from: from, port: a.FetchPort}
		return false
	}
	keys, err := agree(r.eph, a.SessionDH, h.Session, r.opts.HostID)
	if err != nil {
		return false
	}
	r.ann, r.sender, r.res.Session, r.keys = a, from, h.Session, keys
	r.on(evCandidate, now)
	r.log.Debug("multicast: trying session", sessionAttr(h.Session), "from", from)
	return true
}

// trustKey checks that an ANNOUNCE's release key is one this host trusts.
func (r *receiver) trustKey(a *wire.Announce) error {
	for _, k := range r.opts.Trusted {
		if k.Equal(ed25519.PublicKey(a.ReleaseKey[:])) {
			return nil
		}
	}
	if r.opts.Insecure {
		r.log.Debug("multicast: insecure: following a session signed by an untrusted key", "key", image.KeyID(a.ReleaseKey[:]))
		return nil
	}
	ids := make([]string, len(r.opts.Trusted))
	for i, k := range r.opts.Trusted {
		ids[i] = image.KeyID(k)
	}
	return &Refusal{Code: RefuseUntrustedKey, Detail: fmt.Sprintf("release %x is signed by key %s; this host trusts only key %s (its --trust)",
		a.ReleaseID, image.KeyID(a.ReleaseKey[:]), strings.Join(ids, ", "))}
}

// refuseBusy tells the sender of another trusted session that this host
// is receiving one already (rate-limited, at most one signature check per
// refuseEvery and session).
func (r *receiver) refuseBusy(h *wire.Header, a *wire.Announce, from net.Addr, now time.Time) {
	if r.phase.inPlace() {
		return // done here: it takes the other session in a moment
	}
	key := refusalKey(h.Session, from)
	rf := r.join.refused[key]
	if rf == nil {
		rf = &refusal{rf: &Refusal{Code: RefuseBusy, Detail: fmt.Sprintf("receiving release %s (session %08x); it takes this session after that one", r.res.ReleaseID, r.res.Session)}}
		r.remember(key, rf)
	}
	r.tellRefusal(rf, h, a, from, now)
}

// tellRefusal answers a refused session's ANNOUNCE with REFUSE, at most
// every refuseEvery, and only to an ANNOUNCE that is fresh and signed by
// the key it names.
func (r *receiver) tellRefusal(rf *refusal, h *wire.Header, a *wire.Announce, from net.Addr, now time.Time) {
	if rf.rf == nil || now.Sub(rf.sent) < refuseEvery || !fresh(a.SignedAt, now) || !r.verifyAnnounce(h, a, now) {
		return
	}
	rf.sent = now
	r.sendRefuse(h.Session, rf.rf, from)
}

func (r *receiver) sendRefuse(session uint32, rf *Refusal, to net.Addr) {
	if now := time.Now(); now.Sub(r.join.refWin) >= time.Second {
		r.join.refWin, r.join.refN = now, 0
	}
	if r.join.refN >= maxRefusesPerSecond {
		return
	}
	r.join.refN++
	b, err := appendSigned(nil, wire.Header{Session: session}, &wire.Refuse{Host: r.opts.HostID, HostKey: r.hostPub, Code: rf.Code, Detail: rf.Detail}, r.opts.HostKey)
	if err == nil {
		r.conn.WriteTo(b, to)
	}
}

// refuseVersion answers an ANNOUNCE of another protocol version with a
// REFUSE its sender can read (REFUSE keeps its layout), rate-limited per
// address.
func (r *receiver) refuseVersion(h wire.Header, err error, from net.Addr, now time.Time) {
	var ve *wire.VersionError
	if !errors.As(err, &ve) || h.Type != wire.TypeAnnounce || from == nil {
		return
	}
	key := "version/" + from.String()
	rf := r.join.refused[key]
	if rf == nil {
		rf = &refusal{rf: &Refusal{Code: RefuseVersion, Detail: fmt.Sprintf("this host speaks loopcast protocol version %d, the session version %d: run the same loopcast on the sender and the hosts", wire.Version, ve.Got)}}
		r.remember(key, rf)
	}
	if now.Sub(rf.sent) >= refuseEvery {
		rf.sent = now
		r.sendRefuse(h.Session, rf.rf, from)
	}
}

func (r *receiver) remember(key string, rf *refusal) {
	if r.join.refused == nil || len(r.join.refused) >= maxRefused {
		r.join.refused = map[string]*refusal{}
	}
	r.join.refused[key] = rf
}

// solicitAnnounce asks the sender of a session heard mid-transfer (a late
// or restarted receiver) for its announce and manifest at once, instead
// of waiting for the next periodic ANNOUNCE.
func (r *receiver) solicitAnnounce(h wire.Header, from net.Addr, now time.Time) {
	if h.Seq == 0 || now.Sub(r.join.solicit) < registerEvery {
		return // unicast replies are not a sender's multicast
	}
	r.join.solicit = now
	b, err := r.signRegister(wire.Header{Session: h.Session}, &wire.Register{Host: r.opts.HostID, NeedManifest: true})
	if err == nil {
		r.conn.WriteTo(b, from)
	}
}

// deafAfter is how recently a session's multicast must have been heard
// for a unicast ANNOUNCE of it not to send the host down the unicast path.
const deafAfter = 2 * time.Second

// deaf reports whether a trusted ANNOUNCE came by unicast (sequence 0)
// with a fetch port, for a session this host has heard nothing of by
// multicast lately: the sender has not seen it register, and it hears no
// multicast, so it takes the unicast path.
func (r *receiver) deaf(h *wire.Header, a *wire.Announce, now time.Time) bool {
	if r.onStream || r.opts.NoUnicast || h.Seq != 0 || a.FetchPort == 0 {
		return false
	}
	return r.mcSession != h.Session || now.Sub(r.mcAt) > deafAfter
}

// sameHost reports whether two addresses are one: for UDP addresses
// without formatting them (it runs for every packet).
func sameHost(a, b net.Addr) bool {
	if a == b {
		return true // e.g. a stream's remote address, the same value every read
	}
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok1 && ok2 && ua != nil && ub != nil {
		return ua.Port == ub.Port && ua.IP.Equal(ub.IP) && ua.Zone == ub.Zone
	}
	return a != nil && b != nil && a.String() == b.String()
}

// refuse gives up the candidate session and remembers not to retry it;
// a refusal with a cause goes to the sender (a *Refusal, or the cause
// read from why).
func (r *receiver) refuse(why error) {
	now := time.Now()
	r.refuseSession(r.res.Session, r.sender, why, now)
	r.on(evRefused, now)
}

// refuseSession remembers a refused session and, when why has a cause,
// tells its sender.
func (r *receiver) refuseSession(session uint32, from net.Addr, why error, now time.Time) {
	rf := &refusal{rf: refusalOf(why)}
	if errors.Is(why, ErrNoSession) {
		rf.until = now.Add(retryAfter)
	}
	r.remember(refusalKey(session, from), rf)
	r.join.last = why
	r.log.Warn("multicast: refusing session", sessionAttr(session), "from", from, "err", why)
	if rf.rf != nil {
		rf.sent = now
		r.sendRefuse(session, rf.rf, from)
		if r.opts.Refused != nil {
			r.opts.Refused(session, from, rf.rf)
		}
	}
}

// refusalOf reads a cause the sender can report from why; nil when the
// session was not authenticated far enough to answer (no manifest).
func refusalOf(why error) *Refusal {
	var rf *Refusal
	switch {
	case errors.As(why, &rf):
		return rf
	case errors.Is(why, image.ErrVersion):
		return &Refusal{Code: RefuseVersion, Detail: why.Error()}
	case errors.Is(why, image.ErrUntrustedKey), errors.Is(why, image.ErrUnsigned):
		return &Refusal{Code: RefuseUntrustedKey, Detail: why.Error()}
	case errors.Is(why, ErrUntrusted):
		return &Refusal{Code: RefuseOther, Detail: why.Error()}
	}
	return nil
}

// tickJoin drops a candidate that stalls or takes too long, moves to
// another address of the session when its REGISTER goes unacknowledged,
// and enforces AnnounceTimeout.
func (r *receiver) tickJoin(now time.Time) error {
	if r.phase.following() && !r.join.acked && r.join.alt != nil && now.Sub(r.join.since) > ackWait {
		r.log.Warn("multicast: sender does not acknowledge: following another that sends the session too", sessionAttr(r.res.Session), "from", r.sender, "to", r.join.alt)
		r.sender, r.join.alt, r.join.since, r.lastReg = r.join.alt, nil, now, time.Time{}
	}
	if r.phase.joined() {
		return nil
	}
	switch {
	case r.phase == recvFetching && now.Sub(r.join.progress) > candidateTimeout:
		r.refuse(fmt.Errorf("%w: no manifest in %v", ErrNoSession, candidateTimeout))
	case r.phase == recvFetching && now.Sub(r.join.since) > joinTimeout:
		r.refuse(fmt.Errorf("%w: the session descriptor did not arrive whole in %v", ErrNoSession, joinTimeout))
	}
	if r.opts.AnnounceTimeout > 0 && now.Sub(r.begin) > r.opts.AnnounceTimeout {
		if r.join.last != nil {
			return fmt.Errorf("no session joined in %v: %w", r.opts.AnnounceTimeout, r.join.last)
		}
		return fmt.Errorf("%w in %v", ErrNoSession, r.opts.AnnounceTimeout)
	}
	return nil
}

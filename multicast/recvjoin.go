package multicast

import (
	"fmt"
	"net"
	"slices"
	"time"
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
)

// joinState is what a receiver knows while choosing a session: it locks
// onto an announce, fetches and verifies the manifest, and on failure
// (untrusted, corrupt, or no manifest in time) refuses that session and
// sender and waits for another.
type joinState struct {
	progress time.Time // last manifest progress of the candidate session
	refused  map[string]bool
	last     error // why the last candidate was refused
	solicit  time.Time
}

func refusalKey(session uint32, from net.Addr) string {
	return fmt.Sprintf("%08x/%v", session, from)
}

// accept reports whether a packet belongs to the session the receiver
// follows, locking onto a new candidate when it follows none.
func (r *receiver) accept(h Header, m Message, from net.Addr, now time.Time) bool {
	if r.ann != nil {
		return h.Session == r.res.Session && sameHost(from, r.sender)
	}
	if r.join.refused[refusalKey(h.Session, from)] || (r.opts.Session != 0 && h.Session != r.opts.Session) || slices.Contains(r.opts.Skip, h.Session) {
		return false
	}
	a, ok := m.(*Announce)
	if !ok {
		r.solicitAnnounce(h, from, now)
		return false
	}
	r.ann, r.sender, r.res.Session, r.join.progress = a, from, h.Session, now
	r.opts.Logf("trying session %08x from %v", h.Session, from)
	return true
}

// solicitAnnounce asks the sender of a session heard mid-transfer (a late
// or restarted receiver) for its announce and manifest at once, instead
// of waiting for the next periodic ANNOUNCE.
func (r *receiver) solicitAnnounce(h Header, from net.Addr, now time.Time) {
	if h.Seq == 0 || now.Sub(r.join.solicit) < registerEvery {
		return // unicast replies are not a sender's multicast
	}
	r.join.solicit = now
	b, err := AppendPacket(nil, Header{Session: h.Session}, &Register{Host: r.opts.HostID, NeedManifest: true})
	if err == nil {
		r.conn.WriteTo(b, from)
	}
}

// sameHost reports whether two addresses are one: for UDP addresses
// without formatting them (it runs for every packet).
func sameHost(a, b net.Addr) bool {
	ua, ok1 := a.(*net.UDPAddr)
	ub, ok2 := b.(*net.UDPAddr)
	if ok1 && ok2 && ua != nil && ub != nil {
		return ua.Port == ub.Port && ua.IP.Equal(ub.IP) && ua.Zone == ub.Zone
	}
	return a != nil && b != nil && a.String() == b.String()
}

// refuse gives up the candidate session and remembers not to retry it.
func (r *receiver) refuse(why error) {
	if r.join.refused == nil || len(r.join.refused) >= maxRefused {
		r.join.refused = map[string]bool{}
	}
	r.join.refused[refusalKey(r.res.Session, r.sender)] = true
	r.join.last = why
	r.opts.Warnf("refusing session %08x from %v: %v", r.res.Session, r.sender, why)
	r.ann, r.sender, r.res.Session, r.man = nil, nil, 0, manifestBuf{}
	r.registered, r.lastReg = false, time.Time{}
}

// tickJoin drops a candidate that stalls and enforces AnnounceTimeout.
func (r *receiver) tickJoin(now time.Time) error {
	if r.st != nil {
		return nil
	}
	if r.ann != nil && now.Sub(r.join.progress) > candidateTimeout {
		r.refuse(fmt.Errorf("%w: no manifest in %v", ErrNoSession, candidateTimeout))
	}
	if r.opts.AnnounceTimeout > 0 && now.Sub(r.begin) > r.opts.AnnounceTimeout {
		if r.join.last != nil {
			return fmt.Errorf("no session joined in %v: %w", r.opts.AnnounceTimeout, r.join.last)
		}
		return fmt.Errorf("%w in %v", ErrNoSession, r.opts.AnnounceTimeout)
	}
	return nil
}

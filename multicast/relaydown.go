package multicast

import (
	"crypto/sha256"
	"net"
	"net/netip"
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// A relay's session on its subnet is the sender's loop with these
// switches (relay.go): its descriptor is the sender's, verbatim (the
// grant names its digest); its ANNOUNCE carries the grant and is signed
// by the relay's host key; registration closes when the sender's
// transfer begins, with no host too; a chunk is sent only once its frame
// is in the store; the hosts' REGISTER, COMPLETE and REFUSE go upstream as
// they came.

// relayPublishEvery is how often the relay's subnet session updates what
// its RELAY-STATUS says: often enough for the relay's period, rarely
// enough that a large subnet's snapshot costs the loop nothing.
const relayPublishEvery = 250 * time.Millisecond

// downSide is a relay's subnet session's part of the sender.
type downSide struct {
	link  *relayLink
	sess  *relaySession
	pubAt time.Time
}

// announce makes the relay's ANNOUNCE: the sender's session as the
// grant names it, with the relay's own session keys.
func (d *downSide) announce(a *wire.Announce, desc []byte) {
	g := d.sess.grant
	a.ReleaseID, a.ReleaseKey, a.Grant, a.Rate = g.ReleaseID, g.ReleaseKey, g, d.sess.rate
	a.ManifestDigest, a.ManifestSize = sha256.Sum256(desc), uint32(len(desc))
	a.Closed, a.HostsTotal, a.FetchPort, a.BaseID, a.Encrypted = false, 0, 0, g.BaseID, g.Sealed
}

// forward passes a downstream host's packet upstream: a REGISTER (not
// one asking for the manifest) narrows what every registrant holds first.
func (d *downSide) forward(m wire.Message, b []byte, chunks int) {
	switch m := m.(type) {
	case *wire.Register:
		if !m.NeedManifest {
			d.link.registered(m.Have, chunks, b, m.Host)
		}
	case *wire.Complete:
		d.link.forwardPacket("C"+m.Host, b)
	case *wire.Refuse:
		d.link.forwardPacket("X"+m.Host, b)
	}
}

// publish gives the link the session's figures and hosts, at most every
// relayPublishEvery.
func (d *downSide) publish(s *sender, now time.Time) {
	if now.Sub(d.pubAt) < relayPublishEvery {
		return
	}
	d.pubAt = now
	snap := relaySnapshot{bytes: s.stats.Bytes, packets: s.stats.Packets, rounds: int64(s.stats.Rounds)}
	for h := range s.hosts.all() {
		if h.registered || h.complete || h.refused != nil {
			snap.hosts = append(snap.hosts, relayedLine(h))
		}
	}
	d.link.publish(snap)
}

// relayedLine is a downstream host's line in RELAY-STATUS.
func relayedLine(h *host) wire.RelayedHost {
	e := wire.RelayedHost{Host: h.id, State: wire.RelayHostReceiving, Addr: addrPort(h.addr)}
	switch {
	case h.complete:
		e.State = wire.RelayHostComplete
	case h.failed != "":
		e.State, e.Reason = wire.RelayHostFailed, h.failed
	case h.dropped != "":
		e.State, e.Reason = wire.RelayHostDropped, h.dropped
	case h.refused != nil && !h.registered:
		e.State, e.Reason = wire.RelayHostDropped, "refused: "+h.refused.Error()
	}
	return e
}

// addrPort is a UDP address as RELAY-STATUS carries it (the zero value
// for any other).
func addrPort(a net.Addr) netip.AddrPort {
	if u, ok := a.(*net.UDPAddr); ok {
		ap := u.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return netip.AddrPort{}
}

// ready reports whether the next job may go: its chunk's frame is in the
// store.
func (d *downSide) ready(jobs []repairJob) (bool, error) { return d.link.framesReady(jobs) }

package multicast

import (
	"crypto/ed25519"
	"fmt"
	"net"
	"slices"
	"time"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// The sender's side of relays (relay.go). A host named in
// SendOptions.Relays whose REGISTER asks to relay gets a grant in the
// acknowledgement; the REGISTER, COMPLETE and REFUSE of the hosts behind
// it reach the sender as those hosts signed them, forwarded by the relay,
// and its RELAY-STATUS says where they are. A relayed host is waited for
// (live) but decides nothing for the sender's own multicast (which chunks
// all hold, whether all hold the base), and the repair rounds neither ask
// it nor wait for it: its relay repairs it.
const (
	// relayGrace is how much longer than unicastAfter a listed host that
	// is not a relay waits for a unicast ANNOUNCE when the session has
	// relays. A relay is announced to at once; it dials, fetches the
	// manifest and announces on its subnet, whose hosts register through
	// it within a few hundred milliseconds. Without the grace the hosts
	// behind the router would each take the unicast path first.
	relayGrace = 2 * time.Second
	// viaAnnounceEvery is how often a relayed host that has not completed
	// is sent the unicast ANNOUNCE too: one that gave up on its relay
	// (relayStall) takes the unicast path within this. Slower than
	// unicastEvery, so a large relayed group costs the sender's link
	// little (2,000 hosts: ~240 KB/s).
	viaAnnounceEvery = 5 * time.Second
	// relayGrantTTL is how long a grant holds: longer than any session,
	// short enough that a grant copied off the wire is dead by tomorrow
	// (it names one session anyway).
	relayGrantTTL = 4 * time.Hour
)

// relayState is the sender's view of a host that relays the session.
type relayState struct {
	grant    *wire.RelayGrant
	seq      uint32    // the last RELAY-STATUS taken
	statusAt time.Time // when
	report   RelayReport
}

// isRelay reports whether the options name id as a relay.
func (s *sender) isRelay(id string) bool { return slices.Contains(s.opts.Relays, id) }

// grantFor returns the grant of a registering host that asks to relay and
// may: named in Relays, its key accepted, the session plain (a sealed
// session is not relayed: the host then takes part as any host). It is
// issued once and kept.
func (s *sender) grantFor(h *host, m *wire.Register, now time.Time) *wire.RelayGrant {
	if !m.Relay || !s.isRelay(h.id) || s.opts.Encrypt || h.key == nil {
		return nil
	}
	if h.relay != nil {
		return h.relay.grant
	}
	a := &s.ann
	g := &wire.RelayGrant{Session: s.opts.Session, ReleaseID: a.ReleaseID, ManifestDigest: a.ManifestDigest,
		ManifestSize: a.ManifestSize, ImageSize: a.ImageSize, ChunkSize: a.ChunkSize, SymbolSize: a.SymbolSize,
		BlockSymbols: a.BlockSymbols, Issued: now.UnixMilli(), Expires: now.Add(relayGrantTTL).UnixMilli(),
		RelayHost: h.id, RelayKey: pub32(h.key), UpstreamDH: a.SessionDH, ReleaseKey: a.ReleaseKey}
	if err := signGrant(g, s.opts.Key); err != nil {
		s.log.Warn("multicast: no grant for relay", "host", h.id, "err", err)
		return nil
	}
	h.relay = &relayState{grant: g, report: RelayReport{ID: h.id}}
	s.log.Debug("multicast: host relays the session", "host", h.id, "addr", h.addr)
	return g
}

// relayAt returns the relay a packet came from (its connection, or its
// address), if it came from one.
func (s *sender) relayAt(from net.Addr) *host {
	if st := s.streamOf(from); st != nil {
		if h := st.host; h != nil && h.relay != nil && h.stream == st {
			return h
		}
		return nil
	}
	for _, id := range s.opts.Relays {
		if h := s.hosts.get(id); h != nil && h.relay != nil && h.addr != nil && sameHost(h.addr, from) {
			return h
		}
	}
	return nil
}

// onRelayedRegister takes a host's REGISTER that its relay forwarded: it
// is signed by the host's own key, which the sender checks as for any
// REGISTER. The host is then reached through the relay: the sender
// neither answers it nor asks it anything.
func (s *sender) onRelayedRegister(m *wire.Register, hdr *wire.Header, rl *host, now time.Time) bool {
	h := s.identify(m.Host, m.HostKey, hdr)
	if h == nil || h.relay != nil || m.NeedManifest || !fresh(m.SignedAt, now) || m.SignedAt <= h.regAt {
		return h != nil
	}
	if h.via != rl || h.dropped != "" {
		s.log.Debug("multicast: host registered through a relay", "host", h.id, "relay", rl.id)
	}
	if st := h.stream; st != nil { // it left its unicast connection for the relay
		h.stream, h.streamBytes = nil, h.streamBytes+st.bytes.Load()
		st.close()
	}
	h.regAt, h.via, h.viaAt, h.addr, h.keys, h.eph, h.asked = m.SignedAt, rl, now, nil, nil, [32]byte{}, time.Time{}
	h.registered, h.dropped, h.have, h.hasBase, h.refused = true, "", m.Have, m.HasBase, nil
	return true
}

// hostSigned returns the host a packet signed by a host key names, if the
// signature is its: a relayed host's COMPLETE, forwarded as it sent it.
func (s *sender) hostSigned(id string, hdr *wire.Header) *host {
	h := s.hosts.get(id)
	if h == nil || h.key == nil || !signedBy(hdr, h.key) {
		return nil
	}
	return h
}

// onRelayStatus takes a relay's report, MAC'd under its own session key:
// its figures, and where its hosts are. A host's completion comes only
// from its own signed COMPLETE; a relay may say it gave up on a host,
// which is then dropped (and announced to again by unicast).
func (s *sender) onRelayStatus(m *wire.RelayStatus, hdr *wire.Header, now time.Time) bool {
	rl := s.hosts.get(m.Relay)
	if rl == nil || rl.relay == nil || rl.keys == nil || !macBy(hdr, &rl.keys.up) || m.Seq <= rl.relay.seq {
		return false
	}
	st := rl.relay
	st.seq, st.statusAt = m.Seq, now
	st.report.DownBytes, st.report.DownPackets, st.report.Rounds = int64(m.DownBytes), int64(m.DownPackets), int(m.Rounds)
	for _, e := range m.Hosts {
		s.relayedHost(rl, e)
	}
	return true
}

// relayedHost takes one host's line of its relay's RELAY-STATUS.
func (s *sender) relayedHost(rl *host, e wire.RelayedHost) {
	h := s.hosts.get(e.Host)
	if h == nil || h.via != rl {
		return
	}
	h.ownAddr = e.Addr
	if (e.State == wire.RelayHostDropped || e.State == wire.RelayHostFailed) && h.active() {
		s.dropRelayed(h, fmt.Sprintf("relay %s gave up on it: %s", rl.id, hostkey.Printable(e.Reason)))
	}
}

// dropUnrelayed gives up on relayed hosts whose relay ended without them,
// or has sent no RELAY-STATUS for HostTimeout.
func (s *sender) dropUnrelayed(now time.Time) {
	for h := range s.hosts.all() {
		rl := h.via
		if rl == nil || !h.active() {
			continue
		}
		last := h.viaAt
		if rl.relay != nil && rl.relay.statusAt.After(last) {
			last = rl.relay.statusAt
		}
		switch {
		case rl.complete || rl.failed != "" || rl.dropped != "":
			h.dropped = fmt.Sprintf("its relay %s ended without it", rl.id)
		case now.Sub(last) > s.opts.HostTimeout:
			h.dropped = fmt.Sprintf("its relay %s silent for %v (no RELAY-STATUS)", rl.id, now.Sub(last).Round(time.Millisecond))
		default:
			continue
		}
		s.dropRelayed(h, h.dropped)
	}
}

// dropRelayed drops a relayed host its relay lost: as for a host whose
// unicast connection broke, the session waits HostTimeout for it and
// announces to it by unicast meanwhile, so a host that gave up on its
// relay can still take the unicast path.
func (s *sender) dropRelayed(h *host, why string) {
	h.dropped, h.brokeAt = why, time.Now()
	s.log.Warn("multicast: dropping host", "host", h.id, "reason", h.dropped)
}

// relayReports lists what each relay reported, by id.
func (s *sender) relayReports() []RelayReport {
	var out []RelayReport
	for _, id := range s.opts.Relays {
		h := s.hosts.get(id)
		if h == nil || h.relay == nil {
			continue
		}
		r := h.relay.report
		for v := range s.hosts.all() {
			if v.via == h {
				r.Hosts++
			}
		}
		out = append(out, r)
	}
	return out
}

// announceDue reports whether listed host h is due a unicast ANNOUNCE now
// (the caller paces the rounds by unicastEvery): a relay from the start;
// a host that has not registered (or was dropped) after unicastAfter, and
// relayGrace more when the session has relays; a relayed host that has
// not completed every viaAnnounceEvery.
func (s *sender) announceDue(h *host, now time.Time) bool {
	since := now.Sub(s.started)
	switch {
	case h.stream != nil || h.complete:
		return false
	case h.via != nil && h.active():
		return now.Sub(h.viaAt) >= viaAnnounceEvery && now.Sub(h.viaTold) >= viaAnnounceEvery
	case h.decided() && h.dropped == "":
		return false
	case s.isRelay(h.id):
		return true
	case len(s.opts.Relays) > 0:
		return since >= unicastAfter+relayGrace
	}
	return since >= unicastAfter
}

// signGrant signs a grant with the release key.
func signGrant(g *wire.RelayGrant, key ed25519.PrivateKey) error {
	b, err := g.AppendSigned(nil)
	if err != nil {
		return err
	}
	copy(g.Sig[:], ed25519.Sign(key, b))
	return nil
}

// grantSigned reports whether a grant carries its release key's signature.
func grantSigned(g *wire.RelayGrant) bool {
	b, err := g.AppendSigned(nil)
	return err == nil && ed25519.Verify(g.ReleaseKey[:], b, g.Sig[:])
}

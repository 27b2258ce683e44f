package multicast

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// A host behind a relay (relay.go) follows the relay's ANNOUNCE only with
// a grant the release key signed for that session, naming what the
// ANNOUNCE announces, and the relay's signature by the key the grant
// names; it signs its COMPLETE with its host key, so the sender can take
// it from the relay as the host sent it; and it gives up on a relay that
// lets relayStall pass without a newly verified chunk.

// maxShunned bounds the relays a host gives up on in one Receive: each
// costs it relayStall.
const maxShunned = 4

// shunned is a relay a host gave up on, for the rest of a session.
type shunned struct {
	session uint32
	key     [32]byte // the relay's host key, as its grant names it
	addr    net.Addr
}

// errRelayStalled is a relayed session in which no chunk verified for
// relayStall: the host gives up on the relay (Receive then ignores it).
type errRelayStalled struct{ shunned }

func (e *errRelayStalled) Error() string {
	return fmt.Sprintf("multicast: session %08x: the relay at %v sent no verifiable chunk in %v", e.session, e.addr, relayStall)
}

// verifyAnnounce reports whether an ANNOUNCE carries the signature it
// must: the release key's it names, or, for a relayed one, the relay's
// under a live grant the release key signed for this session and for
// what the ANNOUNCE announces. (Whether this host trusts the release key
// is trustKey's.) A relay follows no relay, and no host a relay it gave
// up on.
func (r *receiver) verifyAnnounce(h *wire.Header, a *wire.Announce, now time.Time) bool {
	g := a.Grant
	if g == nil {
		return signedBy(h, a.ReleaseKey[:])
	}
	return r.opts.relay == nil && g.RelayKey != r.hostPub && g.Sealed == a.Encrypted && g.BaseID == a.BaseID &&
		grantLive(g, now) && !r.shuns(h.Session, g.RelayKey) && grantFits(g, a, h.Session) && signedBy(h, g.RelayKey[:])
}

// grantFits reports whether a grant is for session and names what a
// names (release, descriptor, layout, release key), and carries the
// release key's signature.
func grantFits(g *wire.RelayGrant, a *wire.Announce, session uint32) bool {
	return g.Session == session && g.ReleaseKey == a.ReleaseKey && g.ReleaseID == a.ReleaseID &&
		g.ManifestDigest == a.ManifestDigest && g.ManifestSize == a.ManifestSize && g.ImageSize == a.ImageSize &&
		g.ChunkSize == a.ChunkSize && g.SymbolSize == a.SymbolSize && g.BlockSymbols == a.BlockSymbols && grantSigned(g)
}

// grantLive reports whether now is within a grant's life, give or take
// MaxClockSkew.
func grantLive(g *wire.RelayGrant, now time.Time) bool {
	ms, skew := now.UnixMilli(), MaxClockSkew.Milliseconds()
	return g.Issued-skew <= ms && ms < g.Expires+skew
}

// relayed reports whether the followed session is a relay's.
func (r *receiver) relayed() bool { return r.ann != nil && r.ann.Grant != nil }

// shuns reports whether this host gave up on the relay of key in session.
func (r *receiver) shuns(session uint32, key [32]byte) bool {
	for _, s := range r.opts.shun {
		if s.session == session && s.key == key {
			return true
		}
	}
	return false
}

// shunsAddr reports whether a packet of session from addr is from a relay
// this host gave up on: it is neither followed nor taken as the session's
// multicast being heard.
func (r *receiver) shunsAddr(session uint32, from net.Addr) bool {
	for _, s := range r.opts.shun {
		if s.session == session && sameHost(s.addr, from) {
			return true
		}
	}
	return false
}

// checkStall gives up a relayed session in which no chunk verified for
// relayStall (a relay that stalls, or sends junk).
func (r *receiver) checkStall(now time.Time) error {
	if !r.relayed() || !r.phase.transferring() || now.Sub(r.progressAt) <= relayStall {
		return nil
	}
	return &errRelayStalled{shunned{session: r.res.Session, key: r.ann.Grant.RelayKey, addr: r.sender}}
}

// receiveShunning runs receive, and again without each relay that
// stalled, up to maxShunned.
func receiveShunning(ctx context.Context, conn Conn, opts ReceiveOptions) (*Result, error) {
	res, err := receive(ctx, conn, opts, false)
	var st *errRelayStalled
	for try := 0; errors.As(err, &st) && try < maxShunned; try++ {
		opts.Logger.Warn("multicast: giving up on a relay that stalled", sessionAttr(st.session), "relay", st.addr, "err", err)
		opts.shun = append(opts.shun, st.shunned)
		res, err = receive(ctx, conn, opts, false)
	}
	return res, err
}

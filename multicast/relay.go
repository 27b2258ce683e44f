package multicast

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Relays. A subnet whose router carries no multicast would otherwise get
// one unicast copy per host. A relay, an agent on that subnet run with
// --relay and named in the sender's SendOptions.Relays, joins the
// sender's session as any host does (normally over the unicast path, one
// copy), verifies every chunk as any host does, and runs the same session
// on its own subnet: the same session id and descriptor, its own session
// keys, and a grant (wire.RelayGrant) the release key signed, naming the
// session, the release, the layout and the relay's host key, which signs
// its ANNOUNCE. Hosts there check the grant and the relay's signature
// before they follow it, then run the session as with the sender; they
// verify every chunk against the signed manifest, so a relay can delay
// them, never make them write a byte the manifest does not name.
//
// The relay sends the sender's own frames, cut through chunk by chunk as
// each arrives and verifies (a frame store beside the image: hosts check
// each symbol's length against the signed descriptor, so the frames must
// be the sender's), answers its subnet's NACKs itself and runs its own
// repair rounds. Its hosts' REGISTER, COMPLETE and REFUSE, signed by
// their own host keys, reach the sender as the hosts sent them; its
// RELAY-STATUS says where they are and which it gave up on. It holds its
// own COMPLETE until its subnet's session ends. It tells the sender it
// holds what it holds and every one of its hosts holds too; a frame it
// lacks though it holds the chunk (relayWants, relayLink.takeWanted) it asks for again.
//
// A host in a relayed session that verifies no new chunk for relayStall
// gives up on that relay, ignores it for the rest of the session, and
// takes the sender's unicast path, which the sender offers relayed hosts
// every viaAnnounceEvery. Slice 1 relays plain sessions only: a sealed
// one is refused (the relay takes part as a host, and its subnet takes
// the unicast path); deltas are not relayed (the relay names no base).

// relayStall is how long a host in a relayed session waits for a newly
// verified chunk before it gives up on the relay: a relay that stalls,
// or sends junk, costs its hosts this much and then nothing (a variable
// only so tests can make it short).
var relayStall = 60 * time.Second

// RelayOptions configure Relay.
type RelayOptions struct {
	// ReceiveOptions are the upstream side's: this host joins the
	// sender's session as any host does (its id, key, trust, Out).
	ReceiveOptions
	// Down is the socket the relay sends its subnet's session on and
	// reads that subnet's answers from (DialRelay: multicast loopback
	// off, so the relay's own listener does not hear it); DownGroup is
	// where it sends.
	Down      Conn
	DownGroup net.Addr
	// Frames is the frame store, a sparse file (default Out + ".frames").
	Frames string
	// Rate caps the subnet's session in bit/s (0: the sender's announced
	// rate); FECOverhead is its proactive parity (0: AutoFEC).
	Rate        int64
	FECOverhead int
	// HostTimeout is the subnet session's (SendOptions).
	HostTimeout time.Duration
}

// Relay joins one session announced on up, as Receive does, and relays it
// to the hosts of its own subnet on o.Down when the sender grants it; it
// returns its own result and the report of the session it ran on its
// subnet (nil when it relayed none).
func Relay(ctx context.Context, up Conn, o RelayOptions) (*Result, *Report, error) {
	if o.Down == nil || o.DownGroup == nil {
		return nil, nil, errors.New("multicast: relay needs a downstream conn and group")
	}
	link := newRelayLink()
	o.relay = &relayUp{link: link, framesPath: cmp.Or(o.Frames, o.Out+".frames")}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var g errgroup.Group
	var rep *Report
	g.Go(func() error {
		rep = runDown(ctx, link, &o)
		return nil
	})
	res, err := Receive(ctx, up, o.ReceiveOptions)
	link.endUp()
	if err != nil {
		cancel()
	}
	g.Wait()
	o.relay.frames.close()
	return res, rep, err
}

// runDown runs the relay's session on its subnet once the sender's grant
// arrived; nil when none did.
func runDown(ctx context.Context, link *relayLink, o *RelayOptions) *Report {
	sess := link.await(ctx)
	if sess == nil {
		return nil
	}
	rate := o.Rate
	if rate == 0 {
		rate = int64(sess.rate)
	}
	so := SendOptions{Group: o.DownGroup, Session: sess.grant.Session, Manifest: sess.m, Key: o.HostKey,
		Pack: &relayFrames{fs: sess.frames}, Rate: rate, FECOverhead: cmp.Or(o.FECOverhead, AutoFEC),
		HostTimeout: o.HostTimeout, SymbolSize: int(sess.grant.SymbolSize), BlockSymbols: int(sess.grant.BlockSymbols),
		Logger: orDiscard(o.Logger).With("relay", o.HostID), down: &downSide{link: link, sess: sess}}
	rep, err := Send(ctx, o.Down, so)
	if err != nil && ctx.Err() == nil {
		orDiscard(o.Logger).Warn("multicast: the relayed session failed", sessionAttr(sess.grant.Session), "err", err)
	}
	link.endDown(rep)
	return rep
}

// relaySession is what the relay's subnet session is made of: the grant,
// the sender's descriptor as it came, the verified manifest, and the
// frame store.
type relaySession struct {
	grant  *wire.RelayGrant
	desc   []byte
	m      *image.Manifest
	frames *frameStore
	rate   uint64 // the sender's announced rate
}

// DialRelay opens a relay's downstream socket: as DialGroup, with
// multicast loopback off, so the agent's own listener on the group does
// not hear the session it relays.
func DialRelay(group *net.UDPAddr, iface string, ttl int) (*UDPConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, fmt.Errorf("multicast: open relay socket: %w", err)
	}
	return setup(c, group, iface, ttl, false, false)
}

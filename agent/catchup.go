package agent

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
	"github.com/loopcast/loopcast/peer"
	"github.com/loopcast/loopcast/release"
	"golang.org/x/time/rate"
)

// Catch-up timing. An agent asks its peers for the fleet pointer shortly
// after it starts and then every queryEvery (jittered, so a fleet's
// queries spread out); answers are gathered for settle. A release it cannot
// get yet is tried again after retryFirst, doubling up to retryMax.
const (
	queryFirst = time.Second // plus up to one more, at random
	queryEvery = 5 * time.Minute
	settle     = time.Second
	retryFirst = 5 * time.Second
	retryMax   = 5 * time.Minute
)

// Pointer answers: each agent answers a query with a share of the group
// sized so that about answerTarget agents answer, and at most answerRate
// queries a second (a burst of answerRate): a flood of queries, or
// queries with a forged source, cost each agent bounded work and
// traffic.
const (
	answerTarget = 16
	answerRate   = 20
	// maxFetchPeers bounds the peers one fetch tries (at random among
	// those that answered).
	maxFetchPeers = 16
)

// catchUp brings the host to the fleet pointer's release when it lags:
// from its own store when it holds the release, else from its peers.
type catchUp struct {
	fleet    *Fleet
	store    *release.Store
	conn     multicast.Conn // the control socket: queries go to group
	group    *net.UDPAddr   // the control address
	peerPort int            // 0: peers are not asked for chunks
	cfg      RunConfig
	log      *slog.Logger

	mu      sync.Mutex
	selfIPs map[string]bool
	answers *rate.Limiter // POINTER? answers: answerRate a second, a burst of answerRate

	held  heldCache
	certs *certStore
	// receiving is set while the agent takes part in a session (from its
	// registration until Receive returns)
	receiving *atomic.Bool
	queried   atomic.Int64 // Unix ms of this agent's last POINTER?
}

// catchUpResult is what one attempt came to.
type catchUpResult int

const (
	upToDate catchUpResult = iota // in sync, superseded, no pointer, or given up on
	tryAgain                      // not yet: no peer serves it, a fetch failed
)

// run is the catch-up loop.
func (c *catchUp) run(ctx context.Context) error {
	c.refreshSelf()
	nextQuery := time.Now().Add(queryFirst + rand.N(time.Second))
	var retryAt time.Time
	backoff := retryFirst
	t := time.NewTimer(time.Until(nextQuery))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		case <-c.fleet.wake:
		}
		now := time.Now()
		if !now.Before(nextQuery) || !retryAt.IsZero() && !now.Before(retryAt) {
			c.query()
			nextQuery = now.Add(queryEvery/2 + rand.N(queryEvery))
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(settle):
			}
		}
		switch c.attempt(ctx) {
		case tryAgain:
			retryAt = time.Now().Add(backoff)
			c.log.Info("agent: catch-up will try again", "in", backoff.String())
			backoff = min(2*backoff, retryMax)
		default:
			retryAt, backoff = time.Time{}, retryFirst
		}
		next := nextQuery
		if !retryAt.IsZero() && retryAt.Before(next) {
			next = retryAt
		}
		if !t.Stop() {
			select {
			case <-t.C:
			default:
			}
		}
		t.Reset(max(time.Until(next), 0))
	}
}

// query multicasts POINTER? to the group.
func (c *catchUp) query() {
	q := &control.PointerQuery{Group: c.fleet.group}
	if p, _ := c.fleet.Pointer(); p != nil {
		q.Have = p.Seq
	}
	b, err := q.AppendBinary(nil)
	if err == nil {
		c.queried.Store(time.Now().UnixMilli())
		_, err = c.conn.WriteTo(b, c.group)
	}
	if err != nil {
		c.log.Warn("agent: cannot ask peers for the fleet pointer", "group", c.group.String(), "err", err)
	}
	c.refreshSelf()
}

// attempt brings the host to the pointer's release if it lags.
func (c *catchUp) attempt(ctx context.Context) catchUpResult {
	p, _ := c.fleet.Pointer()
	if p == nil || c.fleet.failed(p) || c.fleet.superseded(p) {
		return upToDate
	}
	st, err := c.store.State()
	if err != nil {
		c.log.Warn("agent: catch-up: store state", "err", err)
		return tryAgain
	}
	if st.Current == p.Release {
		return upToDate
	}
	attrs := []any{"release", p.Release, "seq", p.Seq, "current", st.Current}
	if c.receiving != nil && c.receiving.Load() { // a deploy is bringing a release: it switches this host
		c.log.Info("agent: behind the fleet, but a session is being received: catch-up waits", attrs...)
		return tryAgain
	}
	var fetched *peer.Stats
	if !c.holds(p.Release) {
		stats, res := c.fetch(ctx, p, st.Current, attrs)
		if stats == nil {
			return res
		}
		fetched = stats
	}
	if err := ctx.Err(); err != nil {
		return upToDate
	}
	c.fleet.switching.Lock()
	defer c.fleet.switching.Unlock()
	if c.fleet.superseded(p) { // a command came while the release was fetched
		c.log.Info("agent: catch-up: a newer command came first; not switching", attrs...)
		return upToDate
	}
	if st, err = c.store.State(); err == nil {
		if id := newerPending(st, p.Release); !id.IsZero() { // a deploy in flight staged it: its ACTIVATE comes
			c.log.Info("agent: catch-up waits: a newer release is staged, awaiting its deploy's switch", append(attrs, "staged", id)...)
			return tryAgain
		}
	}
	// checked again under the store's lock: a `receiver rollback` in
	// another process wins, before or after
	guard := func() error {
		if c.fleet.superseded(p) {
			return errOverruled
		}
		return nil
	}
	how := "activate"
	err = c.store.ActivateGuarded(p.Release, guard)
	if errors.Is(err, release.ErrDowngrade) {
		if !p.Rollback { // only a signed rollback takes a host back
			c.log.Warn("agent: the fleet pointer names a release older than current, and is not a rollback's: staying", append(attrs, "err", err)...)
			return upToDate
		}
		how = "rollback"
		_, err = c.store.RollbackGuarded(p.Release, guard)
	}
	if errors.Is(err, errOverruled) {
		c.log.Info("agent: catch-up: a local rollback came first; not switching", attrs...)
		return upToDate
	}
	if err != nil {
		c.log.Error("agent: catch-up cannot switch", append(attrs, "err", err)...)
		c.fleet.markFailed(p, err)
		return upToDate
	}
	attrs = append(attrs, "how", how)
	if fetched != nil {
		attrs = append(attrs, "peer_bytes", fetched.PeerBytes(), "local_bytes", fetched.Local, "peers", len(fetched.FromPeers))
	}
	c.log.Info("agent: caught up with the fleet", attrs...)
	return upToDate
}

// errOverruled stops a catch-up switch that a command overruled.
var errOverruled = errors.New("agent: a newer command overruled the fleet pointer")

// pendingHold is how long a staged release, newer than the pointer's, holds
// catch-up back: a deploy switches its hosts within it; one staged longer
// ago belongs to a deploy that stopped (a halted rollout) and must not keep
// the host behind the fleet for good.
const pendingHold = 30 * time.Minute

// newerPending returns a release staged within pendingHold, never
// activated, built after id (by the signed manifests' build times): one a
// deploy in flight brought, which catch-up must not push aside.
func newerPending(st *release.State, id image.ID) image.ID {
	return newerPendingAt(st, id, time.Now())
}

func newerPendingAt(st *release.State, id image.ID, now time.Time) image.ID {
	built := int64(-1)
	for _, e := range st.History {
		if e.ID == id {
			built = e.Built
		}
	}
	for _, sid := range st.Staged {
		if sid == id {
			continue
		}
		for _, e := range st.History {
			if e.ID == sid && !e.Retired && e.Quarantined == "" && e.Built > built && now.Sub(e.StagedAt) < pendingHold {
				return sid
			}
		}
	}
	return image.ID{}
}

// holds reports whether the store keeps release (staged or older).
func (c *catchUp) holds(id image.ID) bool {
	kept, err := c.store.KeptImages()
	if err != nil {
		return false
	}
	return slices.ContainsFunc(kept, func(k release.Kept) bool { return k.ID == id })
}

// fetch takes the pointer's release from the peers that serve it and
// stages it; nil stats with the result to return when it did not.
func (c *catchUp) fetch(ctx context.Context, p *control.Pointer, current image.ID, attrs []any) (*peer.Stats, catchUpResult) {
	ips := c.fleet.peersServing(p.Release, time.Now())
	if c.peerPort == 0 || len(ips) == 0 {
		c.log.Info("agent: behind the fleet, and no peer serves its release yet", attrs...)
		return nil, tryAgain
	}
	rand.Shuffle(len(ips), func(i, j int) { ips[i], ips[j] = ips[j], ips[i] })
	ips = ips[:min(len(ips), maxFetchPeers)]
	addrs := make([]string, len(ips))
	for i, ip := range ips {
		addrs[i] = net.JoinHostPort(ip, strconv.Itoa(c.peerPort))
	}
	c.log.Info("agent: behind the fleet: fetching from peers", append(attrs, "peers", addrs)...)
	local, bases := localImages(c.store, c.log)
	out := c.store.IncomingPath() + ".catchup.img"
	os.Remove(out)       // one a killed agent left: it must not count against the room
	defer os.Remove(out) // staging renamed it, or it failed
	// changed chunks come as deltas against the release this host serves
	base := current
	if bases[base] == "" {
		base = image.ID{}
	}
	m, st, err := peer.Fetch(ctx, peer.FetchOptions{Release: p.Release, Digest: p.Digest, Trusted: c.cfg.Keys,
		Peers: addrs, Out: out, Local: local.Lookup, Base: base, BaseImage: bases[base],
		Auth: &peer.Auth{Host: c.cfg.HostID, Key: c.cfg.HostKey, Cert: c.ownCert(),
			Got: func(cert []byte) { c.certs.take(cert, time.Now()) }},
		Logger: c.log,
		Room:   func(n int64) error { return noRoom{c.store.MakeRoom(n)}.err() }})
	var nr noRoom
	if errors.As(err, &nr) {
		c.log.Error("agent: catch-up: no room for the fleet's release", append(attrs, "err", nr.error)...)
		c.fleet.markFailed(p, nr.error)
		return nil, upToDate
	}
	if err != nil {
		c.log.Warn("agent: catch-up fetch failed", append(attrs, "err", err)...)
		return nil, tryAgain
	}
	if _, err := c.store.Adopt(ctx, out, m); err != nil {
		c.log.Error("agent: catch-up cannot stage the fleet's release", append(attrs, "err", err)...)
		c.fleet.markFailed(p, err)
		return nil, upToDate
	}
	c.fleet.NoteServable(p.Release) // its peers served it: it was in the clear
	return &st, upToDate
}

// ownCert is this host's certificate, when it holds one for its key.
func (c *catchUp) ownCert() []byte {
	raw := c.certs.get(c.cfg.HostID)
	if hc, err := control.ParseHostCert(raw); err != nil || !hc.HostKey.Equal(c.cfg.HostKey.Public()) {
		return nil // a peer has it: asked on the way
	}
	return raw
}

// noRoom marks the store's refusal of the image's size: not worth a retry
// until a newer pointer (or an operator) changes something.
type noRoom struct{ error }

func (n noRoom) err() error {
	if n.error == nil {
		return nil
	}
	return n
}

// refreshSelf learns this host's addresses: its own query and answers,
// looped back by multicast, are not a peer's.
func (c *catchUp) refreshSelf() {
	self := map[string]bool{}
	if addrs, err := net.InterfaceAddrs(); err == nil {
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				self[n.IP.String()] = true
			}
		}
	}
	c.mu.Lock()
	c.selfIPs = self
	c.mu.Unlock()
}

func (c *catchUp) isSelf(ip string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.selfIPs[ip]
}

// takeControl handles a fleet message read from the control socket: a
// pointer (from the sender, or another agent's answer), or a query it may
// answer. It reports whether pkt was one.
func (c *catchUp) takeControl(pkt []byte, from net.Addr, now time.Time) bool {
	typ, ok := control.PeekType(pkt)
	if !ok {
		return false
	}
	ip := from.String()
	if u, ok := from.(*net.UDPAddr); ok {
		ip = u.IP.String()
	}
	switch typ {
	case control.TypePointer:
		if _, err := c.fleet.Offer(pkt, from.String()); err != nil {
			c.log.Debug("agent: fleet pointer ignored", "from", from.String(), "err", err)
		}
	case control.TypePointerAnswer:
		if c.isSelf(ip) {
			return true
		}
		a, p, err := control.ParsePointerAnswer(pkt)
		if err != nil {
			c.log.Debug("agent: pointer answer ignored", "from", from.String(), "err", err)
			return true
		}
		if _, err := c.fleet.Offer(a.Pointer, from.String()); err != nil {
			c.log.Debug("agent: pointer answer ignored", "from", from.String(), "err", err)
			return true
		}
		// a peer counts only as an answer to this agent's own query: an
		// unsolicited answer (forged, say) must not fill the peer list
		if now.Sub(time.UnixMilli(c.queried.Load())) > settle+time.Second {
			return true
		}
		var serves image.ID
		if a.Serves {
			serves = p.Release
		}
		c.fleet.notePeer(ip, serves, a.LastResort, now)
	case control.TypePointerQuery:
		if !c.isSelf(ip) {
			c.answer(pkt, from, now)
		}
	case control.TypeHostCert:
		if err := c.certs.take(pkt, now); err != nil {
			c.log.Debug("agent: host certificate ignored", "from", from.String(), "err", err)
		}
	default:
		return false
	}
	return true
}

// answer answers a pointer query, if this agent's share and rate allow.
func (c *catchUp) answer(pkt []byte, from net.Addr, now time.Time) {
	q, err := control.ParsePointerQuery(pkt)
	if err != nil || q.Group != c.fleet.group {
		return
	}
	p, raw := c.fleet.Pointer()
	if p == nil || p.Seq < q.Have {
		return
	}
	if p.Hosts > answerTarget && rand.N(p.Hosts) >= answerTarget {
		return
	}
	if !c.answers.AllowN(now, 1) {
		c.log.Debug("agent: pointer query not answered: answer rate reached", "from", from.String())
		return
	}
	_, serves := c.held.source(c, p.Release)
	b, err := (&control.PointerAnswer{Serves: serves && c.peerPort != 0, Pointer: raw}).AppendBinary(nil)
	if err != nil {
		return
	}
	if _, err := c.conn.WriteTo(b, from); err != nil {
		c.log.Debug("agent: pointer answer", "to", from.String(), "err", err)
	}
}

// heldCache keeps the parsed manifests of the releases served to peers.
type heldCache struct {
	mu sync.Mutex
	m  map[image.ID]peer.Held
}

// source returns release's image and manifest when this agent serves it:
// kept (verified, not quarantined) and received in the clear.
func (h *heldCache) source(c *catchUp, id image.ID) (peer.Held, bool) {
	if !c.fleet.servable(id) {
		return peer.Held{}, false
	}
	kept, err := c.store.KeptImages()
	if err != nil {
		return peer.Held{}, false
	}
	i := slices.IndexFunc(kept, func(k release.Kept) bool { return k.ID == id })
	if i < 0 {
		return peer.Held{}, false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if got, ok := h.m[id]; ok && got.Image == kept[i].Image {
		if _, err := os.Stat(got.Image); err == nil {
			return got, true
		}
	}
	raw, err := os.ReadFile(kept[i].Manifest)
	if err != nil {
		return peer.Held{}, false
	}
	m, err := image.ParseManifest(raw)
	if err != nil || m.ID() != id {
		return peer.Held{}, false
	}
	if _, err := os.Stat(kept[i].Image); err != nil {
		return peer.Held{}, false
	}
	if h.m == nil || len(h.m) >= 8 {
		h.m = map[image.ID]peer.Held{}
	}
	got := peer.Held{Image: kept[i].Image, Manifest: m, Raw: raw}
	h.m[id] = got
	return got, true
}

// servePeers serves the kept releases to other agents on addr until ctx
// ends. A port it cannot listen on is logged: catch-up then goes without
// this host's help.
func (c *catchUp) servePeers(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		c.log.Error("agent: cannot serve releases to peers; the agent runs on without", "addr", addr, "err", err)
		return nil
	}
	c.log.Info("agent: serving releases to peers", "addr", ln.Addr().String())
	s := &peer.Server{Source: func(id image.ID) (peer.Held, bool) { return c.held.source(c, id) }, Logger: c.log,
		Authorize: peer.CheckProof(c.cfg.Keys, c.fleet.group), Certs: c.certs.get}
	if err := s.Serve(ctx, ln); err != nil && ctx.Err() == nil {
		c.log.Error("agent: peer server stopped", "err", err)
	}
	return nil
}

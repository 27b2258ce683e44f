package multicast

import (
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Attacks on relays (docs/SECURITY.md, "A malicious relay"). A relay is a
// host with its own key; it may hold a grant the sender gave it for some
// session. Each case announces a relayed session as such a relay would,
// from its own address, and a host must not follow it: it never asks the
// attacker for the manifest.
func TestAttackRelayAnnounce(t *testing.T) {
	ts := newTestSession(t, nil)
	release := testReleaseKey()
	evil := testHostKey("evil")
	_, other, _ := ed25519.GenerateKey(nil)
	now := time.Now()
	grant := func(session uint32, f func(g *wire.RelayGrant)) *wire.RelayGrant {
		g := &wire.RelayGrant{Session: session, ReleaseID: [8]byte{1}, ManifestDigest: [32]byte{2}, ManifestSize: 1000,
			ImageSize: 3 << 20, ChunkSize: 1 << 20, SymbolSize: 1408, BlockSymbols: 64, Issued: now.UnixMilli(),
			Expires: now.Add(time.Hour).UnixMilli(), RelayHost: "evil", RelayKey: pub32(evil.Public().(ed25519.PublicKey)),
			ReleaseKey: pub32(ts.pub)}
		if f != nil {
			f(g)
		}
		if err := signGrant(g, release); err != nil {
			t.Fatal(err)
		}
		return g
	}
	cases := []struct {
		name   string
		follow bool // the control: a relay the sender granted this session
		grant  func(session uint32) *wire.RelayGrant
		signer ed25519.PrivateKey
	}{
		{"granted relay (control)", true, func(s uint32) *wire.RelayGrant { return grant(s, nil) }, evil},
		{"relay without a grant", false, func(uint32) *wire.RelayGrant { return nil }, evil},
		{"grant signed by the relay itself", false, func(s uint32) *wire.RelayGrant {
			g := grant(s, nil)
			b, _ := g.AppendSigned(nil)
			copy(g.Sig[:], ed25519.Sign(evil, b))
			return g
		}, evil},
		{"grant for another session", false, func(s uint32) *wire.RelayGrant { return grant(s+1, nil) }, evil},
		{"grant for another relay", false, func(s uint32) *wire.RelayGrant {
			return grant(s, func(g *wire.RelayGrant) { g.RelayKey = pub32(other.Public().(ed25519.PublicKey)) })
		}, evil},
		{"expired grant", false, func(s uint32) *wire.RelayGrant {
			return grant(s, func(g *wire.RelayGrant) {
				g.Issued, g.Expires = now.Add(-6*time.Hour).UnixMilli(), now.Add(-time.Hour).UnixMilli()
			})
		}, evil},
		{"grant for another release", false, func(s uint32) *wire.RelayGrant {
			return grant(s, func(g *wire.RelayGrant) { g.ManifestDigest = [32]byte{3} })
		}, evil},
	}
	var wg sync.WaitGroup
	for i, tc := range cases {
		session := uint32(0xbad00 + 16*i)
		host, attacker := "h"+string(rune('a'+i)), ts.net.Conn("evil"+string(rune('a'+i)), false)
		a := &wire.Announce{ReleaseID: [8]byte{1}, ManifestDigest: [32]byte{2}, ManifestSize: 1000, ImageSize: 3 << 20,
			ChunkSize: 1 << 20, ChunkCount: 3, SymbolSize: 1408, BlockSymbols: 64, SignedAt: now.UnixMilli(),
			ReleaseKey: pub32(ts.pub), SessionKey: [32]byte{7}, SessionDH: pub32(newDH().PublicKey().Bytes()), Grant: tc.grant(session)}
		ann, err := appendSigned(nil, wire.Header{Session: session, Seq: 1}, a, tc.signer)
		if err != nil {
			t.Fatal(err)
		}
		stop := flood(func() { attacker.WriteTo(ann, memnet.Group) })
		o := ReceiveOptions{HostID: host, HostKey: testHostKey(host), Out: filepath.Join(ts.dir, host+".img"),
			Trusted: []ed25519.PublicKey{ts.pub}, Session: session, AnnounceTimeout: 1500 * time.Millisecond}
		conn := ts.net.Conn(host, true)
		wg.Go(func() {
			defer stop()
			_, err := Receive(context.Background(), conn, o)
			asked := askedBy(attacker, host)
			if asked != tc.follow {
				t.Errorf("%s: the host asked the attacker for the manifest: %v, want %v (Receive: %v)", tc.name, asked, tc.follow, err)
			}
			if !tc.follow && !errors.Is(err, ErrNoSession) {
				t.Errorf("%s: Receive: %v, want %v", tc.name, err, ErrNoSession)
			}
		})
	}
	wg.Wait()
}

// askedBy reports whether host sent a REGISTER to the attacker's conn.
func askedBy(attacker *memnet.Conn, host string) bool {
	for {
		select {
		case p := <-attacker.In():
			if _, m, err := wire.Parse(p.B); err == nil {
				if r, ok := m.(*wire.Register); ok && r.Host == host {
					return true
				}
			}
		default:
			return false
		}
	}
}

// routed is one network with a router between the sender's side and the
// relay's that carries no multicast: the sender's multicast (sequence
// numbers) reaches neither the relay nor b*, and the relay's session
// reaches only b*; unicast crosses. mangle, if set, may change the
// relay's packets to b* (a malicious relay).
func routed(b []string, mangle func(p []byte) bool) func(from, to string, p []byte) bool {
	behind := func(h string) bool { return h == "rb" || h == "rb-down" || slices.Contains(b, h) }
	return func(from, to string, p []byte) bool {
		seq := len(p) >= wire.HeaderLen && binary.BigEndian.Uint32(p[12:16]) != 0
		switch {
		case from == "sender" && seq && behind(to):
			return true
		case from == "rb-down" && seq && !slices.Contains(b, to):
			return true
		case from == "rb-down" && slices.Contains(b, to) && mangle != nil:
			return mangle(p)
		}
		return false
	}
}

// Attacks: a relay that sends junk symbols (each fails its chunk's hash)
// or that stops sending any costs its hosts relayStall: they give it up,
// ignore it for the rest of the session, and take the sender's unicast
// path, which the sender offers them; every host completes.
func TestAttackRelayJunkOrStall(t *testing.T) {
	defer func(d time.Duration) { relayStall = d }(relayStall)
	relayStall = 1500 * time.Millisecond
	for _, tc := range []struct {
		name   string
		mangle func(p []byte) bool
	}{
		{"junk symbols", func(p []byte) bool {
			if len(p) > wire.HeaderLen && (p[5] == byte(wire.TypeData) || p[5] == byte(wire.TypeRepair)) {
				p[wire.HeaderLen+wire.SymbolHeaderLen] ^= 0xff // the payload's first byte: no chunk verifies
			}
			return false
		}},
		{"stalling", func(p []byte) bool {
			return len(p) > wire.HeaderLen && (p[5] == byte(wire.TypeData) || p[5] == byte(wire.TypeRepair))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { runBadRelay(t, tc.mangle) })
	}
}

// A sealed session is not relayed (slice 1): the relay takes part as a
// host, and the hosts behind it take the unicast path.
func TestRelaySealedRefused(t *testing.T) {
	rep := runBadRelay(t, nil, func(o *SendOptions) { o.Encrypt = true })
	if rep != nil {
		t.Errorf("the relay ran a sealed session on its subnet: %+v", rep)
	}
}

func runBadRelay(t *testing.T, mangle func(p []byte) bool, opts ...func(*SendOptions)) *Report {
	b := []string{"b1", "b2"}
	ts := newTestSession(t, routed(b, mangle))
	for _, f := range opts {
		f(&ts.send)
	}
	hosts := append([]string{"a1", "rb"}, b...)
	ts.send.Hosts, ts.send.Relays, ts.send.HostKeys = hosts, []string{"rb"}, pinnedTestKeys(hosts)
	ts.send.HostTimeout, ts.send.Wait = 10*time.Second, 5*time.Second
	uni := withUnicast(t, ts, hosts)
	ro := RelayOptions{Down: ts.net.Conn("rb-down", false), DownGroup: memnet.Group, HostTimeout: 2 * time.Second}
	ro.ReceiveOptions = ReceiveOptions{HostID: "rb", HostKey: testHostKey("rb"), Out: filepath.Join(ts.dir, "rb.img"),
		Trusted: []ed25519.PublicKey{ts.pub}, SenderTimeout: 5 * time.Second, Logger: testLogger(t).With("host", "rb")}
	uni("rb", &ro.ReceiveOptions)
	var relayErr error
	var rep *Report
	var wg sync.WaitGroup
	wg.Go(func() { _, rep, relayErr = Relay(context.Background(), ts.net.Conn("rb", true), ro) })
	res, errs := ts.run(context.Background(), []string{"a1", "b1", "b2"}, func(h string, o *ReceiveOptions) {
		uni(h, o)
		o.SenderTimeout = 10 * time.Second
	})
	wg.Wait()
	if relayErr != nil {
		t.Errorf("relay: %v", relayErr)
	}
	for _, h := range append([]string{"a1"}, b...) {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
	}
	for _, h := range b {
		if hr := hostReport(ts.report, h); hr.State != HostComplete || hr.Path != PathUnicast || !res[h].Unicast {
			t.Errorf("%s: %v over %q (unicast result %v), want complete over the unicast path", h, hr.State, hr.Path, res[h].Unicast)
		}
	}
	return rep
}

// Attack: a relay that reports a host behind it complete, by a COMPLETE it
// signs itself (or MACs), or by RELAY-STATUS, does not make it complete at
// the sender; the host's own signed COMPLETE, forwarded, does.
func TestAttackRelayForgesComplete(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.usePack()
	o := ts.send
	o.Hosts, o.Relays = []string{"rb", "b1"}, []string{"rb"}
	if err := o.defaults(); err != nil {
		t.Fatal(err)
	}
	s, err := newSender(ts.net.Conn("sender", false), o)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	rb, b1 := s.hosts.get("rb"), s.hosts.get("b1")
	rb.registered, rb.addr, rb.key, rb.keys = true, memnet.Addr("rb"), testHostKey("rb").Public().(ed25519.PublicKey), &pairKeys{}
	rb.relay = &relayState{}
	b1.registered, b1.via, b1.viaAt, b1.key = true, rb, now, testHostKey("b1").Public().(ed25519.PublicKey)
	c := &wire.Complete{Host: "b1", Status: wire.CompleteStaged}
	hdr := wire.Header{Session: o.Session}
	forged, _ := appendSigned(nil, hdr, c, testHostKey("rb"))
	macd, _ := appendMAC(nil, hdr, c, &rb.keys.up)
	status, _ := appendMAC(nil, hdr, &wire.RelayStatus{Relay: "rb", Seq: 1, Hosts: []wire.RelayedHost{{Host: "b1", State: wire.RelayHostComplete}}}, &rb.keys.up)
	for _, p := range [][]byte{forged, macd, status} {
		s.handle(packet{b: p, from: memnet.Addr("rb")}, now)
	}
	if b1.complete {
		t.Fatal("the relay's own word made b1 complete")
	}
	real, _ := appendSigned(nil, hdr, c, testHostKey("b1"))
	s.handle(packet{b: real, from: memnet.Addr("rb")}, now)
	if !b1.complete || !b1.staged {
		t.Error("b1's own signed COMPLETE, forwarded by its relay, was not taken")
	}
}

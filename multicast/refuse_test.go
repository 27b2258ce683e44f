package multicast

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// A host that will not take a session says why; the report names the
// cause and the detail, a healthy host in the same session is unaffected,
// and the sender does not wait out --wait for the refusing ones.
func TestRefusalsReported(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts, ts.send.Wait = []string{"ok", "wrongkey", "full"}, 20*time.Second
	other := ed25519.NewKeyFromSeed(make([]byte, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	_, errs := ts.run(context.Background(), ts.send.Hosts, func(h string, o *ReceiveOptions) {
		o.AnnounceTimeout = 3 * time.Second
		switch h {
		case "wrongkey":
			o.Trusted = []ed25519.PublicKey{other}
		case "full":
			o.Accept = func(m *image.Manifest) error {
				return &Refusal{Code: RefuseNoSpace, Detail: "on /srv/loopcast: needs 1.0 GiB incl. 1.0 GiB reserve, 37 MiB free"}
			}
		}
	})
	if errs["ok"] != nil {
		t.Fatalf("healthy host: %v", errs["ok"])
	}
	ts.checkImage("ok")
	for h, want := range map[string][]string{
		"wrongkey": {"untrusted-key", image.KeyID(ts.pub), image.KeyID(other)},
		"full":     {"no-space", "37 MiB free"},
	} {
		r := hostReport(ts.report, h)
		if r.State != HostRefused || r.Cause != want[0] {
			t.Errorf("%s: %v cause %q (%s), want refused: %s", h, r.State, r.Cause, r.Reason, want[0])
		}
		for _, w := range want[1:] {
			if !strings.Contains(r.Reason, w) {
				t.Errorf("%s: reason %q does not name %q", h, r.Reason, w)
			}
		}
	}
	if ts.report.Registration > ts.send.Wait/2 {
		t.Errorf("registration took %v: the sender waited on hosts that had refused", ts.report.Registration)
	}
}

// A host hearing an ANNOUNCE of another protocol version answers with a
// REFUSE that sender can read (its layout is fixed across versions), and
// a sender reads a REFUSE of a newer version.
func TestRefuseVersion(t *testing.T) {
	ts := newTestSession(t, nil)
	evil := ts.net.Conn("oldsender", true)
	listenAsH(t, ts)
	ann := encodeSample(t, 1, samples()[0])
	ann[4] = 2 // an older loopcast
	deadline := time.After(5 * time.Second)
	for {
		evil.WriteTo(ann, memnet.Group)
		select {
		case p := <-evil.In():
			h, m, err := wire.Parse(p.B)
			rf, ok := m.(*wire.Refuse)
			if err != nil || !ok {
				continue
			}
			if rf.Code != RefuseVersion || !strings.Contains(rf.Detail, fmt.Sprintf("version %d, the session version 2", wire.Version)) || !signedBy(&h, rf.HostKey[:]) {
				t.Fatalf("refuse %v %q (signed: %v), want a signed version refusal naming both versions", rf.Code, rf.Detail, signedBy(&h, rf.HostKey[:]))
			}
			newer := bytes4(p.B, 9) // as a version 9 host would send it
			if _, m, err := wire.Parse(newer); err != nil || m.(*wire.Refuse).Code != RefuseVersion {
				t.Fatalf("a REFUSE of version 9 does not parse: %v", err)
			}
			return
		case <-deadline:
			t.Fatal("no REFUSE for an ANNOUNCE of another version")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func bytes4(b []byte, v byte) []byte {
	b = append([]byte(nil), b...)
	b[4] = v
	return b
}

// A flood of signed ANNOUNCEs of sessions a host refuses (an untrusted
// key, a new session id each) costs it a bounded number of REFUSEs.
func TestRefuseFloodBounded(t *testing.T) {
	ts := newTestSession(t, nil)
	evil := ts.net.Conn("evil", true)
	listenAsH(t, ts)
	_, untrusted, _ := ed25519.GenerateKey(nil)
	a := *samples()[0].(*wire.Announce)
	a.ReleaseKey = pub32(untrusted.Public().(ed25519.PublicKey))
	start := time.Now()
	for i := range 2000 {
		a.SignedAt = time.Now().UnixMilli()
		b, _ := appendSigned(nil, wire.Header{Session: uint32(1000 + i), Seq: 1}, &a, untrusted)
		evil.WriteTo(b, memnet.Group)
		if i%100 == 0 {
			time.Sleep(10 * time.Millisecond) // let the receiver keep up
		}
	}
	time.Sleep(200 * time.Millisecond)
	secs := time.Since(start).Seconds()
	n := 0
	for len(evil.In()) > 0 {
		p := <-evil.In()
		if _, m, err := wire.Parse(p.B); err == nil {
			if _, ok := m.(*wire.Refuse); ok {
				n++
			}
		}
	}
	if n == 0 || float64(n) > maxRefusesPerSecond*(secs+1) {
		t.Errorf("%d REFUSEs for 2000 refused sessions in %.1fs; want 1 to %v", n, secs, maxRefusesPerSecond*(secs+1))
	}
}

// A sender whose clock is far off is told so, not met with silence.
func TestRefuseClockSkew(t *testing.T) {
	ts := newTestSession(t, nil)
	evil := ts.net.Conn("skewed", true)
	listenAsH(t, ts)
	a := *samples()[0].(*wire.Announce)
	a.ReleaseKey, a.SignedAt = pub32(ts.pub), time.Now().Add(-time.Hour).UnixMilli()
	ann, _ := appendSigned(nil, wire.Header{Session: 77, Seq: 1}, &a, testReleaseKey())
	deadline := time.After(5 * time.Second)
	for {
		evil.WriteTo(ann, memnet.Group)
		select {
		case p := <-evil.In():
			if _, m, err := wire.Parse(p.B); err == nil {
				if rf, ok := m.(*wire.Refuse); ok {
					if !strings.Contains(rf.Detail, "clock skew") || !strings.Contains(rf.Detail, "1h0m0s behind") {
						t.Fatalf("refusal %q: want the clock skew named", rf.Detail)
					}
					return
				}
			}
		case <-deadline:
			t.Fatal("no REFUSE for an ANNOUNCE signed an hour ago")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// listenAsH runs a receiver "h" trusting the session's key until the test
// ends: the host the refusal tests send their ANNOUNCEs to.
func listenAsH(t *testing.T, ts *testSession) {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go Receive(ctx, ts.net.Conn("h", true), ReceiveOptions{HostID: "h", HostKey: testHostKey("h"), Out: t.TempDir() + "/h.img", Trusted: []ed25519.PublicKey{ts.pub}})
}

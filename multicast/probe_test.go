package multicast

import (
	"context"
	"crypto/ed25519"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// TestProbeHeard: a receiver waiting for a session hears a doctor probe on
// the group and hands its nonce on; anything else of the probe's length is
// not a probe.
func TestProbeHeard(t *testing.T) {
	ts := newTestSession(t, nil)
	heard := make(chan [16]byte, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rc := ts.net.Conn("web1", true)
	go Receive(ctx, rc, ReceiveOptions{HostID: "web1", HostKey: testHostKey("web1"), Out: filepath.Join(ts.dir, "web1.img"),
		Trusted: []ed25519.PublicKey{ts.pub}, AnnounceTimeout: 10 * time.Second,
		Probed: func(n [16]byte, _ net.Addr) { heard <- n }})
	doctor := ts.net.Conn("doctor", false)
	nonce := [16]byte{1, 2, 3, 15: 16}
	for range 50 { // until the receiver reads its socket
		doctor.WriteTo(AppendProbe(nil, nonce), memnet.Group)
		select {
		case got := <-heard:
			if got != nonce {
				t.Fatalf("heard nonce %x, sent %x", got, nonce)
			}
			if _, ok := wire.ParseProbe(append(AppendProbe(nil, nonce), 0)); ok {
				t.Error("a probe with a byte more parsed")
			}
			if _, ok := wire.ParseProbe(make([]byte, wire.ProbeLen)); ok {
				t.Error("zeros parsed as a probe")
			}
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
	t.Fatal("the receiver never heard the probe")
}

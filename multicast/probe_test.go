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

// Loss is measured between authenticated marks (the sender's signed
// STATUS and ANNOUNCE): a tenth of the symbols lost reads as ~100‰, and a
// forged symbol with a sequence number far ahead (symbols carry no tag)
// adds none.
func TestSeqLossBetweenMarks(t *testing.T) {
	var q seqStats
	for s := uint32(1); s <= 1001; s++ {
		k := seqCounts
		if s%100 == 1 {
			k = seqMarks // a probe every 100 packets
		}
		if k == seqMarks || s%10 != 0 {
			q.saw(s, k)
		}
	}
	if l := q.lossPermille(); l < 95 || l > 105 {
		t.Errorf("every tenth symbol lost: %d‰, want ~100", l)
	}
	for s := uint32(1002); s <= 2001; s++ {
		k := seqCounts
		if s%100 == 1 {
			k = seqMarks
		}
		q.saw(s, k)
		if s == 1500 {
			q.saw(1<<30, seqCounts) // one forged symbol
		}
	}
	if l := q.lossPermille(); l != 0 {
		t.Errorf("1000 packets in order and one forged sequence number: %d‰ loss, want 0", l)
	}
	q.saw(1<<30, seqMarks) // a signed mark far ahead: the sender's counter is there
	if l := q.peekPermille(); l < 990 {
		t.Errorf("a signed packet 2^30 packets ahead: %d‰, want near 1000", l)
	}
}

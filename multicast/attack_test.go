package multicast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/logline"
	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Attacks from issue "A transfer plane no stranger can steer", each sent
// as a LAN attacker would: it knows the release public key, every host id
// and the session id (all in the ANNOUNCE), and can send from its own
// address or spoof the sender's. Each fails on the unauthenticated wire
// (version 2) and passes now.

// flood runs send every few milliseconds until the returned stop is called.
func flood(send func()) (stop func()) {
	done, quit := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(2 * time.Millisecond):
				send()
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(quit); <-done }) }
}

func hostReport(r *Report, id string) HostReport {
	for _, h := range r.Hosts {
		if h.ID == id {
			return h
		}
	}
	return HostReport{}
}

// Attack 2: a COMPLETE naming a listed host that is down, from the
// attacker's address (unauthenticated, or MAC'd under a key of its own),
// must not mark the host complete nor move its reply address.
func TestAttackForgedComplete(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts, ts.send.Wait = []string{"h1", "h2"}, time.Second
	evil := ts.net.Conn("evil", true)
	fake := macKey{1}
	stop := flood(func() {
		c := &wire.Complete{Host: "h2", Status: wire.CompleteStaged}
		b, _ := wire.AppendPacket(nil, wire.Header{Session: ts.send.Session}, c)
		evil.WriteTo(b, memnet.Addr("sender"))
		b, _ = appendMAC(nil, wire.Header{Session: ts.send.Session}, c, &fake)
		evil.WriteTo(b, memnet.Addr("sender"))
	})
	defer stop()
	_, errs := ts.run(context.Background(), []string{"h1"}, nil)
	stop()
	if errs["h1"] != nil {
		t.Fatalf("h1: %v", errs["h1"])
	}
	if h := hostReport(ts.report, "h2"); h.State == HostComplete || h.Staged || h.Addr == "evil" {
		t.Errorf("forged COMPLETE taken: h2 is %v (staged %v) at %q", h.State, h.Staged, h.Addr)
	}
	if h := hostReport(ts.report, "h1"); h.State != HostComplete {
		t.Errorf("h1 %v, want complete", h.State)
	}
}

// Attack 1: with a host's key pinned, another machine that runs an
// honest receiver under that host's id (its own key) is refused, loudly,
// and never counted.
func TestAttackImpostorHost(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts = []string{"h1", "h2"}
	real := map[string]ed25519.PublicKey{"h1": testHostKey("h1").Public().(ed25519.PublicKey), "h2": testHostKey("h2").Public().(ed25519.PublicKey)}
	ts.send.HostKeys = func(id string, k ed25519.PublicKey) error {
		if !real[id].Equal(k) {
			return &refusedKey{id}
		}
		return nil
	}
	_, impostor, _ := ed25519.GenerateKey(nil)
	_, errs := ts.run(context.Background(), []string{"h1", "h2"}, func(h string, o *ReceiveOptions) {
		if h == "h2" {
			o.HostKey, o.SenderTimeout = impostor, time.Second
		}
	})
	if errs["h1"] != nil {
		t.Fatalf("h1: %v", errs["h1"])
	}
	h := hostReport(ts.report, "h2")
	if h.State != HostRefused || h.Cause != "host-key" || !strings.Contains(h.Reason, "not its pinned key") {
		t.Errorf("impostor h2: %v cause %q reason %q; want refused for its key", h.State, h.Cause, h.Reason)
	}
	if done, all := ts.report.Completed(); done != 1 || all != 2 {
		t.Errorf("%d of %d complete, want 1 of 2", done, all)
	}
}

type refusedKey struct{ id string }

func (e *refusedKey) Error() string { return "host " + e.id + ": not its pinned key" }

// Attack 10: a forged ABORT from the sender's own (spoofed) address,
// unsigned or signed by another key, discards nothing.
func TestAttackForgedAbortAfterJoin(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts, ts.send.Rate = []string{"h1"}, 20e6 // a session long enough to be hit
	_, other, _ := ed25519.GenerateKey(nil)
	var sent int
	stop := flood(func() {
		h := ts.net.Lookup("h1")
		if h == nil {
			return
		}
		a := &wire.Abort{Reason: "forged"}
		b, _ := wire.AppendPacket(nil, wire.Header{Session: ts.send.Session, Seq: 1}, a)
		ts.net.Deliver(memnet.Addr("sender"), h, b)
		b, _ = appendSigned(nil, wire.Header{Session: ts.send.Session, Seq: 2}, a, other)
		ts.net.Deliver(memnet.Addr("sender"), h, b)
		sent += 2
	})
	defer stop()
	res, errs := ts.run(context.Background(), []string{"h1"}, nil)
	stop()
	if errs["h1"] != nil {
		t.Fatalf("h1 gave up: %v", errs["h1"])
	}
	if sent == 0 || res["h1"].Ignored == 0 {
		t.Fatalf("the forged ABORTs did not reach h1 (%d sent, %d ignored)", sent, res["h1"].Ignored)
	}
	ts.checkImage("h1")
}

// Attack 3: a forged ANNOUNCE (not signed by the key it names) declaring
// an 8 MiB manifest, then a trickle of 1-byte MANIFEST fragments, is never
// taken as a candidate: the receiver joins the real session meanwhile.
func TestAttackManifestTrickle(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts = []string{"h1"}
	evil := ts.net.Conn("evil", true)
	a := *samples()[0].(*wire.Announce)
	a.ManifestSize, a.SignedAt, a.ReleaseKey = wire.MaxManifestSize, time.Now().UnixMilli(), pub32(ts.pub)
	_, other, _ := ed25519.GenerateKey(nil)
	ann, _ := appendSigned(nil, wire.Header{Session: 0xbad, Seq: 1}, &a, other) // signed, but not by ReleaseKey
	var off uint32
	stop := flood(func() {
		evil.WriteTo(ann, memnet.Group)
		b, _ := wire.AppendPacket(nil, wire.Header{Session: 0xbad, Seq: 2}, &wire.ManifestFrag{Offset: off, Total: wire.MaxManifestSize, Data: []byte{0}})
		evil.WriteTo(b, memnet.Group)
		off++
	})
	defer stop()
	time.Sleep(100 * time.Millisecond) // the trickle is on before the real session
	_, errs := ts.run(context.Background(), []string{"h1"}, nil)
	stop()
	if errs["h1"] != nil {
		t.Fatalf("h1: %v", errs["h1"])
	}
	ts.checkImage("h1")
}

// Attack 4: DATA packets naming a frame length other than the signed
// descriptor's are dropped before any state is sized by them.
func TestAttackForgedSymbolLength(t *testing.T) {
	ts := newTestSession(t, nil)
	st := newStore(ts.m, &wire.Announce{SymbolSize: 64, BlockSymbols: 1}, nil, nil)
	st.lens = make([][2]uint32, len(ts.m.Chunks))
	c := -1
	for i, ch := range ts.m.Chunks {
		if !ch.Zero {
			st.lens[i], c = [2]uint32{1000, 0}, i
		}
	}
	for _, n := range []uint32{64, 999, 1001, maxCompressedU32(ts.m.ChunkSize)} {
		err := st.add(&wire.Symbol{Chunk: uint32(c), Compressed: n, Block: 0, Index: 0, Payload: make([]byte, 64)})
		if err == nil || st.chunks[c].clen != 0 || st.memUsed != 0 {
			t.Errorf("symbol claiming %d bytes (descriptor: 1000): err %v, clen %d, %d bytes held", n, err, st.chunks[c].clen, st.memUsed)
		}
	}
}

func maxCompressedU32(chunk uint32) uint32 { return uint32(wire.MaxCompressed(chunk)) }

// Attack 8: host ids outside the charset are refused where they enter.
func TestHostIDRule(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.usePack()
	for _, id := range []string{"a b", "web\x1b[2J", "", strings.Repeat("a", 65), "-x", "ü"} {
		if _, err := Receive(context.Background(), nil, ReceiveOptions{HostID: id, HostKey: testHostKey("x"), Out: "x"}); err == nil {
			t.Errorf("Receive took host id %q", id)
		}
		o := ts.send
		o.Hosts = []string{id}
		if err := o.defaults(); err == nil {
			t.Errorf("Send took host id %q", id)
		}
	}
}

// Attack 7: a member that asks for the same repair every round (an open
// group's stranger NACKing everything) is dropped after MaxStallRounds and
// stallTime; a host asking for nothing (busy decoding or copying) or for
// less each round is not.
func TestStalledHostDropped(t *testing.T) {
	s := &sender{hosts: newHostTable(nil), log: testLogger(t)}
	for _, id := range []string{"greedy", "idle", "honest"} {
		h := newHost(id, true)
		h.registered = true
		s.hosts.byID[id] = h
	}
	now := time.Now()
	for r := range uint32(MaxStallRounds + 5) {
		s.round = r + 1
		for h := range s.hosts.all() {
			h.round = s.round
		}
		s.hosts.get("greedy").need, s.hosts.get("idle").need = 5000, 0
		s.hosts.get("honest").need = int64(10000 - r)
		now = now.Add(2 * time.Second)
		s.checkStalls(now)
	}
	if s.hosts.get("greedy").dropped == "" {
		t.Error("a host asking for the same repair every round was never dropped")
	}
	for _, id := range []string{"idle", "honest"} {
		if d := s.hosts.get(id).dropped; d != "" {
			t.Errorf("%s dropped: %s", id, d)
		}
	}
}

// Attack 11: with Encrypt, a listener on the group (and a host whose key
// the sender refuses) gets only sealed frames; the recipients get the
// image.
func TestEncryptedSession(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts, ts.send.Encrypt, ts.send.Wait = []string{"h1", "h2", "h3"}, true, 2*time.Second
	ts.send.HostKeys = func(id string, k ed25519.PublicKey) error {
		if id == "h3" {
			return &refusedKey{id}
		}
		return nil
	}
	spy := ts.net.Conn("spy", true)
	var firsts, plain int
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case p := <-spy.In():
				_, m, err := wire.Parse(p.B)
				if s, ok := m.(*wire.Symbol); err == nil && ok && !s.Repair && s.Block == 0 && s.Index == 0 {
					mu.Lock()
					firsts++
					if bytes.HasPrefix(s.Payload, []byte{0x28, 0xb5, 0x2f, 0xfd}) { // a zstd frame in the clear
						plain++
					}
					mu.Unlock()
				}
			case <-time.After(3 * time.Second):
				return
			}
		}
	}()
	res, errs := ts.run(context.Background(), ts.send.Hosts, func(h string, o *ReceiveOptions) {
		if h == "h3" {
			o.SenderTimeout = time.Second
		}
	})
	<-done
	for _, h := range []string{"h1", "h2"} {
		if errs[h] != nil || !res[h].Encrypted {
			t.Fatalf("%s: %v (encrypted %v)", h, errs[h], res[h] != nil && res[h].Encrypted)
		}
		ts.checkImage(h)
	}
	if errs["h3"] == nil {
		t.Error("h3, whose key the sender refused, completed the image")
	}
	mu.Lock()
	defer mu.Unlock()
	if firsts == 0 || plain != 0 {
		t.Errorf("%d of %d first symbols a listener heard were plain zstd frames; want all sealed", plain, firsts)
	}
}

// Identical repair rounds (hosts still decoding answer the same empty
// NACK) are logged once, with a count when the run ends.
func TestIdleRoundsSummarised(t *testing.T) {
	var lines []string
	s := &sender{log: slog.New(logline.New(slog.LevelDebug, func(_ slog.Level, line string) { lines = append(lines, line) }))}
	for r := 1; r <= 40; r++ {
		s.round = uint32(r)
		s.logRound(roundSummary{blocks: 0, chunks: 0})
	}
	s.round = 41
	s.logRound(roundSummary{blocks: 3, chunks: 0})
	s.round = 42
	s.flushRounds()
	if len(lines) != 3 || !strings.Contains(lines[1], "multicast: more rounds like it count=39") {
		t.Errorf("logged %d lines for 40 identical rounds and one other:\n%s", len(lines), strings.Join(lines, "\n"))
	}
}

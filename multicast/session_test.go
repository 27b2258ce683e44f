package multicast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/logline"
	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/multicast/internal/wire"
	"github.com/loopcast/loopcast/multicast/internal/wire/wiretest"
)

// testChunk keeps test images small and transfers quick.
const testChunk = 64 << 10

// testImage writes an image of mixed chunks — random, compressible, all
// zero — ending in a short chunk, and signs its manifest.
func testImage(t testing.TB) (path string, m *image.Manifest, pub ed25519.PublicKey) {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 7))
	var b bytes.Buffer
	for i := range 24 {
		c := make([]byte, testChunk)
		switch i % 4 {
		case 0:
			for j := range c {
				c[j] = byte(r.Uint32())
			}
		case 1:
			copy(c, strings.Repeat(fmt.Sprintf("chunk %d compresses well. ", i), testChunk/20))
		case 3:
			c[r.IntN(len(c))] = 1 // nearly zero, but not a hole
		} // case 2: all zero
		b.Write(c)
	}
	b.WriteString("a short last chunk")
	path = filepath.Join(t.TempDir(), "test.img")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), path, testChunk)
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	pub = priv.Public().(ed25519.PublicKey)
	m.Label = "test"
	m.Sign(priv)
	return path, m, pub
}

// samples and encodeSample are the wire codec's sample messages
// (wiretest): valid packets, of a session other than the test's.
var (
	samples      = wiretest.Samples
	encodeSample = wiretest.Encode
)

// lossy drops each delivery with probability p, deterministically seeded.
func lossy(p float64, seed uint64) func(from, to string, b []byte) bool {
	r := rand.New(rand.NewPCG(seed, seed))
	return func(string, string, []byte) bool { return r.Float64() < p }
}

type testSession struct {
	t      *testing.T
	net    *memnet.Net
	img    string
	m      *image.Manifest
	pub    ed25519.PublicKey
	dir    string
	send   SendOptions
	report *Report
	// retries is how many times a receiver whose session failed runs
	// again, as the agent does after a failed session.
	retries int
	// late holds back the hosts it names until their channel is closed:
	// they join while the session runs.
	late map[string]<-chan struct{}
}

func newTestSession(t *testing.T, drop func(from, to string, b []byte) bool) *testSession {
	img, m, pub := testImage(t)
	ts := &testSession{t: t, net: memnet.New(drop), img: img, m: m, pub: pub, dir: t.TempDir()}
	ts.send = SendOptions{Key: testReleaseKey(), Group: memnet.Group, Session: 0x5e55, Manifest: m, Rate: 100e6,
		Wait: 5 * time.Second, HostTimeout: 2 * time.Second, Logger: testLogger(t)}
	return ts
}

// testLogger writes a session's records, detail included, to the test's
// log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// openPack packs img (on base, if not "": an image with its manifest
// beside it) and opens the pack, closed when the test ends.
func openPack(tb testing.TB, img string, m *image.Manifest, base string) *image.Pack {
	tb.Helper()
	if _, err := image.MakePack(context.Background(), img, m, base); err != nil {
		tb.Fatal(err)
	}
	p, err := image.OpenPack(img+image.PackSuffix, m)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { p.Close() })
	return p
}

// usePack gives the sender the pack of the session's image, unless it has
// one already (a delta session's, made on its base).
func (ts *testSession) usePack() {
	if ts.send.Pack == nil {
		ts.send.Pack = openPack(ts.t, ts.img, ts.m, "")
	}
}

// run sends once and runs a receiver per host with opts from recv; it
// returns each receiver's result and error by host id.
func (ts *testSession) run(ctx context.Context, hosts []string, recv func(host string, o *ReceiveOptions)) (map[string]*Result, map[string]error) {
	ts.usePack()
	var mu sync.Mutex
	res, errs := map[string]*Result{}, map[string]error{}
	var g errgroup.Group
	sconn := ts.net.Conn("sender", false)
	g.Go(func() error {
		var err error
		ts.report, err = Send(ctx, sconn, ts.send)
		return err
	})
	for _, h := range hosts {
		o := ReceiveOptions{HostID: h, HostKey: testHostKey(h), Out: filepath.Join(ts.dir, h+".img"), Trusted: []ed25519.PublicKey{ts.pub},
			SenderTimeout: 5 * time.Second, AnnounceTimeout: 15 * time.Second, Logger: testLogger(ts.t).With("host", h)}
		if recv != nil {
			recv(h, &o)
		}
		conn := ts.net.Conn(h, true)
		g.Go(func() error {
			if begin := ts.late[h]; begin != nil {
				<-begin
			}
			r, err := Receive(ctx, conn, o)
			for try := 0; err != nil && try < ts.retries; try++ {
				ts.t.Logf("%s: try %d: %v", h, try+1, err)
				r, err = Receive(ctx, conn, o)
			}
			mu.Lock()
			res[h], errs[h] = r, err
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		ts.t.Fatalf("send: %v", err)
	}
	return res, errs
}

// runLate runs a session (as run) in which the host "late" starts only
// once begin is closed, and so registers while the session runs. Every
// host must complete, with the right image.
func (ts *testSession) runLate(hosts []string, begin <-chan struct{}, recv func(string, *ReceiveOptions)) {
	ts.t.Helper()
	ts.late = map[string]<-chan struct{}{"late": begin}
	ts.runVerified(hosts, recv)
}

// runVerified runs the session as run does and fails the test unless
// every host ended without error and with the right image; it returns
// the hosts' results.
func (ts *testSession) runVerified(hosts []string, recv func(string, *ReceiveOptions)) map[string]*Result {
	ts.t.Helper()
	res, errs := ts.run(context.Background(), hosts, recv)
	for _, h := range hosts {
		if errs[h] != nil {
			ts.t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
	}
	return res
}

// checkImage asserts the received file matches the manifest, with holes
// where the manifest has all-zero chunks.
func (ts *testSession) checkImage(host string) {
	t := ts.t
	path := filepath.Join(ts.dir, host+".img")
	if err := image.VerifyFile(context.Background(), path, ts.m); err != nil {
		t.Errorf("%s: %v", host, err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for i, c := range ts.m.Chunks {
		off, n := ts.m.ChunkRange(i)
		next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		isHole := errors.Is(err, unix.ENXIO) || (err == nil && next >= off+int64(n))
		if c.Zero && !isHole {
			t.Errorf("%s: zero chunk %d was written, want a hole", host, i)
		}
	}
	for _, leftover := range []string{".spool", "." + ts.m.ID().String() + ".partial"} {
		if _, err := os.Stat(path + leftover); err == nil {
			t.Errorf("%s: %s left behind", host, path+leftover)
		}
	}
}

func TestTransferLossy(t *testing.T) {
	ts := newTestSession(t, lossy(0.05, 1))
	hosts := []string{"web1", "web2", "web3", "web4", "web5"}
	ts.send.Hosts = hosts
	res, errs := ts.run(context.Background(), hosts, nil)
	for _, h := range hosts {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		if res[h].ReleaseID != ts.m.ID() {
			t.Errorf("%s: release %s, want %s", h, res[h].ReleaseID, ts.m.ID())
		}
		ts.checkImage(h)
	}
	if done, all := ts.report.Completed(); done != len(hosts) || all != len(hosts) {
		t.Errorf("report: %d of %d complete, want %d of %d: %+v", done, all, len(hosts), len(hosts), ts.report.Hosts)
	}
	r := ts.report
	t.Logf("payload %d B, %d data + %d repair packets, %d rounds, %v", r.PayloadBytes, r.DataPackets, r.RepairPackets, r.Rounds, r.Duration)
	if r.RepairPackets == 0 {
		t.Errorf("no repair packets at 5%% loss: the repair path was not exercised")
	}
}

// TestTransferSpool: with room in memory for two chunks' symbols only,
// chunks waiting for repair go to the spool file and come back from it:
// the images are whole all the same. (With the default budget nothing is
// spooled when no symbol is lost.)
func TestTransferSpool(t *testing.T) {
	clean := newTestSession(t, nil)
	clean.send.Hosts = []string{"c"}
	res, errs := clean.run(context.Background(), clean.send.Hosts, nil)
	if errs["c"] != nil || res["c"].Spilled != 0 {
		t.Fatalf("lossless session: %v, %d chunks spooled, want none", errs["c"], res["c"].Spilled)
	}
	defer func(b int) { memBudget = b }(memBudget)
	memBudget = 2 * testChunk
	ts := newTestSession(t, lossy(0.05, 4))
	hosts := []string{"a", "b"}
	ts.send.Hosts = hosts
	res, errs = ts.run(context.Background(), hosts, nil)
	spilled := 0
	for _, h := range hosts {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
		spilled += res[h].Spilled
	}
	if spilled == 0 {
		t.Error("no chunk went to the spool: the spool path was not exercised")
	}
}

// TestTransferAutoFEC: with AutoFEC and 5% loss, the sender probes the
// hosts' loss during the first pass and sends proactive parity sized from
// it; with no loss it sends none.
func TestTransferAutoFEC(t *testing.T) {
	for _, tc := range []struct {
		loss      float64
		parity    bool
		minReport int
	}{{0, false, 0}, {0.05, true, 10}} {
		ts := newTestSession(t, lossy(tc.loss, 5))
		ts.send.FECOverhead = AutoFEC
		ts.send.Rate = 10e6 // a first pass long enough for probes to come back
		hosts := []string{"a", "b", "c"}
		ts.send.Hosts = hosts
		ts.runVerified(hosts, nil)
		r := ts.report
		t.Logf("loss %v: %d probes, loss reported %d‰, %d proactive of %d repair packets, %d rounds",
			tc.loss, r.Probes, r.LossPermille, r.Proactive, r.RepairPackets, r.Rounds)
		if r.Probes == 0 {
			t.Errorf("loss %v: no probes sent", tc.loss)
		}
		if (r.Proactive > 0) != tc.parity || r.LossPermille < tc.minReport {
			t.Errorf("loss %v: %d proactive parity packets, loss %d‰; want parity %v, loss >= %d‰", tc.loss, r.Proactive, r.LossPermille, tc.parity, tc.minReport)
		}
	}
}

func TestTransferProactiveParity(t *testing.T) {
	ts := newTestSession(t, lossy(0.02, 2))
	ts.send.FECOverhead = 10
	hosts := []string{"a", "b"}
	ts.send.Hosts = hosts
	ts.runVerified(hosts, nil)
	// lossless, so every parity symbol on the wire is proactive
	clean := newTestSession(t, nil)
	clean.send.FECOverhead, clean.send.Hosts = 10, hosts
	if _, errs := clean.run(context.Background(), hosts, nil); errs["a"] != nil || errs["b"] != nil {
		t.Fatalf("lossless: %v", errs)
	}
	if clean.report.RepairPackets == 0 {
		t.Error("lossless session with --fec-overhead 10 sent no parity: proactive parity did not run")
	}
}

// A host that registers and then never answers is dropped and reported;
// a listed host that never shows up is reported missing; the others
// finish. The silent host's receiver finds its sender gone and discards
// its partial file.
func TestSilentAndMissingHosts(t *testing.T) {
	muted := false // the host "crashes" once the sender has acknowledged it
	drop := func(from, to string, b []byte) bool {
		if muted && (from == "mute" || to == "mute") {
			return true
		}
		if to == "mute" && len(b) > 5 && wire.Type(b[5]) == wire.TypeRegister {
			muted = true
		}
		return false
	}
	ts := newTestSession(t, drop)
	ts.send.Hosts = []string{"ok1", "ok2", "mute", "absent"}
	ts.send.Wait = time.Second
	res, errs := ts.run(context.Background(), []string{"ok1", "ok2", "mute"}, func(h string, o *ReceiveOptions) {
		o.SenderTimeout = 3 * time.Second
	})
	for _, h := range []string{"ok1", "ok2"} {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
	}
	if !errors.Is(errs["mute"], ErrSenderGone) || res["mute"] != nil {
		t.Errorf("mute: got %v, want %v", errs["mute"], ErrSenderGone)
	}
	matches, _ := filepath.Glob(filepath.Join(ts.dir, "mute.img*"))
	if len(matches) != 0 {
		t.Errorf("mute: partial files left: %v", matches)
	}
	want := map[string]HostState{"ok1": HostComplete, "ok2": HostComplete, "mute": HostDropped, "absent": HostMissing}
	for _, h := range ts.report.Hosts {
		if h.State != want[h.ID] {
			t.Errorf("report: %s is %v (%s), want %v", h.ID, h.State, h.Reason, want[h.ID])
		}
		if h.ID == "mute" && !strings.Contains(h.Reason, "silent") {
			t.Errorf("report: mute dropped for %q, want a reason naming silence", h.Reason)
		}
	}
}

// A corrupted DATA symbol makes a chunk fail its hash; the receiver asks
// for the chunk again and still ends with the right image.
func TestCorruptChunkAskedAgain(t *testing.T) {
	var once sync.Once
	drop := func(from, to string, b []byte) bool {
		if to == "victim" && len(b) > wire.HeaderLen+wire.SymbolHeaderLen && wire.Type(b[5]) == wire.TypeData {
			once.Do(func() { b[len(b)-1] ^= 0xff; b[wire.HeaderLen+wire.SymbolHeaderLen] ^= 0xff })
		}
		return false
	}
	ts := newTestSession(t, drop)
	ts.send.Hosts = []string{"victim"}
	res, errs := ts.run(context.Background(), ts.send.Hosts, nil)
	if errs["victim"] != nil {
		t.Fatal(errs["victim"])
	}
	ts.checkImage("victim")
	if res["victim"].BadChunks != 1 {
		t.Errorf("bad chunks %d, want 1", res["victim"].BadChunks)
	}
}

// Garbage, foreign sessions and truncated packets on the group and at the
// sender neither crash nor stall the session.
func TestHostileTraffic(t *testing.T) {
	ts := newTestSession(t, lossy(0.01, 3))
	ts.send.Hosts = []string{"h1", "h2"}
	ts.send.Wait = 15 * time.Second // receivers may first try (and refuse) forged sessions
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	evil := ts.net.Conn("evil", true)
	go func() {
		r := rand.New(rand.NewPCG(9, 9))
		var valid [][]byte
		for i, m := range samples() {
			valid = append(valid, encodeSample(t, uint32(i), m))
		}
		for ctx.Err() == nil {
			v := valid[r.IntN(len(valid))]
			junk := make([]byte, r.IntN(MaxPacket))
			for i := range junk {
				junk[i] = byte(r.Uint32())
			}
			foreign := bytes.Clone(v)
			foreign[8] ^= 0x40 // another session
			ours := bytes.Clone(v)
			copy(ours[8:12], []byte{0, 0, 0x5e, 0x55}) // our session, from the wrong host
			for _, p := range [][]byte{junk, v[:r.IntN(len(v))], foreign, ours} {
				evil.WriteTo(p, memnet.Group)
				evil.WriteTo(p, memnet.Addr("sender"))
			}
			time.Sleep(time.Millisecond)
		}
	}()
	res, errs := ts.run(ctx, ts.send.Hosts, nil)
	for _, h := range ts.send.Hosts {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
		if res[h].Ignored == 0 {
			t.Errorf("%s ignored no packets: the hostile traffic did not reach it", h)
		}
	}
	if ts.report.Ignored == 0 {
		t.Errorf("sender ignored no packets: the hostile traffic did not reach it")
	}
}

func TestUntrustedManifestRefused(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Wait = 500 * time.Millisecond
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{5}, ed25519.SeedSize)).Public().(ed25519.PublicKey)
	res, errs := ts.runAllowSendError([]string{"h"}, func(_ string, o *ReceiveOptions) {
		o.Trusted = []ed25519.PublicKey{other}
	})
	if !errors.Is(errs["h"], ErrUntrusted) || res["h"] != nil {
		t.Errorf("got %v, want %v", errs["h"], ErrUntrusted)
	}
	if _, err := os.Stat(filepath.Join(ts.dir, "h.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused image exists: %v", err)
	}
}

// runAllowSendError is run for sessions expected to fail on the sender.
func (ts *testSession) runAllowSendError(hosts []string, recv func(string, *ReceiveOptions)) (map[string]*Result, map[string]error) {
	ts.usePack()
	sconn := ts.net.Conn("sender", false)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { _, err := Send(ctx, sconn, ts.send); done <- err }()
	res, errs := map[string]*Result{}, map[string]error{}
	for _, h := range hosts {
		o := ReceiveOptions{HostID: h, HostKey: testHostKey(h), Out: filepath.Join(ts.dir, h+".img"), Trusted: []ed25519.PublicKey{ts.pub},
			SenderTimeout: 2 * time.Second, AnnounceTimeout: 2 * time.Second}
		recv(h, &o)
		res[h], errs[h] = Receive(ctx, ts.net.Conn(h, true), o)
	}
	<-done
	return res, errs
}

// A receiver that starts after the data has gone out gets the chunks it
// lacks, and the sender waits for it.
func TestLateJoiner(t *testing.T) {
	var mu sync.Mutex
	dataSeen := 0
	started := make(chan struct{})
	drop := func(from, to string, b []byte) bool {
		if to == "early" && len(b) > 5 && wire.Type(b[5]) == wire.TypeData {
			mu.Lock()
			if dataSeen++; dataSeen == 200 {
				close(started)
			}
			mu.Unlock()
		}
		return false
	}
	ts := newTestSession(t, drop)
	ts.send.MinHosts = 1
	ts.send.Rate = 20e6
	ts.runLate([]string{"early", "late"}, started, nil)
	if done, all := ts.report.Completed(); done != 2 || all != 2 {
		t.Errorf("report: %d of %d complete: %+v", done, all, ts.report.Hosts)
	}
}

// A partial image left by a killed receiver is resumed: chunks it holds
// are verified and not asked for again.
func TestResumePartial(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts = []string{"h"}
	src, _ := os.ReadFile(ts.img)
	partial := make([]byte, len(src))
	copy(partial, src[:5*testChunk]) // chunks 0..4: 0,1,3,4 are non-zero
	os.WriteFile(filepath.Join(ts.dir, "h.img."+ts.m.ID().String()+".partial"), partial, 0o644)
	res, errs := ts.run(context.Background(), ts.send.Hosts, nil)
	if errs["h"] != nil {
		t.Fatal(errs["h"])
	}
	ts.checkImage("h")
	if res["h"].Resumed != 4 {
		t.Errorf("resumed %d chunks, want 4", res["h"].Resumed)
	}
	if ts.report.ChunksReused != 4 {
		t.Errorf("sender left %d chunks out of the first pass, want the 4 resumed ones (not asked for again)", ts.report.ChunksReused)
	}
}

// A receiver whose Accept refuses the release does not join; it reports
// the refusal once its announce timeout passes.
func TestAcceptRefuses(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Wait = 500 * time.Millisecond
	res, errs := ts.runAllowSendError([]string{"h"}, func(_ string, o *ReceiveOptions) {
		o.Accept = func(m *image.Manifest) error { return fmt.Errorf("already have %s", m.ID()) }
	})
	if !errors.Is(errs["h"], ErrUntrusted) || !strings.Contains(fmt.Sprint(errs["h"]), "already have") || res["h"] != nil {
		t.Errorf("got %v, want a refusal naming Accept's reason", errs["h"])
	}
}

// A forged ANNOUNCE (unsigned, or signed by a key it does not name) and
// a forged ABORT are not even taken as a candidate: the receiver joins the
// real session afterwards.
func TestForgedAbortBeforeJoin(t *testing.T) {
	ts := newTestSession(t, nil)
	ts.send.Hosts = []string{"h"}
	ts.usePack()
	var mu sync.Mutex
	var tried []string
	o := ReceiveOptions{HostID: "h", HostKey: testHostKey("h"), Out: filepath.Join(ts.dir, "h.img"), Trusted: []ed25519.PublicKey{ts.pub},
		SenderTimeout: 5 * time.Second, AnnounceTimeout: 15 * time.Second, Logger: slog.New(logline.New(slog.LevelDebug, func(_ slog.Level, msg string) {
			if strings.HasPrefix(msg, "multicast: trying session session=01020304") {
				mu.Lock()
				tried = append(tried, msg)
				mu.Unlock()
			}
		}))}
	rconn, evil := ts.net.Conn("h", true), ts.net.Conn("evil", true)
	ctx := context.Background()
	done := make(chan error, 1)
	go func() { _, err := Receive(ctx, rconn, o); done <- err }()
	a := *samples()[0].(*wire.Announce)
	a.SignedAt, a.ReleaseKey = time.Now().UnixMilli(), pub32(ts.pub)
	forgedSig := encodeSample(t, 3, &a)
	forgedSig[7] = 1 // claims a signature: 64 bytes of zeros
	forgedSig = append(forgedSig, make([]byte, 64)...)
	ann, abort := encodeSample(t, 1, &a), encodeSample(t, 2, &wire.Abort{Reason: "forged"})
	for range 50 {
		evil.WriteTo(ann, memnet.Group)
		evil.WriteTo(forgedSig, memnet.Group)
		evil.WriteTo(abort, memnet.Group)
		select {
		case err := <-done:
			t.Fatalf("receiver gave up on a forged abort: %v", err)
		case <-time.After(5 * time.Millisecond): // send them again
		}
	}
	mu.Lock()
	if len(tried) > 0 {
		t.Errorf("receiver took a forged announce as a candidate: %q", tried)
	}
	mu.Unlock()
	rep, err := Send(ctx, ts.net.Conn("sender", false), ts.send)
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	ts.checkImage("h")
	if d, all := rep.Completed(); d != 1 || all != 1 {
		t.Errorf("report: %d of %d complete", d, all)
	}
}

// advisingPack is a pack that records which frames were advised before
// they were read.
type advisingPack struct {
	*image.Pack
	mu                 sync.Mutex
	advised            map[int]bool
	reads, unannounced int
}

func (p *advisingPack) WillNeed(i int, delta bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.advised[i] = true
	p.Pack.WillNeed(i, delta)
}

func (p *advisingPack) Plain(i int, buf []byte) ([]byte, error) {
	p.mu.Lock()
	p.reads++
	if !p.advised[i] {
		p.unannounced++
	}
	p.mu.Unlock()
	return p.Pack.Plain(i, buf)
}

// TestTransferReadsAhead: the first pass advises the pack of the frames
// it sends next, so every read but the first finds its frame asked for.
func TestTransferReadsAhead(t *testing.T) {
	ts := newTestSession(t, nil)
	p := &advisingPack{Pack: openPack(t, ts.img, ts.m, ""), advised: map[int]bool{}}
	ts.send.Pack = p
	ts.send.Hosts = []string{"a"}
	_, errs := ts.run(context.Background(), ts.send.Hosts, nil)
	if errs["a"] != nil {
		t.Fatal(errs["a"])
	}
	ts.checkImage("a")
	if p.reads < 3 || p.unannounced > 1 {
		t.Errorf("%d frames read, %d of them not advised before: want every read but the first advised", p.reads, p.unannounced)
	}
}

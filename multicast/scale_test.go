package multicast

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/memnet"
)

// burstyLoss drops each delivery independently with probability p, and
// besides puts each receiver in a bad state (every packet lost) with
// probability enter per delivery, left with probability leave: bursts of
// 1/leave packets on average (a Gilbert-Elliott channel). Called with the
// network's lock held.
func burstyLoss(p, enter, leave float64, seed uint64) func(from, to string, b []byte) bool {
	r := rand.New(rand.NewPCG(seed, seed^0x5ca1e))
	bad := map[string]bool{}
	return func(from, to string, _ []byte) bool {
		if from != "sender" {
			return r.Float64() < p // feedback is lost too
		}
		switch {
		case bad[to] && r.Float64() < leave:
			bad[to] = false
		case !bad[to] && r.Float64() < enter:
			bad[to] = true
		}
		return bad[to] || r.Float64() < p
	}
}

// BenchmarkScale runs the real sender and receiver session code with
// LOOPCAST_SCALE_HOSTS receivers (default 2,000) in this process over the
// in-memory network, 1% independent loss and bursts (0.01% of deliveries
// start a burst of 20 packets on average), and reports what the issue's
// targets are about: NACK packets at the sender per round (the most in one
// round or probe), repair overhead (REPAIR symbols per DATA symbol), rounds,
// and the session's time against the payload at the rate. The receivers
// decode and verify for real, into files under the test's temp dir.
// LOOPCAST_SCALE_MIB sizes the image (2), LOOPCAST_SCALE_CHUNK its chunks
// (65536 bytes), LOOPCAST_SCALE_SYMBOL the symbols (0: the default, 1,408
// bytes), LOOPCAST_SCALE_BLOCK the FEC block (0: the default for the
// group's size). A real chunk is ~250 symbols (1 MiB compressed 3:1) and
// 2,000 receivers of 1 MiB chunks do not fit this machine's memory: 128
// KiB chunks of 512-byte symbols give blocks of the same 256 symbols.
//
//	go test ./multicast -run '^$' -bench Scale -benchtime 1x
func BenchmarkScale(b *testing.B) {
	hosts := 2000
	if v := os.Getenv("LOOPCAST_SCALE_HOSTS"); v != "" {
		var err error
		if hosts, err = strconv.Atoi(v); err != nil || hosts < 1 {
			b.Fatalf("LOOPCAST_SCALE_HOSTS=%q", v)
		}
	}
	bursts := 0.0001 // per delivery: the chance a burst of 20 losses starts
	if v := os.Getenv("LOOPCAST_SCALE_BURSTS"); v != "" {
		var err error
		if bursts, err = strconv.ParseFloat(v, 64); err != nil || bursts < 0 {
			b.Fatalf("LOOPCAST_SCALE_BURSTS=%q", v)
		}
	}
	if os.Getenv("LOOPCAST_SCALE_LOUD") != "" { // every host answers every round, as a small group does
		defer func(q int) { quietHosts = q }(quietHosts)
		quietHosts = math.MaxInt
	}
	chunk, mib, block, symbol := testChunk, 2, 0, 0
	for name, v := range map[string]*int{"LOOPCAST_SCALE_CHUNK": &chunk, "LOOPCAST_SCALE_MIB": &mib, "LOOPCAST_SCALE_BLOCK": &block,
		"LOOPCAST_SCALE_SYMBOL": &symbol} {
		if e := os.Getenv(name); e != "" {
			var err error
			if *v, err = strconv.Atoi(e); err != nil || *v < 0 {
				b.Fatalf("%s=%q", name, e)
			}
		}
	}
	img, m, pub := scaleImage(b, mib<<20, chunk)
	pack := openPack(b, img, m, "")
	// bit/s: slow enough for this process to deliver every packet to every
	// receiver and let each handle it (the in-memory network copies each
	// packet once per receiver); faster, the simulation itself drops
	// packets, far beyond the loss it models
	rate := 1e6
	if v := os.Getenv("LOOPCAST_SCALE_RATE"); v != "" {
		var err error
		if rate, err = strconv.ParseFloat(v, 64); err != nil || rate <= 0 {
			b.Fatalf("LOOPCAST_SCALE_RATE=%q", v)
		}
	}
	for range b.N {
		net := memnet.New(burstyLoss(0.01, bursts, 0.05, 42))
		ids := make([]string, hosts)
		for i := range ids {
			ids[i] = fmt.Sprintf("h%04d", i)
		}
		opts := SendOptions{Key: testReleaseKey(), Group: memnet.Group, Session: 0x5ca1e, Manifest: m, Pack: pack, Rate: int64(rate),
			Hosts: ids, Wait: 60 * time.Second, HostTimeout: 30 * time.Second, FECOverhead: AutoFEC, BlockSymbols: block, SymbolSize: symbol}
		if path := os.Getenv("LOOPCAST_SCALE_LOG"); path != "" { // the sender's log, to a file
			f, err := os.Create(path)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			opts.Logger = slog.New(slog.NewTextHandler(f, &slog.HandlerOptions{Level: slog.LevelDebug}))
		}
		dir := b.TempDir()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute) // 2,000 receivers on 2 cores are slow
		var g errgroup.Group
		var mu sync.Mutex
		failed := 0
		keys := make([]ed25519.PrivateKey, hosts)
		for i, h := range ids {
			keys[i] = testHostKey(h)
		}
		for i, h := range ids {
			conn := net.Conn(h, true)
			o := ReceiveOptions{HostID: h, HostKey: keys[i], Out: filepath.Join(dir, h+".img"), Trusted: []ed25519.PublicKey{pub},
				SenderTimeout: 60 * time.Second, AnnounceTimeout: 60 * time.Second}
			g.Go(func() error {
				if _, err := Receive(ctx, conn, o); err != nil {
					mu.Lock()
					if failed++; failed <= 3 {
						b.Logf("%s: %v", h, err)
					}
					mu.Unlock()
				}
				return nil
			})
		}
		sconn := net.Conn("sender", false)
		rep, err := Send(ctx, sconn, opts)
		g.Wait()
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		done, all := rep.Completed()
		if done != all || failed > 0 {
			why := map[string]int{}
			for _, hr := range rep.Hosts {
				if hr.State != HostComplete {
					why[hr.State.String()+": "+hr.Reason]++
				}
			}
			b.Logf("not complete: %v", why)
			b.Fatalf("%d of %d hosts complete, %d receivers failed", done, all, failed)
		}
		transfer := rep.Duration - rep.Registration
		ideal := time.Duration(float64(rep.PayloadBytes) * 8 / rate * float64(time.Second))
		perRound := float64(rep.Feedback) / float64(max(1, rep.Rounds+rep.Probes))
		b.ReportMetric(float64(rep.FeedbackMax), "feedback-max/round")
		b.ReportMetric(perRound, "feedback/round")
		b.ReportMetric(100*float64(rep.RepairPackets)/float64(rep.DataPackets), "repair-%")
		b.ReportMetric(float64(rep.Rounds), "rounds")
		b.ReportMetric(transfer.Seconds()/ideal.Seconds(), "time/ideal")
		b.Logf("%d hosts: %d feedback packets in %d rounds and %d probes (most in one: %d); %d data, %d repair (%d proactive) symbols; transfer %v, ideal %v; worst loss %d‰",
			hosts, rep.Feedback, rep.Rounds, rep.Probes, rep.FeedbackMax, rep.DataPackets, rep.RepairPackets, rep.Proactive, transfer.Round(time.Millisecond), ideal.Round(time.Millisecond), rep.LossPermille)
	}
}

// scaleImage is size bytes of incompressible chunks of chunk bytes,
// signed; 2 MiB (about 1,500 symbols) is enough blocks for loss to spread
// over, small enough for thousands of receivers in one process.
func scaleImage(tb testing.TB, size, chunk int) (path string, m *image.Manifest, pub ed25519.PublicKey) {
	r := rand.New(rand.NewPCG(9, 9))
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	path = filepath.Join(tb.TempDir(), "scale.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), path, uint32(chunk))
	if err != nil {
		tb.Fatal(err)
	}
	priv := testReleaseKey()
	m.Label = "scale"
	m.Sign(priv)
	return path, m, priv.Public().(ed25519.PublicKey)
}

package multicast

import (
	"bytes"
	"context"
	"encoding/binary"
	"math/rand/v2"

	"crypto/ed25519"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"

	"github.com/loopcast/loopcast/internal/testenv"
)

// TestUDPLoopback runs a session over real sockets on the loopback
// interface only: one sender, one receiver, batch writes.
func TestUDPLoopback(t *testing.T) {
	img, m, pub := testImage(t)
	group := &net.UDPAddr{IP: net.IPv4(239, 255, 77, 1), Port: 47011}
	rc, err := ListenGroup(group, "lo")
	if err != nil {
		testenv.Missing(t, "multicast on lo: %v", err)
	}
	defer rc.Close()
	sc, err := DialGroup(group, "lo", DefaultTTL)
	if err != nil {
		testenv.Missing(t, "multicast on lo: %v", err)
	}
	defer sc.Close()
	pack := openPack(t, img, m, "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out := filepath.Join(t.TempDir(), "out.img")
	errc := make(chan error, 1)
	go func() {
		_, err := Receive(ctx, rc, ReceiveOptions{HostID: "lo1", HostKey: testHostKey("lo1"), Out: out, Trusted: []ed25519.PublicKey{pub}, SenderTimeout: 10 * time.Second})
		errc <- err
	}()
	rep, err := Send(ctx, sc, SendOptions{Key: testReleaseKey(), Group: group, Manifest: m, Pack: pack, Rate: 200e6, Hosts: []string{"lo1"}, Wait: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("receive: %v", err)
	}
	if done, all := rep.Completed(); done != 1 || all != 1 {
		t.Errorf("report %+v", rep.Hosts)
	}
	ts := &testSession{t: t, m: m, dir: filepath.Dir(out)}
	ts.checkImage("out")
}

// randomImage writes size incompressible bytes in 1 MiB chunks and signs
// its manifest.
func randomImage(tb testing.TB, size int) (string, *image.Manifest, ed25519.PublicKey) {
	tb.Helper()
	b := make([]byte, size)
	r := rand.New(rand.NewPCG(11, 11))
	for i := 0; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], r.Uint64())
	}
	path := filepath.Join(tb.TempDir(), "random.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		tb.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), path, image.ChunkSize)
	if err != nil {
		tb.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	m.Sign(priv)
	return path, m, priv.Public().(ed25519.PublicKey)
}

// BenchmarkUDPLoopback sends 64 MiB of incompressible data over real
// sockets on lo to one receiver, unpaced, and reports the goodput.
// BenchmarkUDPLoopback sends 64 MiB over the loopback interface to one
// receiver, in the clear and sealed (Encrypt): the difference is what
// encryption costs end to end.
func BenchmarkUDPLoopback(b *testing.B) {
	const size = 64 << 20
	img, m, pub := randomImage(b, size)
	pack := openPack(b, img, m, "")
	group := &net.UDPAddr{IP: net.IPv4(239, 255, 77, 2), Port: 47012}
	for _, enc := range []bool{false, true} {
		b.Run(map[bool]string{false: "plain", true: "encrypted"}[enc], func(b *testing.B) {
			for b.Loop() {
				rc, err := ListenGroup(group, "lo")
				if err != nil {
					b.Skipf("multicast on lo: %v", err)
				}
				sc, err := DialGroup(group, "lo", DefaultTTL)
				if err != nil {
					b.Fatal(err)
				}
				out := filepath.Join(b.TempDir(), "out.img")
				errc := make(chan error, 1)
				go func() {
					_, err := Receive(context.Background(), rc, ReceiveOptions{HostID: "lo1", HostKey: testHostKey("lo1"), Out: out, Trusted: []ed25519.PublicKey{pub}})
					errc <- err
				}()
				rep, err := Send(context.Background(), sc, SendOptions{Key: testReleaseKey(), Group: group, Manifest: m, Pack: pack, Rate: 2e9, Hosts: []string{"lo1"}, Encrypt: enc})
				if err == nil {
					err = <-errc
				}
				rc.Close()
				sc.Close()
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(size)/rep.Duration.Seconds()/1e6, "MB/s")
				b.ReportMetric(float64(rep.RepairPackets), "repair-pkts")
				b.ReportMetric(float64(rep.Rounds), "rounds")
			}
		})
	}
}

package peer

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

// held makes a signed image of n chunks (every 7th all zero) in dir.
func held(t *testing.T, dir string, n int, key ed25519.PrivateKey) (string, *image.Manifest, []byte) {
	t.Helper()
	const cs = 64 << 10
	b := make([]byte, n*cs-100) // a short last chunk
	rnd := rand.New(rand.NewPCG(1, 2))
	for i := range b {
		if (i/cs)%7 != 3 {
			b[i] = byte(rnd.Uint32())
		}
	}
	path := filepath.Join(dir, "src.img")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), path, cs)
	if err != nil {
		t.Fatal(err)
	}
	m.Sign(key)
	raw, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return path, m, raw
}

func serve(t *testing.T, src func(image.ID) (Held, bool)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Source: src}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Serve(ctx, ln)
	return s, ln.Addr().String()
}

func TestFetchFromPeers(t *testing.T) {
	dir := t.TempDir()
	pub, key, _ := ed25519.GenerateKey(nil)
	img, m, raw := held(t, dir, 300, key)
	id := m.ID()
	good := func(r image.ID) (Held, bool) { return Held{Image: img, Manifest: m, Raw: raw}, r == id }
	a, addrA := serve(t, good)
	b, addrB := serve(t, good)
	// a peer that holds nothing, and one that serves corrupt chunks
	_, addrNone := serve(t, func(image.ID) (Held, bool) { return Held{}, false })
	bad := filepath.Join(dir, "bad.img")
	data, _ := os.ReadFile(img)
	corrupt := bytes.Clone(data)
	for i := 0; i < len(corrupt); i += 64 << 10 {
		corrupt[i+10] ^= 0xff
	}
	os.WriteFile(bad, corrupt, 0o644)
	_, addrBad := serve(t, func(r image.ID) (Held, bool) { return Held{Image: bad, Manifest: m, Raw: raw}, r == id })

	// a local image holding the first 50 chunks
	local := filepath.Join(dir, "local.img")
	os.WriteFile(local, data[:50*(64<<10)], 0o644)
	lookup := func(h [32]byte) (string, int64, bool) {
		for i := range 50 {
			if m.Chunks[i].Hash == h {
				return local, int64(i) * (64 << 10), true
			}
		}
		return "", 0, false
	}
	out := filepath.Join(dir, "out.img")
	got, st, err := Fetch(context.Background(), FetchOptions{Release: id, Digest: sha256.Sum256(raw),
		Trusted: []ed25519.PublicKey{pub}, Peers: []string{addrNone, addrBad, addrA, addrB}, Out: out, Local: lookup,
		Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), Range: 4})
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != id {
		t.Errorf("fetched %s, want %s", got.ID(), id)
	}
	if b, _ := os.ReadFile(out); !bytes.Equal(b, data) {
		t.Fatal("fetched image differs from the source")
	}
	if st.Local == 0 {
		t.Error("no chunk taken from the local image")
	}
	if st.FromPeers[addrBad] != 0 || st.FromPeers[addrNone] != 0 {
		t.Errorf("bytes counted from a bad or empty peer: %v", st.FromPeers)
	}
	if served := a.Served() + b.Served(); served < st.PeerBytes() {
		t.Errorf("peers served %d bytes, fetch counted %d", served, st.PeerBytes())
	}
	if a.Served() == 0 || b.Served() == 0 {
		t.Errorf("load not spread: peer A served %d bytes, B %d", a.Served(), b.Served())
	}
}

func TestFetchRefusesWrongManifest(t *testing.T) {
	dir := t.TempDir()
	pub, key, _ := ed25519.GenerateKey(nil)
	_, other, _ := ed25519.GenerateKey(nil)
	img, m, raw := held(t, dir, 10, key)
	id := m.ID()
	_, addr := serve(t, func(r image.ID) (Held, bool) { return Held{Image: img, Manifest: m, Raw: raw}, true })
	out := filepath.Join(dir, "out.img")
	for name, o := range map[string]FetchOptions{
		"digest not the pointer's": {Release: id, Digest: [32]byte{1}, Trusted: []ed25519.PublicKey{pub}},
		"untrusted key":            {Release: id, Digest: sha256.Sum256(raw), Trusted: []ed25519.PublicKey{other.Public().(ed25519.PublicKey)}},
		"other release":            {Release: testid.Of("other"), Digest: sha256.Sum256(raw), Trusted: []ed25519.PublicKey{pub}},
	} {
		o.Peers, o.Out = []string{addr}, out
		if _, _, err := Fetch(context.Background(), o); err == nil || !strings.Contains(err.Error(), "no peer gave the manifest") {
			t.Errorf("%s: err %v", name, err)
		}
		if _, err := os.Stat(out); err == nil {
			t.Errorf("%s: left %s behind", name, out)
		}
	}
}

// TestFetchDeltas: a host holding the base release gets changed chunks as
// deltas against it, far smaller than the chunks; the image is exact.
func TestFetchDeltas(t *testing.T) {
	dir := t.TempDir()
	pub, key, _ := ed25519.GenerateKey(nil)
	baseImg, baseM, baseRaw := held(t, dir, 40, key)
	data, _ := os.ReadFile(baseImg)
	// the new release: a few bytes changed in 10 chunks
	nd := bytes.Clone(data)
	for c := 0; c < 40; c += 4 {
		copy(nd[c*(64<<10)+100:], "hotfix: check the token before use")
	}
	newImg := filepath.Join(dir, "new.img")
	os.WriteFile(newImg, nd, 0o644)
	newM, err := image.HashFile(context.Background(), newImg, 64<<10)
	if err != nil {
		t.Fatal(err)
	}
	newM.Sign(key)
	newRaw, _ := newM.AppendBinary(nil)
	src := map[image.ID]Held{
		baseM.ID(): {Image: baseImg, Manifest: baseM, Raw: baseRaw},
		newM.ID():  {Image: newImg, Manifest: newM, Raw: newRaw},
	}
	_, addr := serve(t, func(r image.ID) (Held, bool) { h, ok := src[r]; return h, ok })
	// the host holds the base: its unchanged chunks are copied locally
	lookup := func(h [32]byte) (string, int64, bool) {
		for i, c := range baseM.Chunks {
			if c.Hash == h {
				return baseImg, int64(i) * (64 << 10), true
			}
		}
		return "", 0, false
	}
	fetch := func(base image.ID) Stats {
		out := filepath.Join(dir, "out-"+base.String()+".img")
		o := FetchOptions{Release: newM.ID(), Trusted: []ed25519.PublicKey{pub}, Peers: []string{addr}, Out: out, Local: lookup}
		if !base.IsZero() {
			o.Base, o.BaseImage = base, baseImg
		}
		_, st, err := Fetch(context.Background(), o)
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(out); !bytes.Equal(b, nd) {
			t.Fatalf("base %q: fetched image differs", base)
		}
		return st
	}
	raw, withBase := fetch(image.ID{}), fetch(baseM.ID())
	changed := int64(0)
	for i := range newM.Chunks {
		if newM.Chunks[i] != baseM.Chunks[i] && !newM.Chunks[i].Zero {
			_, n := newM.ChunkRange(i)
			changed += int64(n)
		}
	}
	t.Logf("changed chunks %d bytes; over the wire: %d raw, %d as deltas", changed, raw.PeerBytes(), withBase.PeerBytes())
	if raw.PeerBytes() < changed {
		t.Errorf("without a base %d bytes crossed, less than the %d changed", raw.PeerBytes(), changed)
	}
	if withBase.PeerBytes()*5 > changed {
		t.Errorf("with the base %d bytes crossed for %d changed: deltas not used", withBase.PeerBytes(), changed)
	}
}

// TestRequestReleaseIDs: a request names a release by its id's 16 hex
// digits (a base by the empty name when none), as before ids were typed;
// a request naming anything else as a release does not parse.
func TestRequestReleaseIDs(t *testing.T) {
	id, base := testid.Parse("0123456789abcdef"), testid.Parse("fedcba9876543210")
	want := "LCPR\x02\x02\x100123456789abcdef\x00\x00\x00\x05\x00\x00\x00\x07\x10fedcba9876543210"
	if got := string(appendRequest(nil, opChunks, id.String(), 5, 7, base)); got != want {
		t.Errorf("request %q, want %q", got, want)
	}
	if got := string(appendRequest(nil, opChunks, id.String(), 5, 7, image.ID{})); got != want[:len(want)-17]+"\x00" {
		t.Errorf("request without a base %q", got)
	}
	q, err := readRequest(bufio.NewReader(strings.NewReader(want)))
	if err != nil || q.release != id || q.base != base || q.first != 5 || q.count != 7 {
		t.Errorf("readRequest = %+v, %v", q, err)
	}
	for _, bad := range []string{
		"LCPR\x02\x01\x02v1",
		"LCPR\x02\x01\x100000000000000000",
		"LCPR\x02\x01\x100123456789ABCDEF",
		"LCPR\x02\x02\x100123456789abcdef\x00\x00\x00\x05\x00\x00\x00\x07\x09../../etc",
	} {
		if q, err := readRequest(bufio.NewReader(strings.NewReader(bad))); err == nil || !strings.Contains(err.Error(), "release") {
			t.Errorf("readRequest(%q) = %+v, %v; want an error naming the release", bad, q, err)
		}
	}
}

package image

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/loopcast/loopcast/internal/synth"
)

const testChunk = 1 << 20

// text returns n bytes of compressible, PHP-like text: words that repeat,
// names that do not.
func text(r *rand.Rand, n int) []byte {
	words := []string{"function ", "return ", "$this->", "array(", "public ", "static ", "if (", ") {\n", "}\n", "null", "=> ", ";\n"}
	var b []byte
	for len(b) < n {
		b = append(b, words[r.IntN(len(words))]...)
		if r.IntN(3) == 0 {
			b = fmt.Appendf(b, "$v%x ", r.Uint32())
		}
	}
	return b[:n]
}

// edit returns a copy of base with ins inserted at off, cut to n bytes:
// the bytes after the edit shift, as a file that grows in place does.
func edit(base []byte, off int, ins []byte, n int) []byte {
	out := append(append(append([]byte(nil), base[:off]...), ins...), base[off:]...)
	return out[:n]
}

func roundTrip(t *testing.T, raw, base []byte) []byte {
	t.Helper()
	e := NewDeltaEncoder()
	defer e.Close()
	f, err := e.Encode([]byte("prefix"), raw, base, testChunk)
	if err != nil {
		t.Fatal(err)
	}
	if string(f[:6]) != "prefix" {
		t.Fatalf("Encode did not append to dst")
	}
	f = f[6:]
	if len(f) == 0 {
		if !bytes.Equal(raw, base) {
			t.Fatal("no delta frame for a chunk that differs from its base")
		}
		return f
	}
	d, err := NewDeltaDecoder(testChunk)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	got, err := d.Decode(f, base, []byte("pre")) // appends, as Encode does
	if err != nil {
		t.Fatalf("Decode: %v", err)
	}
	if string(got[:3]) != "pre" || !bytes.Equal(got[3:], raw) {
		t.Fatalf("Decode gave %d bytes that are not the dst followed by the %d encoded", len(got), len(raw))
	}
	return f
}

// TestDeltaRoundTrip: every shape of chunk and base decodes to the chunk,
// and a small edit costs a small frame.
func TestDeltaRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	base := text(r, testChunk)
	small := edit(base, 300_000, []byte("// hotfix: check the token before use\n"), testChunk)
	cases := map[string][2][]byte{
		"equal":                {base, base},
		"one edit":             {small, base},
		"last chunk, shorter":  {small[:testChunk-5000], base[:testChunk-4000]},
		"base shorter":         {small, base[:testChunk/2+123]},
		"no base":              {small, nil},
		"all new":              {text(r, testChunk), base},
		"one byte":             {[]byte{7}, base},
		"whole blocks shorter": {base[:8*DeltaBlock], base},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			f := roundTrip(t, c[0], c[1])
			t.Logf("%d-byte chunk: %d-byte frame", len(c[0]), len(f))
		})
	}
	if f := roundTrip(t, small, base); len(f) > 2000 {
		t.Errorf("a 38-byte insertion costs a %d-byte frame, want at most 2000", len(f))
	}
}

// TestDeltaEncoderReuse: one encoder and decoder over many chunks with
// different bases give what fresh ones give (their dictionaries do not
// leak from one chunk into the next).
func TestDeltaEncoderReuse(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	e, d := NewDeltaEncoder(), must2(NewDeltaDecoder(testChunk))
	defer e.Close()
	defer d.Close()
	for i := range 20 {
		base := text(r, testChunk)
		raw := edit(base, r.IntN(testChunk), text(r, 1+r.IntN(9000)), testChunk-i*1000)
		f, err := e.Encode(nil, raw, base, testChunk)
		if err != nil {
			t.Fatal(err)
		}
		fresh := NewDeltaEncoder()
		want, _ := fresh.Encode(nil, raw, base, testChunk)
		fresh.Close()
		if !bytes.Equal(f, want) {
			t.Fatalf("chunk %d: a reused encoder made another frame than a fresh one", i)
		}
		got, err := d.Decode(f, base, nil)
		if err != nil || !bytes.Equal(got, raw) {
			t.Fatalf("chunk %d: reused decoder: %v", i, err)
		}
	}
}

func must2[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestDeltaRefusesBadFrames: frames that are not what they claim are
// refused with ErrDelta, never decoded into something else.
func TestDeltaRefusesBadFrames(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	base := text(r, testChunk)
	raw := edit(base, 500_000, []byte("changed"), testChunk)
	e := NewDeltaEncoder()
	defer e.Close()
	good, err := e.Encode(nil, raw, base, testChunk)
	if err != nil {
		t.Fatal(err)
	}
	d := must2(NewDeltaDecoder(testChunk))
	defer d.Close()
	mod := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	bad := map[string]struct {
		frame, base []byte
	}{
		"empty":               {nil, base},
		"zstd frame":          {mod(func(b []byte) []byte { copy(b, []byte{0x28, 0xb5, 0x2f, 0xfd}); return b }), base},
		"larger than a chunk": {mod(func(b []byte) []byte { b[4] = 0x10; return b }), base},
		"truncated map":       {good[:deltaHeader+3], base},
		"short base":          {good, base[:400_000]},
		"block map lies":      {mod(func(b []byte) []byte { b[deltaHeader] ^= 1; return b }), base},
		"truncated blocks":    {good[:len(good)-3], base},
		"garbage blocks":      {mod(func(b []byte) []byte { b[len(b)-5] ^= 0xff; b[len(b)-9] ^= 0xff; return b }), base},
	}
	for name, c := range bad {
		out, err := d.Decode(c.frame, c.base, nil)
		if err == nil && len(out) == len(raw) && name == "garbage blocks" {
			continue // frames carry no checksum: a flipped byte zstd cannot tell is the manifest's hash's to catch
		}
		if err == nil {
			t.Errorf("%s: decoded into %d bytes, not refused", name, len(out))
		} else if !errors.Is(err, ErrDelta) {
			t.Errorf("%s: %v, want ErrDelta", name, err)
		}
	}
}

// FuzzDeltaDecode: no frame makes the decoder panic or write more than a
// chunk.
func FuzzDeltaDecode(f *testing.F) {
	r := rand.New(rand.NewPCG(7, 8))
	base := text(r, 64<<10)
	e := NewDeltaEncoder()
	defer e.Close()
	good, _ := e.Encode(nil, edit(base, 9000, []byte("x"), len(base)), base, 64<<10)
	f.Add(good)
	f.Add([]byte("LCBD\x00\x00\x10\x00"))
	d := must2(NewDeltaDecoder(64 << 10))
	defer d.Close()
	f.Fuzz(func(t *testing.T, frame []byte) {
		out, err := d.Decode(frame, base, nil)
		if err == nil && len(out) > 64<<10 {
			t.Fatalf("%d bytes out of a 64 KiB chunk", len(out))
		}
	})
}

// BenchmarkDeltaEncode encodes the chunks a 200-file change set changes in
// a synthetic tree built on a base: what a hotfix build pays per changed
// chunk. LOOPCAST_BENCH_OLD and LOOPCAST_BENCH_NEW (two images built one on
// the other) measure those images' changed chunks instead.
func BenchmarkDeltaEncode(b *testing.B) {
	oldImg, newImg := benchImages(b)
	var pairs [][2][]byte
	for off := 0; off < len(newImg); off += testChunk {
		raw := newImg[off:min(off+testChunk, len(newImg))]
		base := oldImg[min(off, len(oldImg)):min(off+testChunk, len(oldImg))]
		if !bytes.Equal(raw, base) {
			pairs = append(pairs, [2][]byte{raw, base})
		}
	}
	e, d := NewDeltaEncoder(), must2(NewDeltaDecoder(testChunk))
	defer e.Close()
	defer d.Close()
	var frame, out []byte
	var total int
	for b.Loop() {
		total = 0
		for _, p := range pairs {
			var err error
			if frame, err = e.Encode(frame[:0], p[0], p[1], testChunk); err != nil {
				b.Fatal(err)
			}
			total += len(frame)
		}
	}
	for _, p := range pairs { // and they decode
		frame, _ = e.Encode(frame[:0], p[0], p[1], testChunk)
		if out, _ = d.Decode(frame, p[1], out[:0]); !bytes.Equal(out, p[0]) {
			b.Fatal("a frame does not decode to its chunk")
		}
	}
	b.ReportMetric(float64(len(pairs)), "chunks")
	b.ReportMetric(float64(total)/float64(len(pairs)), "B/chunk")
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*len(pairs)), "µs/chunk")
}

func benchImages(b *testing.B) (oldImg, newImg []byte) {
	if o, n := os.Getenv("LOOPCAST_BENCH_OLD"), os.Getenv("LOOPCAST_BENCH_NEW"); o != "" && n != "" {
		var err error
		if oldImg, err = os.ReadFile(o); err == nil {
			newImg, err = os.ReadFile(n)
		}
		if err != nil {
			b.Fatal(err)
		}
		return oldImg, newImg
	}
	src := filepath.Join(b.TempDir(), "tree")
	if _, err := synth.Generate(context.Background(), src, synth.Options{Seed: 3, Files: 3000, Bytes: 60 << 20}); err != nil {
		b.Fatal(err)
	}
	a, _ := buildOn(b, src, "")
	if _, err := synth.ApplyChanges(src, synth.ChangeSet{Seed: 9, Modify: 200, Add: 20, Delete: 20}); err != nil {
		b.Fatal(err)
	}
	c, _ := buildOn(b, src, a)
	oldImg, err := os.ReadFile(a)
	if err == nil {
		newImg, err = os.ReadFile(c)
	}
	if err != nil {
		b.Fatal(err)
	}
	return oldImg, newImg
}

package image

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"

	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/testenv"
)

// unpack returns chunk i of the image through its pack: the plain frame
// decompressed, or the delta frame decompressed against base's chunk i.
func unpack(t *testing.T, p *Pack, m *Manifest, i int, delta bool, base []byte) []byte {
	t.Helper()
	if !delta {
		fr, err := p.Plain(i, nil)
		must(t, err)
		zd, _ := zstd.NewReader(nil)
		defer zd.Close()
		b, err := zd.DecodeAll(fr, nil)
		must(t, err)
		return b
	}
	fr, ok, err := p.Delta(i, nil)
	if err != nil || !ok {
		t.Fatalf("chunk %d: no delta frame (%v)", i, err)
	}
	off, n := m.ChunkRange(i)
	dd, err := NewDeltaDecoder(m.ChunkSize)
	must(t, err)
	defer dd.Close()
	b, err := dd.Decode(fr, base[off:off+int64(n)], nil)
	must(t, err)
	return b
}

// checkPlain fails t unless every non-zero chunk's plain frame in p
// decompresses to img's chunk.
func checkPlain(t *testing.T, p *Pack, m *Manifest, img []byte) {
	t.Helper()
	for i, c := range m.Chunks {
		if c.Zero {
			continue
		}
		off, n := m.ChunkRange(i)
		if got := unpack(t, p, m, i, false, nil); string(got) != string(img[off:off+int64(n)]) {
			t.Fatalf("chunk %d: plain frame does not decompress to the chunk", i)
		}
	}
}

func readAll(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	must(t, err)
	return b
}

// TestPack: a build writes the pack of its image; every non-zero chunk's
// plain frame decompresses to the chunk. Built on a base, the chunks that
// did not change are neither hashed nor compressed again (their frames
// come from the base's pack), and each changed chunk also has a delta
// frame that decompresses against the base's chunk to the new chunk.
func TestPack(t *testing.T) {
	src := t.TempDir()
	deltaTree(t, src)
	a, ra := buildOn(t, src, "")
	if ra.Pack != a+PackSuffix || ra.Chunks.Same != 0 || ra.Chunks.Packed == 0 {
		t.Errorf("fresh build: pack %s, stats %+v; want %s, everything packed", ra.Pack, ra.Chunks, a+PackSuffix)
	}
	pa, err := OpenPack(ra.Pack, ra.Manifest)
	must(t, err)
	defer pa.Close()
	imgA := readAll(t, a)
	checkPlain(t, pa, ra.Manifest, imgA)
	if !pa.BaseID.IsZero() {
		t.Errorf("fresh pack has base %q", pa.BaseID)
	}

	changeSets[0].change(t, src) // modify two files
	b, rb := buildOn(t, src, a)
	pb, err := OpenPack(rb.Pack, rb.Manifest)
	must(t, err)
	defer pb.Close()
	if pb.BaseID != ra.Manifest.ID() {
		t.Errorf("pack base %q, want %s", pb.BaseID, ra.Manifest.ID())
	}
	imgB := readAll(t, b)
	changed := 0
	for i, c := range rb.Manifest.Chunks {
		if c.Zero {
			continue
		}
		off, n := rb.Manifest.ChunkRange(i)
		want := string(imgB[off : off+int64(n)])
		if got := unpack(t, pb, rb.Manifest, i, false, nil); string(got) != want {
			t.Fatalf("chunk %d: plain frame of the build on a base is wrong", i)
		}
		if c.Hash != ra.Manifest.Chunks[i].Hash {
			changed++
			if pb.HasDelta(i) && string(unpack(t, pb, rb.Manifest, i, true, imgA)) != want {
				t.Fatalf("chunk %d: delta frame does not decompress against the base to the chunk", i)
			}
		} else if pb.HasDelta(i) {
			t.Errorf("chunk %d is unchanged but has a delta frame", i)
		}
	}
	if changed == 0 || rb.Chunks.Packed != changed || rb.Chunks.Same == 0 || rb.Chunks.Deltas == 0 {
		t.Errorf("build on a base: %d chunks changed, stats %+v; want exactly those packed, the rest same, deltas", changed, rb.Chunks)
	}
	checkManifest(t, b, rb.Manifest)
}

// TestPackRefusals: a pack is opened only with its own manifest, and a
// corrupted frame or index is caught with an error naming the pack.
func TestPackRefusals(t *testing.T) {
	src := t.TempDir()
	deltaTree(t, src)
	a, ra := buildOn(t, src, "")
	rewrite(t, src, "index.php", func(p []byte) []byte { p[10] ^= 1; return p })
	dir := t.TempDir()
	_, rb := build(t, src, Options{Epoch: &deltaEpoch, HeadroomPct: DefaultHeadroomPct, Label: "other"})
	if _, err := OpenPack(ra.Pack, rb.Manifest); !errors.Is(err, ErrPack) || !strings.Contains(err.Error(), "not of") {
		t.Errorf("pack opened with another release's manifest: %v, want ErrPack", err)
	}
	p, err := OpenPack(ra.Pack, ra.Manifest)
	must(t, err)
	first := -1
	for i, c := range ra.Manifest.Chunks {
		if !c.Zero {
			first = i
			break
		}
	}
	off := p.entries[first].plain.off
	p.Close()
	f, err := os.OpenFile(a+PackSuffix, os.O_RDWR, 0)
	must(t, err)
	b := make([]byte, 1)
	f.ReadAt(b, off+3)
	b[0] ^= 0xff
	f.WriteAt(b, off+3)
	p, err = OpenPack(ra.Pack, ra.Manifest)
	must(t, err)
	if _, err := p.Plain(first, nil); !errors.Is(err, ErrPack) || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), ra.Pack) {
		t.Errorf("corrupted frame: %v, want ErrPack naming the pack", err)
	}
	p.Close()
	fi, _ := f.Stat()
	f.ReadAt(b, fi.Size()-packTrailerLen-5) // inside the index
	b[0] ^= 0xff
	f.WriteAt(b, fi.Size()-packTrailerLen-5)
	f.Close()
	if _, err := OpenPack(ra.Pack, ra.Manifest); !errors.Is(err, ErrPack) {
		t.Errorf("corrupted index: %v, want ErrPack", err)
	}
	if _, err := OpenPack(filepath.Join(dir, "missing.pack"), ra.Manifest); err == nil {
		t.Error("missing pack opened")
	}
}

// TestPackBaseWithoutPack: a build on a base whose pack is missing, or
// of an older version (made before delta frames were block deltas), still
// writes a whole pack: the chunks equal to the base's are compressed (by
// the workers) instead of taken from the base's pack, and no delta frame
// is lost. On XFS the build starts from a reflink of the base and takes
// those chunks unread: they are read and compressed all the same.
func TestPackBaseWithoutPack(t *testing.T) {
	dirs := map[string]func(t *testing.T) string{
		"tmp": func(t *testing.T) string { return t.TempDir() },
		"xfs": func(t *testing.T) string {
			testenv.RequireLoop(t)
			testenv.RequireTool(t, "mkfs.xfs")
			return mounttest.ScratchFS(t, "mkfs.xfs", "-q", "-m", "reflink=1")
		},
	}
	breakPack := map[string]func(t *testing.T, pack string){
		"no pack": func(t *testing.T, pack string) { must(t, os.Remove(pack)) },
		"older pack": func(t *testing.T, pack string) {
			b := readAll(t, pack)
			binary.BigEndian.PutUint16(b[len(b)-packTrailerLen+4:], packVersion-1)
			must(t, os.WriteFile(pack, b, 0o644))
		},
	}
	for dname, mkdir := range dirs {
		for bname, broken := range breakPack {
			t.Run(dname+"/"+bname, func(t *testing.T) {
				dir := mkdir(t)
				src := t.TempDir()
				deltaTree(t, src)
				n := 0
				buildIn := func(base string) (string, *Result) {
					n++
					out := filepath.Join(dir, fmt.Sprintf("%s-%s-%d.img", dname, strings.ReplaceAll(bname, " ", "-"), n))
					res, err := Build(context.Background(), src, out, Options{Epoch: &deltaEpoch, HeadroomPct: DefaultHeadroomPct, Base: base})
					must(t, err)
					return out, res
				}
				a, ra := buildIn("")
				broken(t, ra.Pack)
				time.Sleep(time.Duration(racyWindow) + 100*time.Millisecond)
				changeSets[0].change(t, src)
				b, rb := buildIn(a)
				pb, err := OpenPack(rb.Pack, rb.Manifest)
				must(t, err)
				defer pb.Close()
				checkPlain(t, pb, rb.Manifest, readAll(t, b))
				changed := 0
				for i, c := range rb.Manifest.Chunks {
					if !c.Zero && c.Hash != ra.Manifest.Chunks[i].Hash {
						changed++
					}
				}
				if rb.Chunks.Same == 0 || rb.Chunks.Packed != changed || rb.Chunks.Deltas == 0 {
					t.Errorf("stats %+v with %d chunks changed: want the rest same (compressed anew), deltas kept", rb.Chunks, changed)
				}
			})
		}
	}
}

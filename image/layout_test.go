package image

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testLayout returns a small layout with every kind of entry.
func testLayout(t testing.TB) *layout {
	geo, err := planGeometry(2000, 200)
	if err != nil {
		t.Fatal(err)
	}
	l := &layout{geo: geo, backup: sbState{freeBlocks: 7, freeInodes: 9, time: 1_700_000_000, groups: make([]groupCounts, geo.groups)}}
	l.backup.uuid[0], l.backup.hashSeed[15] = 0xab, 0xcd
	l.backup.groups[0] = groupCounts{1, 2, 3}
	d := geo.dataStart(0)
	// extents in entry order, as the encoding lists them
	l.exts = []extent{{d, 1}, {d + 30, 1}, {d + 1, 3}, {d + 10, 2}, {d + 20, 1}}
	l.entries = []layoutEntry{
		{name: "", kind: kindDir, ino: rootIno, ext: 0, next: 1},
		{parent: 0, name: "src", kind: kindDir, ino: 12, ext: 1, next: 1},
		{parent: 1, name: "a.php", kind: kindFile, ino: 13, size: 20000, hash: 0x1122334455667788, ext: 2, next: 2,
			src: srcStat{mtime: 1_700_000_000_123_456_789, ctime: 1_700_000_001_000_000_001, ino: 1 << 40, dev: 2049}},
		{parent: 1, name: "b-link.php", kind: kindFile, link: true, ino: 13, size: 20000},
		{parent: 0, name: "fast", kind: kindSymlink, ino: 14, size: 5},
		{parent: 1, name: "empty", kind: kindFile, ino: 15},
		{parent: 0, name: "lost+found", kind: kindDir, ino: lostFound, ext: 4, next: 1},
	}
	l.version, l.scanned = LayoutVersion, 1_700_000_005_000_000_000
	l.digest[0], l.digest[31] = 0xab, 0xcd
	return l
}

func TestLayoutRoundTrip(t *testing.T) {
	l := testLayout(t)
	enc, err := l.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := parseLayout(enc)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(l, got, cmp.AllowUnexported(layout{}, layoutEntry{}, geometry{}, sbState{}, groupCounts{}, extent{}, srcStat{})); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
	again, _ := got.AppendBinary(nil)
	if !bytes.Equal(enc, again) {
		t.Error("re-encoding a parsed layout differs")
	}
}

func TestLayoutTruncated(t *testing.T) {
	body, err := testLayout(t).appendBody(nil)
	if err != nil {
		t.Fatal(err)
	}
	for n := range len(body) {
		if _, err := parseLayoutBody(body[:n]); !errors.Is(err, ErrLayout) {
			t.Fatalf("body truncated to %d of %d bytes: err %v, want ErrLayout", n, len(body), err)
		}
	}
	enc, _ := testLayout(t).AppendBinary(nil)
	for n := range len(enc) {
		if _, err := parseLayout(enc[:n]); err == nil {
			t.Fatalf("file truncated to %d of %d bytes parsed", n, len(enc))
		}
	}
}

func TestLayoutRejectsInconsistent(t *testing.T) {
	for name, spoil := range map[string]func(l *layout){
		"version":        nil,
		"owned twice":    func(l *layout) { l.entries[5].ino = 13 },
		"link first":     func(l *layout) { l.entries[2], l.entries[3] = l.entries[3], l.entries[2] },
		"parent is file": func(l *layout) { l.entries[5].parent = 2 },
		"slash in name":  func(l *layout) { l.entries[5].name = "a/b" },
		"root not dir":   func(l *layout) { l.entries[0].kind = kindFile },
		"beyond image":   func(l *layout) { l.exts[0].start = l.geo.blocks },
		"inode too high": func(l *layout) { l.entries[5].ino = l.geo.inodes() + 1 },
	} {
		l := testLayout(t)
		if spoil != nil {
			spoil(l)
		}
		enc, err := l.AppendBinary(nil)
		if err != nil {
			t.Fatal(err)
		}
		if spoil == nil {
			enc[4] = LayoutVersion + 1
		}
		if _, err := parseLayout(enc); !errors.Is(err, ErrLayout) {
			t.Errorf("%s: err %v, want ErrLayout", name, err)
		}
	}
}

// TestLayoutOverlapRefused: two inodes listing one block is caught when
// the base is reserved, before anything is written.
func TestLayoutOverlapRefused(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), bytes.Repeat([]byte("a"), 9000), 0o644)
	os.WriteFile(filepath.Join(src, "b"), bytes.Repeat([]byte("b"), 9000), 0o644)
	img, _ := build(t, src, Options{})
	l, err := readLayoutFile(img + LayoutSuffix)
	if err != nil {
		t.Fatal(err)
	}
	l.exts[l.entries[2].ext] = l.exts[l.entries[1].ext] // b takes a's blocks
	enc, _ := l.AppendBinary(nil)
	os.WriteFile(img+LayoutSuffix, enc, 0o644)
	dir := t.TempDir()
	_, err = Build(t.Context(), src, filepath.Join(dir, "b.img"), Options{Base: img})
	if !errors.Is(err, ErrLayout) {
		t.Errorf("overlapping base: err %v, want ErrLayout", err)
	}
	assertNoOutput(t, dir)
}

func FuzzLayoutBody(f *testing.F) {
	body, err := testLayout(f).appendBody(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(body)
	f.Add(body[:len(body)/2])
	f.Fuzz(func(t *testing.T, data []byte) {
		l, err := parseLayoutBody(data)
		if err != nil {
			return
		}
		enc, err := l.appendBody(nil)
		if err != nil {
			t.Fatalf("parsed layout does not encode: %v", err)
		}
		l2, err := parseLayoutBody(enc)
		if err != nil {
			t.Fatalf("re-encoded layout does not parse: %v", err)
		}
		enc2, _ := l2.appendBody(nil)
		if !bytes.Equal(enc, enc2) {
			t.Fatal("parse → append → parse is not stable")
		}
	})
}

// TestLayoutMemory: the layout of a 150,000-file tree (the full synthetic
// size) decodes and indexes in well under 100 MB.
func TestLayoutMemory(t *testing.T) {
	const files, perDir = 150_000, 12
	geo, err := planGeometry(300_000, files*11/10)
	if err != nil {
		t.Fatal(err)
	}
	l := &layout{geo: geo, backup: sbState{groups: make([]groupCounts, geo.groups)}}
	l.entries = append(l.entries, layoutEntry{kind: kindDir, ino: rootIno})
	ino, blk := uint32(firstIno+1), geo.dataStart(0)
	dir := int32(0)
	for i := range files {
		if i%perDir == 0 {
			l.entries = append(l.entries, layoutEntry{name: fmt.Sprintf("directory-%06d", i), kind: kindDir, ino: ino})
			dir, ino = int32(len(l.entries)-1), ino+1
		}
		for geo.groupEnd(blk/blocksPerGroup) <= blk+2 || blk < geo.dataStart(blk/blocksPerGroup) {
			blk = geo.dataStart(blk/blocksPerGroup + 1)
		}
		l.exts = append(l.exts, extent{blk, 2})
		l.entries = append(l.entries, layoutEntry{parent: dir, name: fmt.Sprintf("SomeControllerName%06d.php", i), kind: kindFile,
			ino: ino, size: 6000, hash: uint64(i) * 0x9e3779b97f4a7c15, ext: int32(len(l.exts) - 1), next: 1})
		ino, blk = ino+1, blk+2
	}
	enc, err := l.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	l = nil
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	got, err := parseLayout(enc)
	if err != nil {
		t.Fatal(err)
	}
	p, err := newBasePlan(got)
	if err != nil {
		t.Fatal(err)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)
	live := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("layout of %d entries: %d bytes on disk, %.1f MB live after decoding and indexing (%.1f MB allocated)",
		len(got.entries), len(enc), float64(live)/1e6, float64(after.TotalAlloc-before.TotalAlloc)/1e6)
	if live > 64<<20 {
		t.Errorf("layout of %d entries holds %d MB live, want under 64 MB", len(got.entries), live>>20)
	}
	runtime.KeepAlive(p)
}

// AppendBinary appends l as a layout file: header, then the
// zstd-compressed body (see appendBody). Builds stream the body instead.
func (l *layout) AppendBinary(b []byte) ([]byte, error) {
	body, err := l.appendBody(nil)
	if err != nil {
		return nil, err
	}
	return appendLayoutFile(b, body)
}

// appendBody encodes l's body (see appendLayoutBody).
func (l *layout) appendBody(b []byte) ([]byte, error) {
	return appendLayoutBody(b, &l.geo, &l.backup, l.scanned, l.digest, len(l.entries), func(i int) (*layoutEntry, []extent) {
		return &l.entries[i], l.blocks(&l.entries[i])
	})
}

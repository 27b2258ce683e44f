package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/klauspost/compress/zstd"

	"github.com/loopcast/loopcast/internal/binread"
)

// LayoutVersion is the layout file encoding this package writes. Version
// 2 adds what the scan saw of each source file (srcStat) and when it ran,
// so a build on the layout reads only the files that changed; version 1
// layouts are still read (every file is read again).
const LayoutVersion = 2

// LayoutSuffix names the layout file beside an image: app.img.layout.
const LayoutSuffix = ".layout"

// Bounds applied when decoding a layout file.
const (
	// maxLayoutBody caps the decompressed body: ~80 bytes per entry
	// covers 10 million entries, far beyond a code tree.
	maxLayoutBody = 1 << 30
	// layoutHeaderLen is the magic, the version and 3 reserved bytes.
	layoutHeaderLen = 8
	// layoutLevel favours speed: the file is written at every build and
	// is a few MiB at most.
	layoutLevel = zstd.SpeedDefault
	// layoutWindow keeps the encoder's memory small (4 MB rather than
	// ~19 MB for a 150,000-file layout) for almost the same ratio.
	layoutWindow = 1 << 20
)

var layoutMagic = [4]byte{'L', 'C', 'L', 'Y'}

// ErrLayout reports a layout file that is malformed or inconsistent.
var ErrLayout = errors.New("image: malformed layout")

// Layout entry flags: the kind in the low bits, a hard-link name on top.
const (
	layoutKindMask = 0x0f
	layoutLink     = 0x80 // a further name of an inode listed earlier
)

// extent is a run of consecutive blocks.
type extent struct{ start, n uint32 }

// layoutEntry is one name of a built image: where its inode and blocks are.
// Entries are in the builder's scan order: a parent precedes its children.
type layoutEntry struct {
	parent int32
	name   string
	kind   nodeKind
	link   bool // a hard link to an inode owned by an earlier entry
	ino    uint32
	size   int64
	hash   uint64  // content hash of a regular file (owner entries only)
	src    srcStat // what the scan saw of it (owner files; zero in version 1)
	ext    int32   // the inode's blocks: exts[ext : ext+next], in allocation order
	next   int32
}

// groupCounts are the counts of one group descriptor.
type groupCounts struct{ freeBlocks, freeInodes, usedDirs uint16 }

// sbState is what the superblock and descriptor backups of an image hold
// besides the geometry. A build on a base writes the base's backups
// unchanged (e2fsck and the kernel read only the primary copies), so a
// small change does not touch every group that holds a backup.
type sbState struct {
	freeBlocks, freeInodes, time uint32
	uuid, hashSeed               [16]byte
	groups                       []groupCounts
}

// layout describes where everything of an image lives: the geometry, the
// backups, and per name its inode and blocks. A later build reads it as
// its base to keep unchanged files in place.
type layout struct {
	version byte
	scanned int64 // when the build's scan started (Unix ns); 0 in version 1
	// digest is the image digest of the manifest built with this layout
	// (zero in version 1): a build trusts the base image beside the layout
	// only when the base manifest names the same image.
	digest  [32]byte
	geo     geometry
	backup  sbState
	entries []layoutEntry
	exts    []extent
}

// blocks returns entry e's extents.
func (l *layout) blocks(e *layoutEntry) []extent { return l.exts[e.ext : e.ext+e.next] }

// appendLayoutFile appends the header and the compressed body.
func appendLayoutFile(b, body []byte) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(layoutLevel), zstd.WithEncoderConcurrency(1), zstd.WithWindowSize(layoutWindow))
	if err != nil {
		return nil, fmt.Errorf("image: zstd: %w", err)
	}
	defer enc.Close()
	b = append(b, layoutMagic[:]...)
	b = append(b, LayoutVersion, 0, 0, 0)
	return enc.EncodeAll(body, b), nil
}

// appendLayoutBody encodes a layout whose entries come one at a time from
// entry, so a build need not hold them all; big-endian and uvarints:
//
//	blocks u32 | groups u32 | inodes per group u32
//	free blocks u32 | free inodes u32 | time u32 | uuid [16] | hash seed [16]
//	scanned i64 | image digest [32] (version 2)
//	per group: free blocks u16 | free inodes u16 | directories u16
//	entry count uvarint
//	per entry: index-parent uvarint | name length uvarint | name |
//	  flags u8 (kind | 0x80 link) | inode uvarint | size uvarint |
//	  (owner file: xxhash u64 | (version 2) mtime i64 | ctime i64 | ino uvarint | dev uvarint) |
//	  extent count uvarint | (start uvarint, length uvarint)...
func appendLayoutBody(b []byte, geo *geometry, s *sbState, scanned int64, digest [32]byte, count int, entry func(i int) (*layoutEntry, []extent)) ([]byte, error) {
	be := binary.BigEndian
	b = be.AppendUint32(b, geo.blocks)
	b = be.AppendUint32(b, geo.groups)
	b = be.AppendUint32(b, geo.ipg)
	if len(s.groups) != int(geo.groups) {
		return nil, fmt.Errorf("%w: %d group counts for %d groups", ErrLayout, len(s.groups), geo.groups)
	}
	b = be.AppendUint32(b, s.freeBlocks)
	b = be.AppendUint32(b, s.freeInodes)
	b = be.AppendUint32(b, s.time)
	b = append(b, s.uuid[:]...)
	b = append(b, s.hashSeed[:]...)
	b = be.AppendUint64(b, uint64(scanned))
	b = append(b, digest[:]...)
	for _, g := range s.groups {
		b = be.AppendUint16(b, g.freeBlocks)
		b = be.AppendUint16(b, g.freeInodes)
		b = be.AppendUint16(b, g.usedDirs)
	}
	b = binary.AppendUvarint(b, uint64(count))
	for i := range count {
		e, ext := entry(i)
		b = binary.AppendUvarint(b, uint64(int32(i)-e.parent))
		b = binary.AppendUvarint(b, uint64(len(e.name)))
		b = append(b, e.name...)
		flags := byte(e.kind)
		if e.link {
			flags |= layoutLink
		}
		b = append(b, flags)
		b = binary.AppendUvarint(b, uint64(e.ino))
		b = binary.AppendUvarint(b, uint64(e.size))
		if e.kind == kindFile && !e.link {
			b = be.AppendUint64(b, e.hash)
			b = be.AppendUint64(b, uint64(e.src.mtime))
			b = be.AppendUint64(b, uint64(e.src.ctime))
			b = binary.AppendUvarint(b, e.src.ino)
			b = binary.AppendUvarint(b, e.src.dev)
		}
		b = binary.AppendUvarint(b, uint64(len(ext)))
		for _, x := range ext {
			b = binary.AppendUvarint(b, uint64(x.start))
			b = binary.AppendUvarint(b, uint64(x.n))
		}
	}
	return b, nil
}

// parseLayout decodes a layout file; the decompressed body is bounded.
func parseLayout(data []byte) (*layout, error) {
	if len(data) < layoutHeaderLen || !bytes.Equal(data[:4], layoutMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic", ErrLayout)
	}
	version := data[4]
	if version != 1 && version != LayoutVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads 1 and %d", ErrLayout, data[4], LayoutVersion)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderMaxMemory(maxLayoutBody), zstd.WithDecoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("image: zstd: %w", err)
	}
	defer dec.Close()
	body, err := dec.DecodeAll(data[layoutHeaderLen:], nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrLayout, err)
	}
	return parseLayoutBodyVersion(body, version)
}

func parseLayoutBody(body []byte) (*layout, error) {
	return parseLayoutBodyVersion(body, LayoutVersion)
}

func parseLayoutBodyVersion(body []byte, version byte) (*layout, error) {
	r := binread.New(body, ErrLayout)
	l := &layout{version: version}
	blocks, groups, ipg := r.U32("blocks"), r.U32("groups"), r.U32("inodes per group")
	if r.Err() != nil {
		return nil, r.Err()
	}
	geo, err := checkLayoutGeometry(blocks, groups, ipg)
	if err != nil {
		return nil, err
	}
	l.geo = geo
	s := &l.backup
	s.freeBlocks, s.freeInodes, s.time = r.U32("free blocks"), r.U32("free inodes"), r.U32("time")
	copy(s.uuid[:], r.Bytes("uuid", 16))
	copy(s.hashSeed[:], r.Bytes("hash seed", 16))
	if version >= 2 {
		l.scanned = int64(r.U64("scan time"))
		copy(l.digest[:], r.Bytes("image digest", 32))
	}
	if r.Err() == nil && uint64(r.Len()) < 6*uint64(groups) {
		r.Fail("truncated group counts")
	}
	if r.Err() != nil {
		return nil, r.Err()
	}
	s.groups = make([]groupCounts, groups)
	for g := range s.groups {
		s.groups[g] = groupCounts{r.U16("group free blocks"), r.U16("group free inodes"), r.U16("group directories")}
	}
	// every entry takes at least 6 bytes: that bounds the count
	count := r.Uvarint("entry count", uint64(r.Len())/6)
	if r.Err() != nil {
		return nil, r.Err()
	}
	l.entries = make([]layoutEntry, count)
	var total uint64 // blocks listed, bounded by the image
	for i := range l.entries {
		l.parseEntry(r, int32(i), &total)
		if r.Err() != nil {
			return nil, fmt.Errorf("%w (entry %d)", r.Err(), i)
		}
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	if err := l.check(); err != nil {
		return nil, err
	}
	return l, nil
}

func checkLayoutGeometry(blocks, groups, ipg uint32) (geometry, error) {
	if groups == 0 || groups > maxGroups || ipg == 0 {
		return geometry{}, fmt.Errorf("%w: %d groups of %d inodes", ErrLayout, groups, ipg)
	}
	g, ok := layoutFor(groups, uint64(groups)*uint64(ipg))
	if !ok || g.ipg != ipg {
		return geometry{}, fmt.Errorf("%w: %d inodes per group is not a layout this writer makes", ErrLayout, ipg)
	}
	lo := uint64(groups-1)*blocksPerGroup + uint64(g.overhead(groups-1))
	if uint64(blocks) <= lo || uint64(blocks) > uint64(groups)*blocksPerGroup || blocks < minImageBlocks {
		return geometry{}, fmt.Errorf("%w: %d blocks do not fit %d groups", ErrLayout, blocks, groups)
	}
	g.blocks = blocks
	return g, nil
}

func (l *layout) parseEntry(r *binread.Reader, i int32, total *uint64) {
	e := &l.entries[i]
	up := r.Uvarint("parent", uint64(i))
	e.parent = i - int32(up)
	if i > 0 && up == 0 {
		r.Fail("entry is its own parent")
	}
	e.name = string(r.Bytes("name", int(r.Uvarint("name length", maxNameLen))))
	flags := r.U8("flags")
	e.kind, e.link = nodeKind(flags&layoutKindMask), flags&layoutLink != 0
	if flags&^(layoutKindMask|layoutLink) != 0 || e.kind < kindDir || e.kind > kindSymlink {
		r.Fail("flags %#x", flags)
	}
	e.ino = uint32(r.Uvarint("inode", uint64(l.geo.inodes())))
	e.size = int64(r.Uvarint("size", 1<<62))
	if e.kind == kindFile && !e.link {
		e.hash = r.U64("hash")
		if l.version >= 2 {
			e.src.mtime, e.src.ctime = int64(r.U64("mtime")), int64(r.U64("ctime"))
			e.src.ino, e.src.dev = r.Uvarint("source inode", ^uint64(0)), r.Uvarint("source device", ^uint64(0))
		}
	}
	n := r.Uvarint("extent count", uint64(r.Len())/2)
	if n > 0 {
		e.ext, e.next = int32(len(l.exts)), int32(n)
	}
	for range n {
		x := extent{uint32(r.Uvarint("extent start", uint64(l.geo.blocks))), uint32(r.Uvarint("extent length", uint64(l.geo.blocks)))}
		if x.n == 0 || uint64(x.start)+uint64(x.n) > uint64(l.geo.blocks) {
			r.Fail("extent %d+%d outside %d blocks", x.start, x.n, l.geo.blocks)
			return
		}
		if *total += uint64(x.n); *total > uint64(l.geo.blocks) {
			r.Fail("more blocks listed than the image holds")
			return
		}
		l.exts = append(l.exts, x)
	}
}

// check verifies what the entries say of each other: a tree of
// directories rooted at inode 2, valid names, one owner per inode, links
// after their owner and without blocks.
func (l *layout) check() error {
	if len(l.entries) == 0 {
		return fmt.Errorf("%w: no root", ErrLayout)
	}
	if r := &l.entries[0]; r.kind != kindDir || r.link || r.ino != rootIno || r.name != "" {
		return fmt.Errorf("%w: bad root entry", ErrLayout)
	}
	owner := make(map[uint32]bool, len(l.entries))
	for i := range l.entries {
		e := &l.entries[i]
		if i > 0 {
			if p := &l.entries[e.parent]; p.kind != kindDir {
				return fmt.Errorf("%w: entry %d: parent is not a directory", ErrLayout, i)
			}
			if e.name == "" || e.name == "." || e.name == ".." || strings.ContainsAny(e.name, "/\x00") {
				return fmt.Errorf("%w: entry %d: bad name %q", ErrLayout, i, e.name)
			}
		}
		if e.ino == 0 {
			return fmt.Errorf("%w: entry %d: inode 0", ErrLayout, i)
		}
		switch {
		case e.link && (e.kind == kindDir || e.next != 0 || !owner[e.ino]):
			return fmt.Errorf("%w: entry %d: bad hard link to inode %d", ErrLayout, i, e.ino)
		case !e.link && owner[e.ino]:
			return fmt.Errorf("%w: entry %d: inode %d owned twice", ErrLayout, i, e.ino)
		}
		owner[e.ino] = true
	}
	return nil
}

// layoutPath returns the layout file of base: an image path, its
// ".manifest" or its layout file.
func layoutPath(base string) string {
	switch {
	case strings.HasSuffix(base, LayoutSuffix):
		return base
	case strings.HasSuffix(base, ".manifest"):
		return strings.TrimSuffix(base, ".manifest") + LayoutSuffix
	}
	return base + LayoutSuffix
}

func readLayoutFile(path string) (*layout, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image: base layout: %w", err)
	}
	l, err := parseLayout(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return l, nil
}

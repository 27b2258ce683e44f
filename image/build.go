package image

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"runtime"
	"time"

	"github.com/cespare/xxhash/v2"
	"github.com/loopcast/loopcast/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// ErrTooLarge reports a tree that does not fit the requested image size.
var ErrTooLarge = errors.New("image: tree too large")

// ErrChanged reports a source file that changed size while it was read.
var ErrChanged = errors.New("image: file changed during the build")

// Test hooks: run after a source file is opened, and after the scan.
var (
	testHookOpened  func(path string)
	testHookScanned func()
	testNoClone     bool // tests: write every block, as without a base image
)

// readBufSize is the source read size: large enough that a big file costs
// few syscalls, small enough to stay in cache.
const readBufSize = 1 << 20

// Options tune a build. The zero value builds with minimal headroom, root
// ownership and the files' own timestamps, unsigned.
type Options struct {
	// Epoch, when set, replaces every timestamp (SOURCE_DATE_EPOCH).
	Epoch *int64
	// KeepOwner keeps the source's uid/gid instead of root:root.
	KeepOwner bool
	// Size fixes the image size in bytes; 0 sizes it from the tree.
	Size int64
	// HeadroomPct adds free blocks and inodes, percent of the tree's needs.
	HeadroomPct int
	// Label is recorded in the manifest (e.g. a VCS revision).
	Label string
	// ChunkSize for the manifest; 0 means ChunkSize.
	ChunkSize uint32
	// Key signs the manifest when set.
	Key ed25519.PrivateKey
	// Progress, when set, is called as data is written.
	Progress func(done, total int64)
	// Base, when set, is the path of a previous build's image (or of its
	// manifest or layout file): the build reads its layout (image +
	// LayoutSuffix; only that file need exist) and keeps its geometry. A
	// path whose kind still matches keeps its inode and is written over its
	// own old blocks first, so an unchanged file keeps exactly its blocks;
	// growth and new paths take free space, first fit; deleted paths are
	// freed. So a small change to the tree changes few chunks. When the
	// tree no longer fits the base geometry the image is laid out afresh
	// (Result.Base says so). The same tree, options and base give the same
	// image.
	Base string
	// BaseOptional: a Base whose layout file cannot be read (gone,
	// corrupt, of another version) is laid out afresh, Result.Base.Why
	// saying why, instead of failing the build (a deploy building on the
	// last image it deployed; an explicit --base fails).
	BaseOptional bool
}

// Result describes a finished build.
type Result struct {
	Manifest  *Manifest
	Files     uint64 // names in the tree, the root excluded
	Blocks    uint32 // image blocks of 4 KiB
	UsedBytes int64  // data bytes written
	Layout    string // the layout file written beside the image
	Pack      string // the pack written beside the image
	// Chunks says how the chunks were hashed and packed: on a base, only
	// those whose bytes changed were hashed and compressed.
	Chunks ProcessStats
	// Base reports how the base layout was used; nil without Options.Base.
	Base *BaseReport
}

// Build writes an ext2 image of the tree at src to out and its manifest to
// out + ".manifest". Both appear only when complete and verified; on error
// nothing is left behind.
func Build(ctx context.Context, src, out string, opts Options) (*Result, error) {
	if opts.HeadroomPct < 0 {
		return nil, fmt.Errorf("image: negative headroom %d%%", opts.HeadroomPct)
	}
	if cs := opts.ChunkSize; cs != 0 {
		if err := checkChunkSize(cs); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
		if cs%blockSize != 0 {
			return nil, fmt.Errorf("image: chunk size %d is not a multiple of %d", cs, blockSize)
		}
	}
	if len(opts.Label) > MaxLabel {
		return nil, fmt.Errorf("image: label of %d bytes, more than %d", len(opts.Label), MaxLabel)
	}
	t, err := scanTree(src)
	if err != nil {
		return nil, err
	}
	b := &builder{t: t, opts: opts}
	if opts.Base != "" {
		if err := b.useBase(opts.Base); err != nil {
			return nil, err
		}
	}
	if b.base == nil {
		if err := t.assignInodes(); err != nil {
			return nil, err
		}
	}
	if testHookScanned != nil {
		testHookScanned()
	}
	geo, err := b.plan()
	if err != nil {
		return nil, err
	}
	f, err := atomicfile.Create(out, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Abort()
	pw, err := newPackWriter(out+PackSuffix, ChunkCount(int64(geo.blocks)*blockSize, b.chunkSize()))
	if err != nil {
		return nil, err
	}
	defer pw.abort()
	if opts.Base != "" {
		b.prev = openBuildBase(opts.Base, b.chunkSize())
		defer b.prev.close()
	}
	m, err := b.write(ctx, f.File, geo, pw)
	if err != nil {
		return nil, err
	}
	lay, err := b.layoutFile(geo)
	if err != nil {
		return nil, err
	}
	if err := publish(out, f, m, lay, pw, b.prev); err != nil {
		return nil, err
	}
	res := &Result{Manifest: m, Files: t.entries, Blocks: geo.blocks, UsedBytes: b.w.written, Layout: out + LayoutSuffix,
		Pack: out + PackSuffix, Chunks: b.stats}
	switch {
	case b.base != nil:
		res.Base = b.base.report(b)
	case opts.Base != "":
		res.Base = &BaseReport{Why: b.baseWhy}
	}
	return res, nil
}

// baseMatches reports whether the base's layout, manifest and image belong
// together, as a clone needs (a build trusts the base image's blocks as
// the layout places them and its chunks as the manifest hashes them): the
// layout names the manifest's image digest, and the image's first and
// last non-zero chunks hash as the manifest says (an image of another
// build differs there: superblock, group descriptors, bitmaps).
func (b *builder) baseMatches() bool {
	p := b.prev
	if p == nil || b.base.l.digest == ([32]byte{}) || p.m.ImageDigest != b.base.l.digest {
		return false
	}
	first, last := -1, -1
	for i, c := range p.m.Chunks {
		if !c.Zero {
			if first < 0 {
				first = i
			}
			last = i
		}
	}
	if first < 0 {
		return false
	}
	buf := make([]byte, p.m.ChunkSize)
	for _, i := range []int{first, last} {
		off, n := p.m.ChunkRange(i)
		if _, err := p.img.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return false
		}
		if sha256.Sum256(buf[:n]) != p.m.Chunks[i].Hash {
			return false
		}
	}
	return true
}

// cloneBase makes f a reflink of the base build's image when it has size
// bytes (FICLONE: XFS, btrfs; the blocks are shared, nothing is copied).
// It reports whether f now holds the base; when not, f is empty. Where the
// filesystem cannot share blocks, copying the base costs about what
// writing the image does, so the build writes it whole instead.
func cloneBase(f *os.File, prev *buildBase, size int64) (bool, error) {
	if prev == nil || testNoClone {
		return false, nil
	}
	if fi, err := prev.img.Stat(); err != nil || fi.Size() != size {
		return false, nil
	}
	if err := unix.IoctlFileClone(int(f.Fd()), int(prev.img.Fd())); err == nil {
		if fi, err := f.Stat(); err == nil && fi.Size() == size {
			return true, nil
		}
	}
	// a clone that failed part way (btrfs) may have shared some extents:
	// nothing of the base may stay in an image written whole
	if err := f.Truncate(0); err != nil {
		return false, fmt.Errorf("image: empty %s after a failed clone: %w", f.Name(), err)
	}
	return false, nil
}

// localFS reports whether the tree at dir is on a local filesystem whose
// stat changes with every write (no attribute cache, fine timestamps):
// only then are source files trusted by their stat.
func localFS(dir string) bool {
	var st unix.Statfs_t
	if unix.Statfs(dir, &st) != nil {
		return false
	}
	switch uint32(st.Type) {
	case unix.EXT4_SUPER_MAGIC, unix.XFS_SUPER_MAGIC, unix.BTRFS_SUPER_MAGIC, unix.TMPFS_MAGIC,
		unix.OVERLAYFS_SUPER_MAGIC, unix.F2FS_SUPER_MAGIC:
		return true
	}
	return false
}

// publish commits the image, then writes its manifest, layout and pack;
// on any failure it removes all four, so a build leaves all or nothing.
func publish(out string, f *atomicfile.File, m *Manifest, lay []byte, pw *packWriter, prev *buildBase) error {
	// an earlier build's manifest, layout and pack at out go first: a crash
	// after the image is renamed must not leave them beside it as its own
	for _, p := range []string{out + ".manifest", out + LayoutSuffix, out + PackSuffix} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("image: %w", err)
		}
	}
	if err := f.Commit(); err != nil {
		return err
	}
	id := m.ID() // final now: hashed once for the pack
	var baseID ID
	if prev != nil && prev.id != id { // the same tree again needs no deltas
		baseID = prev.id
	}
	err := WriteManifestFile(out+".manifest", m)
	if err == nil {
		err = atomicfile.WriteFile(out+LayoutSuffix, lay, 0o644)
	}
	if err == nil {
		err = pw.finish(m, id, baseID)
	}
	if err != nil {
		for _, p := range []string{out, out + ".manifest", out + LayoutSuffix} {
			os.Remove(p)
		}
	}
	return err
}

// useBase reads the base layout and numbers the tree's inodes on it. When
// the tree does not fit, b.base stays nil and b.baseWhy says why.
func (b *builder) useBase(base string) error {
	path := layoutPath(base)
	l, err := readLayoutFile(path)
	if err != nil && b.opts.BaseOptional {
		b.baseWhy = err.Error()
		return nil
	}
	if err != nil {
		return err
	}
	p, err := newBasePlan(l)
	if err != nil {
		return fmt.Errorf("%w (%s)", err, path)
	}
	if b.opts.Size > 0 && b.opts.Size/blockSize != int64(l.geo.blocks) {
		b.baseWhy = fmt.Sprintf("size %d differs from the base's %d bytes", b.opts.Size, int64(l.geo.blocks)*blockSize)
		return nil
	}
	if b.baseWhy = p.number(b.t); b.baseWhy != "" {
		return nil
	}
	if err := b.t.countLinks(); err != nil {
		return err
	}
	if b.baseWhy = p.fits(b); b.baseWhy == "" {
		b.base = p
	}
	return nil
}

type builder struct {
	t           *tree
	base        *basePlan // nil: a fresh layout
	baseWhy     string    // why the base layout was not kept
	exts        []extent  // every inode's blocks, in the order written
	nodeExt     []extRef  // per node: its inode's blocks in exts
	hashes      []uint64  // per node: content hash of a regular file
	lfExt       []extent  // lost+found's blocks
	backup      sbState   // what the backup superblocks hold
	pathParent  int32     // cache of the last file's directory path
	parentPath  string
	opts        Options
	w           *imageWriter
	digest      hash.Hash // content digest: the UUID and hash seed come from it
	buf         []byte
	total       int64 // source bytes to read, for progress
	done        int64
	prev        *buildBase // the base build's image, manifest and pack; nil: none
	stats       ProcessStats
	trusted     int   // files taken from the base unread (same size and source stat)
	readBytes   int64 // source bytes read
	trustStat   bool  // the source is on a local filesystem whose stat can be trusted
	imageDigest [32]byte
}

type extRef struct{ off, n int32 }

// upperBlocks is the most blocks node i's inode may need.
func (b *builder) upperBlocks(i int32) uint64 {
	n := &b.t.nodes[i]
	switch {
	case n.primary >= 0:
	case n.kind == kindDir:
		return blocksFor(dirBlockCount(b.t.dirEntries(i)))
	case n.kind == kindFile:
		return fileBlocksUpper(n.size)
	case n.kind == kindSymlink && len(n.target) > fastSymlinkMax:
		return 1
	}
	return 0
}

// plan sizes the image: upper bounds of blocks and inodes plus headroom,
// or the base's geometry.
func (b *builder) plan() (geometry, error) {
	data := uint64(1) // lost+found
	for i := range b.t.nodes {
		if n := &b.t.nodes[i]; n.kind == kindFile && n.primary < 0 {
			b.total += n.size
		}
		if b.base == nil {
			data += b.upperBlocks(int32(i))
		}
	}
	if b.base != nil {
		return b.base.l.geo, nil
	}
	inodes := uint64(b.t.inodes)
	if b.opts.Size > 0 {
		g, err := fixedGeometry(b.opts.Size, data, inodes)
		if err != nil {
			return g, fmt.Errorf("%w (source %s)", err, b.t.src)
		}
		return g, nil
	}
	pct := uint64(b.opts.HeadroomPct)
	data += max(data*pct/100, minHeadroomBlocks)
	inodes += max(inodes*pct/100, minHeadroomInodes)
	return planGeometry(data, inodes)
}

// write lays the whole image into f, then reads it back into a manifest.
func (b *builder) write(ctx context.Context, f *os.File, geo geometry, pw *packWriter) (*Manifest, error) {
	size := int64(geo.blocks) * blockSize
	cloned := false
	if b.base != nil && b.baseMatches() {
		var err error
		if cloned, err = cloneBase(f, b.prev, size); err != nil {
			return nil, err
		}
	}
	b.trustStat = cloned && localFS(b.t.src)
	if !cloned {
		if err := f.Truncate(size); err != nil {
			return nil, fmt.Errorf("image: %w", err)
		}
	}
	b.w = newImageWriter(f, geo, b.t.inodes)
	m := &Manifest{ImageSize: size, ChunkSize: b.chunkSize()}
	m.Chunks = make([]Chunk, ChunkCount(m.ImageSize, m.ChunkSize))
	b.w.chunkBlocks = m.ChunkSize / blockSize
	if cloned {
		b.w.startClone(len(m.Chunks), b.base.usedBlocks(geo))
	}
	// hash and compress finished chunks on every core while this one writes
	proc := startProcessor(ctx, f, m, b.prev, pw, runtime.GOMAXPROCS(0))
	if cloned {
		proc.clean = func(i int) bool { return !b.w.dirty[i] }
	}
	defer proc.stop()
	var order []int32 // node indexes in writing order; nil: scan order
	b.w.onFinal = proc.submit
	if b.base != nil {
		// writes go anywhere: a chunk is final once all its blocks are
		b.w.firstFit, b.w.chunkDone = true, make([]uint32, len(m.Chunks))
		if err := b.base.reserve(b.w, b.t); err != nil {
			return nil, err
		}
		order = inodeOrder(b.t)
	}
	b.nodeExt = make([]extRef, len(b.t.nodes))
	b.hashes = make([]uint64, len(b.t.nodes))
	b.digest = sha256.New()
	b.buf = make([]byte, readBufSize)
	created := b.created()
	b.writeLostFound(created)
	dirs := make([]uint16, geo.groups)
	dirs[(lostFound-1)/geo.ipg]++
	for k := range b.t.nodes {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		i := int32(k)
		if order != nil {
			i = order[k]
		}
		n := &b.t.nodes[i]
		if n.kind == kindDir {
			dirs[(n.ino-1)/geo.ipg]++
		}
		if err := b.writeNode(i); err != nil {
			return nil, err
		}
	}
	sb := superblock{time: uint32(created)}
	sum := b.digest.Sum(nil)
	copy(sb.uuid[:], sum[:16])
	sb.uuid[6] = sb.uuid[6]&0x0f | 0x40 // RFC 4122 version 4 layout, content-derived
	sb.uuid[8] = sb.uuid[8]&0x3f | 0x80
	copy(sb.hashSeed[:], sum[16:])
	var backup *sbState
	if b.base != nil { // the base's identity and backups carry over
		backup = &b.base.l.backup
		sb.uuid, sb.hashSeed = backup.uuid, backup.hashSeed
	}
	st, err := b.w.finish(sb, dirs, backup)
	if err != nil {
		return nil, err
	}
	b.backup = st
	if backup != nil {
		b.backup = *backup
	}
	// the disk flush and the last chunks' processing (page cache reads) overlap
	synced := make(chan error, 1)
	go func() { synced <- f.Sync() }()
	err = proc.wait()
	m.ImageDigest = m.ComputeDigest()
	b.imageDigest = m.ImageDigest
	b.stats = proc.stats
	if serr := <-synced; serr != nil {
		return nil, fmt.Errorf("image: sync %s: %w", f.Name(), serr)
	}
	if err != nil {
		return nil, fmt.Errorf("image: hash and pack %s: %w", f.Name(), err)
	}
	return b.manifest(m, created)
}

func (b *builder) chunkSize() uint32 {
	if b.opts.ChunkSize == 0 {
		return ChunkSize
	}
	return b.opts.ChunkSize
}

// manifest completes m with provenance and signs it.
func (b *builder) manifest(m *Manifest, created int64) (*Manifest, error) {
	m.FileCount, m.Created, m.Label = b.t.entries, created, b.opts.Label
	if b.opts.Key != nil {
		m.Sign(b.opts.Key)
	}
	return m, nil
}

// created is the build's timestamp: the epoch, or the newest in the tree.
func (b *builder) created() int64 {
	if b.opts.Epoch != nil {
		return *b.opts.Epoch
	}
	return b.t.maxTime
}

func (b *builder) baseInode(n *node) inode {
	in := inode{mode: n.perm, sec: n.sec, nsec: n.nsec, links: n.links}
	if b.opts.Epoch != nil {
		in.sec, in.nsec = *b.opts.Epoch, 0
	}
	if b.opts.KeepOwner {
		in.uid, in.gid = n.uid, n.gid
	}
	return in
}

func (b *builder) writeLostFound(created int64) {
	in := inode{mode: sIFDIR | 0o700, sec: created, links: 2}
	ents := []dirEntry{{".", lostFound, ftDir}, {"..", rootIno, ftDir}}
	var replay []extent
	if b.base != nil && b.base.lf >= 0 {
		replay = b.base.l.blocks(&b.base.l.entries[b.base.lf])
	}
	b.w.beginInode(replay)
	b.writeDirBlocks(&in, encodeDir(ents))
	b.lfExt = append(b.lfExt[:0], b.w.endInode()...)
	b.w.putInode(lostFound, &in)
}

// replayFor returns the base blocks node i starts from: its kept inode's.
func (b *builder) replayFor(i int32) []extent {
	if b.base == nil || b.base.match[i] < 0 {
		return nil
	}
	return b.base.blocksOf(b.t.nodes[i].ino)
}

// recordBlocks ends node i's inode and files its blocks for the layout.
func (b *builder) recordBlocks(i int32) {
	x := b.w.endInode()
	b.nodeExt[i] = extRef{int32(len(b.exts)), int32(len(x))}
	b.exts = append(b.exts, x...)
}

func (b *builder) writeNode(i int32) error {
	n := &b.t.nodes[i]
	binary.Write(b.digest, binary.LittleEndian, [2]uint32{b.t.nodes[n.parent].ino, uint32(len(n.name))})
	b.digest.Write([]byte(n.name))
	if n.primary >= 0 {
		binary.Write(b.digest, binary.LittleEndian, n.ino)
		return nil
	}
	in := b.baseInode(n)
	b.w.beginInode(b.replayFor(i))
	switch n.kind {
	case kindDir:
		in.mode |= sIFDIR
		b.writeDirBlocks(&in, encodeDir(b.t.dirEntries(i)))
	case kindSymlink:
		in.mode |= sIFLNK
		b.writeSymlink(&in, n.target)
	case kindFile:
		in.mode |= sIFREG
		if err := b.writeFile(i, &in); err != nil {
			return err
		}
	}
	b.recordBlocks(i)
	b.digest.Write(b.w.putInode(n.ino, &in))
	return b.w.err
}

func (b *builder) writeDirBlocks(in *inode, data []byte) {
	in.size = uint64(len(data))
	m := newBlockMap(b.w, in)
	for off := 0; off < len(data); off += blockSize {
		p := b.w.alloc()
		b.w.writeBlock(p, data[off:off+blockSize])
		m.add(p)
	}
	m.finish()
}

func (b *builder) writeSymlink(in *inode, target string) {
	in.size = uint64(len(target))
	if len(target) <= fastSymlinkMax {
		in.inline = []byte(target)
		return
	}
	p := b.w.alloc()
	b.w.writeBlock(p, []byte(target))
	in.block[0], in.blocks = p, 1
}

// racyWindow: a source file changed this close to (or after) the base
// build's scan may have changed without its stat showing it (timestamps
// are coarse); it is read again.
const racyWindow = int64(time.Second)

// trustedHash returns the base's content hash of node i when the file can
// be taken from the cloned base unread: the base has it in the same inode,
// of the same size, on exactly the blocks its data needs (no hole), and
// the source's stat (mtime, ctime, inode, device) is what the base's scan
// saw, comfortably before that scan.
func (b *builder) trustedHash(i int32) (uint64, bool) {
	if b.w == nil || !b.w.clone || !b.trustStat || b.base == nil || b.base.match[i] < 0 {
		return 0, false
	}
	n := &b.t.nodes[i]
	e := &b.base.l.entries[b.base.match[i]]
	scanned := b.base.l.scanned
	switch {
	case e.kind != kindFile || e.link || n.sparse || e.size != n.size || e.src != n.src,
		e.src.ctime == 0 || scanned == 0,
		n.src.ctime > scanned-racyWindow || n.src.mtime > scanned-racyWindow,
		n.src.ctime%int64(time.Second) == 0 && n.src.mtime%int64(time.Second) == 0, // whole seconds: coarse timestamps
		extentBlocks(b.base.blocksOf(n.ino)) != fileBlocksUpper(n.size):
		return 0, false
	}
	return e.hash, true
}

// writeFile streams one file's data into the image. All-zero blocks become
// holes. The file must be exactly the size the scan saw. A file the cloned
// base holds unchanged (trustedHash) is not read: it takes the same blocks,
// whose bytes are already there.
func (b *builder) writeFile(i int32, in *inode) error {
	n := &b.t.nodes[i]
	in.size = uint64(n.size)
	if n.size == 0 {
		return nil
	}
	if h, ok := b.trustedHash(i); ok {
		m := newBlockMap(b.w, in)
		for range ceilDiv(uint64(n.size), blockSize) {
			phys := b.w.alloc()
			b.w.skipBlock(phys)
			m.add(phys)
		}
		m.finish()
		b.hashes[i] = h
		binary.Write(b.digest, binary.LittleEndian, h)
		b.trusted++
		b.progress(n.size)
		return b.w.err
	}
	b.readBytes += n.size
	path := b.path(i)
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("image: open %s: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	if testHookOpened != nil {
		testHookOpened(path)
	}
	m := newBlockMap(b.w, in)
	xx := xxhash.New()
	var off int64
	for off < n.size {
		if n.sparse {
			off = b.skipHole(f, m, off, n.size)
			if off >= n.size {
				break
			}
		}
		want := int(min(int64(len(b.buf)), n.size-off))
		got, err := f.ReadAt(b.buf[:want], off)
		if got < want {
			if err == nil || errors.Is(err, io.EOF) {
				return fmt.Errorf("%w: %s shrank below %d bytes", ErrChanged, path, n.size)
			}
			return fmt.Errorf("image: read %s: %w", path, err)
		}
		b.placeBlocks(m, xx, off, b.buf[:want])
		off += int64(want)
		b.progress(int64(want))
	}
	if k, _ := f.ReadAt(b.buf[:1], n.size); k > 0 {
		return fmt.Errorf("%w: %s grew beyond %d bytes", ErrChanged, path, n.size)
	}
	m.finish()
	b.hashes[i] = xx.Sum64()
	binary.Write(b.digest, binary.LittleEndian, b.hashes[i])
	return b.w.err
}

// placeBlocks writes data (read at file offset off) block by block.
func (b *builder) placeBlocks(m *blockMap, xx *xxhash.Digest, off int64, data []byte) {
	var idx [8]byte
	for p := 0; p < len(data); p += blockSize {
		blk := data[p:min(p+blockSize, len(data))]
		if IsZero(blk) {
			m.add(0)
			continue
		}
		binary.LittleEndian.PutUint64(idx[:], uint64(off+int64(p))/blockSize)
		xx.Write(idx[:])
		xx.Write(blk)
		phys := b.w.alloc()
		b.w.writeBlock(phys, blk)
		m.add(phys)
	}
}

// skipHole turns the hole at block-aligned offset off, if any, into hole
// blocks without reading it, and returns the offset of the next data.
func (b *builder) skipHole(f *os.File, m *blockMap, off, size int64) int64 {
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		next = size
	case err != nil:
		return off
	}
	next = min(next, size) / blockSize * blockSize
	for ; off < next; off += blockSize {
		m.add(0)
	}
	return off
}

// path returns node i's source path; siblings come in a row, so the
// directory's path is computed once for all of them.
func (b *builder) path(i int32) string {
	n := &b.t.nodes[i]
	if b.parentPath == "" || b.pathParent != n.parent {
		b.pathParent, b.parentPath = n.parent, b.t.path(n.parent)
	}
	return b.parentPath + "/" + n.name
}

func (b *builder) progress(n int64) {
	b.done += n
	if b.opts.Progress != nil {
		b.opts.Progress(b.done, b.total)
	}
}

// layoutFile encodes the layout of the image just written, for a later
// build's base: the nodes in scan order, then lost+found.
func (b *builder) layoutFile(geo geometry) ([]byte, error) {
	nodes := b.t.nodes
	var e layoutEntry
	entry := func(i int) (*layoutEntry, []extent) {
		if i == len(nodes) {
			e = layoutEntry{name: "lost+found", kind: kindDir, ino: lostFound}
			return &e, b.lfExt
		}
		n := &nodes[i]
		e = layoutEntry{parent: n.parent, name: n.name, kind: n.kind, link: n.primary >= 0, ino: n.ino, hash: b.hashes[i], src: n.src}
		if n.kind != kindDir {
			e.size = n.size
		}
		if e.link {
			return &e, nil
		}
		r := b.nodeExt[i]
		return &e, b.exts[r.off : r.off+r.n]
	}
	// ~40 bytes per entry: grow the buffer once or twice, not ten times
	body, err := appendLayoutBody(make([]byte, 0, 60*len(nodes)), &geo, &b.backup, b.t.scanned, b.imageDigest, len(nodes)+1, entry)
	if err != nil {
		return nil, err
	}
	return appendLayoutFile(nil, body)
}

package image

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// writeBufBlocks is how many consecutive blocks are gathered before one
// pwrite: 1 MiB turns 150,000 small files into ~1,000 large writes.
const writeBufBlocks = 256

var errNoSpace = errors.New("image: out of blocks (sizing bug)")

// imageWriter lays blocks into the image file. A fresh image allocates
// data blocks in one forward sweep over the groups' data areas; an image
// on a base layout first replays each inode's base blocks, then takes the
// first free block from the start of the data area. It gathers consecutive
// blocks into large writes, and keeps the first error (sticky): every later
// call is a no-op and finish reports it.
type imageWriter struct {
	f   *os.File
	geo geometry
	err error

	group uint32 // forward sweep cursor: group and next block
	next  uint32

	firstFit bool     // allocate first fit over the bitmap, not by sweep
	low      uint32   // first fit: no free block below it
	replay   []extent // blocks reserved for the inode being written, in order
	rec      []extent // blocks allocated to the inode being written

	bitmap  []byte // one bit per block, whole image
	inoUsed []byte // one bit per inode (bit i: inode i+1)
	// itable holds the inode table of group itGroup only: inodes arrive in
	// ascending order, so each group's table is written once, when the
	// next group's first inode arrives (or at finish).
	itable  []byte
	itGroup uint32
	itUsed  uint32 // bytes of itable in use

	// onFinal, when set, learns of each chunk (of chunkBlocks blocks) that
	// will not change any more: written, and clear of the group headers
	// that finish writes.
	onFinal     func(chunk int)
	chunkBlocks uint32
	nextFinal   uint32
	// chunkDone counts written blocks per chunk when writes go anywhere
	// (first fit): a chunk is final once all its blocks are written, as
	// every block is written at most once. Nil for the forward sweep.
	chunkDone []uint32

	buf      []byte
	bufStart uint32
	bufN     uint32
	written  int64 // data bytes handed to the file

	// clone: the file started as a copy of the base image. Blocks this
	// build neither writes nor skips (leaves as the base's, same bytes)
	// are zeroed at finish, so the image is byte for byte what a build
	// into an empty file makes; dirty marks the chunks whose bytes may
	// differ from the base's.
	clone    bool
	baseUsed []byte // one bit per block: holding data in the base (the rest are zeros)
	wrote    []byte // one bit per block: written (or zeroed) by this build
	skipped  []byte // one bit per block: left as in the base
	dirty    []bool // per chunk
	scratch  []byte // the base's bytes, read to compare
}

func newImageWriter(f *os.File, geo geometry, inodes uint32) *imageWriter {
	w := &imageWriter{
		f: f, geo: geo,
		bitmap:  make([]byte, ceilDiv(uint64(geo.blocks), 8)),
		inoUsed: make([]byte, ceilDiv(uint64(geo.inodes()), 8)),
		// whole blocks, so a table's last block is written whole
		itable: make([]byte, min(ceilDiv(uint64(min(inodes, geo.ipg))*inodeSize, blockSize)*blockSize, uint64(geo.ipg)*inodeSize)),
		buf:    make([]byte, writeBufBlocks*blockSize),
		next:   geo.dataStart(0),
		low:    geo.dataStart(0),
	}
	for g := range geo.groups { // metadata blocks are in use from the start
		for b := geo.groupStart(g); b < geo.dataStart(g); b++ {
			w.mark(b)
		}
	}
	for ino := uint32(1); ino < firstIno; ino++ { // reserved inodes
		w.inoUsed[(ino-1)/8] |= 1 << ((ino - 1) % 8)
	}
	return w
}

// startClone says the file holds a copy of the base image of the same
// size, whose blocks in use are marked in baseUsed (the others are zero):
// blocks a build leaves alone need not be written.
func (w *imageWriter) startClone(chunks int, baseUsed []byte) {
	w.clone, w.baseUsed = true, baseUsed
	w.wrote = make([]byte, len(w.bitmap))
	w.skipped = make([]byte, len(w.bitmap))
	w.dirty = make([]bool, chunks)
}

// touched records that blocks [start, end) now hold this build's bytes.
func (w *imageWriter) touched(start, end uint32) {
	if !w.clone {
		return
	}
	for b := start; b < end; b++ {
		w.wrote[b/8] |= 1 << (b % 8)
		w.dirty[b/w.chunkBlocks] = true
	}
}

// skipBlock takes block b as it is in the cloned base: the caller knows
// its bytes are the ones it would write.
func (w *imageWriter) skipBlock(b uint32) {
	if w.err != nil {
		return
	}
	w.skipped[b/8] |= 1 << (b % 8)
	if w.chunkDone != nil {
		w.countFinal(b, b+1)
	}
}

// zeroRest zeroes every block of a cloned image that held data in the
// base and that this build neither wrote nor skipped (the base's freed
// blocks, the rest of its inode tables), punching holes, as an empty file
// has them.
func (w *imageWriter) zeroRest() {
	if !w.clone || w.err != nil {
		return
	}
	left := func(b uint32) bool {
		return w.baseUsed[b/8]&(1<<(b%8)) != 0 && w.wrote[b/8]&(1<<(b%8)) == 0 && w.skipped[b/8]&(1<<(b%8)) == 0
	}
	for b := uint32(0); b < w.geo.blocks; {
		if b%8 == 0 && b+8 <= w.geo.blocks && w.baseUsed[b/8]&^(w.wrote[b/8]|w.skipped[b/8]) == 0 {
			b += 8
			continue
		}
		if !left(b) {
			b++
			continue
		}
		end := b + 1
		for end < w.geo.blocks && left(end) {
			end++
		}
		off, n := int64(b)*blockSize, int64(end-b)*blockSize
		if err := unix.Fallocate(int(w.f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n); err != nil {
			zeros := make([]byte, min(n, 1<<20))
			for o := off; o < off+n; o += int64(len(zeros)) {
				if _, err := w.f.WriteAt(zeros[:min(int64(len(zeros)), off+n-o)], o); err != nil {
					w.fail(fmt.Errorf("image: zero %s: %w", w.f.Name(), err))
					return
				}
			}
		}
		w.touched(b, end)
		b = end
	}
}

func (w *imageWriter) mark(b uint32)      { w.bitmap[b/8] |= 1 << (b % 8) }
func (w *imageWriter) unmark(b uint32)    { w.bitmap[b/8] &^= 1 << (b % 8) }
func (w *imageWriter) used(b uint32) bool { return w.bitmap[b/8]&(1<<(b%8)) != 0 }

// beginInode starts an inode whose allocations first take the blocks of
// replay (already marked in use), in order.
func (w *imageWriter) beginInode(replay []extent) {
	w.replay = append(w.replay[:0], replay...)
	w.rec = w.rec[:0]
}

// endInode frees the replay blocks the inode did not take and returns the
// blocks it took, in allocation order (valid until the next beginInode).
func (w *imageWriter) endInode() []extent {
	for _, x := range w.replay {
		for b := x.start; b < x.start+x.n; b++ {
			w.unmark(b)
		}
		w.low = min(w.low, x.start)
	}
	w.replay = w.replay[:0]
	return w.rec
}

// alloc returns the next block for the inode being written.
func (w *imageWriter) alloc() uint32 {
	var b uint32
	switch {
	case len(w.replay) > 0:
		x := &w.replay[0]
		b = x.start
		if x.start, x.n = x.start+1, x.n-1; x.n == 0 {
			w.replay = w.replay[1:]
		}
	case w.firstFit:
		b = w.firstFree()
	default:
		b = w.sweep()
	}
	if b == 0 {
		return 0
	}
	if n := len(w.rec); n > 0 && w.rec[n-1].start+w.rec[n-1].n == b {
		w.rec[n-1].n++
	} else {
		w.rec = append(w.rec, extent{b, 1})
	}
	return b
}

// sweep returns the next free data block of the forward sweep.
func (w *imageWriter) sweep() uint32 {
	for w.next >= w.geo.groupEnd(w.group) {
		if w.group+1 >= w.geo.groups {
			w.fail(errNoSpace)
			return 0
		}
		w.group++
		w.next = w.geo.dataStart(w.group)
	}
	b := w.next
	w.next++
	w.mark(b)
	return b
}

// firstFree returns the lowest free block (metadata blocks are marked).
func (w *imageWriter) firstFree() uint32 {
	for b := w.low; b < w.geo.blocks; b++ {
		if b%8 == 0 && w.bitmap[b/8] == 0xff {
			b += 7
			continue
		}
		if !w.used(b) {
			w.mark(b)
			w.low = b + 1
			return b
		}
	}
	w.fail(errNoSpace)
	return 0
}

func (w *imageWriter) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// writeBlock writes one block (short data is zero-padded) at block b.
func (w *imageWriter) writeBlock(b uint32, data []byte) {
	if w.err != nil {
		return
	}
	if w.bufN == writeBufBlocks || (w.bufN > 0 && b != w.bufStart+w.bufN) {
		w.flush()
	}
	if w.bufN == 0 {
		w.bufStart = b
	}
	dst := w.buf[w.bufN*blockSize : (w.bufN+1)*blockSize]
	n := copy(dst, data)
	clear(dst[n:])
	w.bufN++
}

func (w *imageWriter) flush() {
	if w.bufN == 0 || w.err != nil {
		return
	}
	n := int64(w.bufN) * blockSize
	start, end := w.bufStart, w.bufStart+w.bufN
	w.bufN = 0
	w.writeBlocks(w.buf[:n], start)
	if w.chunkDone != nil {
		w.countFinal(start, end)
		return
	}
	w.reportFinal(end)
}

// countFinal counts blocks [start, end) written and hands onFinal the
// chunks that are now wholly written and clear of group headers.
func (w *imageWriter) countFinal(start, end uint32) {
	if w.onFinal == nil || w.err != nil {
		return
	}
	for b := start; b < end; b++ {
		c := b / w.chunkBlocks
		w.chunkDone[c]++
		cs, ce := c*w.chunkBlocks, min((c+1)*w.chunkBlocks, w.geo.blocks)
		if w.chunkDone[c] == ce-cs && !w.touchesHeader(cs, ce) {
			w.onFinal(int(c))
		}
	}
}

// reportFinal hands onFinal the chunks that lie wholly below block end:
// a fresh layout's allocation only moves forward (on a base, countFinal
// decides instead), so nothing below it is written again,
// except the group headers, which finish writes.
func (w *imageWriter) reportFinal(end uint32) {
	if w.onFinal == nil || w.err != nil {
		return
	}
	for (w.nextFinal+1)*w.chunkBlocks <= end {
		c := w.nextFinal
		w.nextFinal++
		if !w.touchesHeader(c*w.chunkBlocks, (c+1)*w.chunkBlocks) {
			w.onFinal(int(c))
		}
	}
}

// touchesHeader reports whether blocks [start, end) overlap a group's
// superblock copy, descriptors, bitmaps or inode table. A chunk is smaller
// than a group, so it meets at most two groups.
func (w *imageWriter) touchesHeader(start, end uint32) bool {
	g := start / blocksPerGroup
	if start < w.geo.dataStart(g) {
		return true
	}
	return (end-1)/blocksPerGroup != g
}

// writeAt writes raw bytes at a byte offset, outside the block buffer.
func (w *imageWriter) writeAt(p []byte, off int64) {
	if w.err != nil {
		return
	}
	w.flush()
	if w.clone && off%blockSize == 0 && len(p)%blockSize == 0 {
		w.writeBlocks(p, uint32(off/blockSize)) // block by block: only what differs
		return
	}
	if w.clone && len(p) > 0 && w.same(p, off) {
		for b := uint32(off / blockSize); int64(b)*blockSize < off+int64(len(p)); b++ {
			w.skipped[b/8] |= 1 << (b % 8) // the base's bytes already
		}
		return
	}
	if _, err := w.f.WriteAt(p, off); err != nil {
		w.fail(fmt.Errorf("image: write %s: %w", w.f.Name(), err))
	}
	if len(p) > 0 {
		w.touched(uint32(off/blockSize), uint32((off+int64(len(p))+blockSize-1)/blockSize))
	}
}

// writeBlocks writes whole blocks p at block start (the caller counts
// them toward their chunks being final). In a clone, blocks
// whose bytes the base already has there are skipped, not written: their
// chunks stay the base's (no read, no hash) unless something else changes.
func (w *imageWriter) writeBlocks(p []byte, start uint32) {
	end := start + uint32(len(p)/blockSize)
	if !w.clone {
		if _, err := w.f.WriteAt(p, int64(start)*blockSize); err != nil {
			w.fail(fmt.Errorf("image: write %s: %w", w.f.Name(), err))
		}
		w.written += int64(len(p))
	} else {
		old := w.old(len(p))
		_, rerr := w.f.ReadAt(old, int64(start)*blockSize)
		for b := start; b < end; {
			k := int(b-start) * blockSize
			if rerr == nil && bytes.Equal(p[k:k+blockSize], old[k:k+blockSize]) {
				w.skipped[b/8] |= 1 << (b % 8)
				b++
				continue
			}
			e := b + 1 // a run of differing blocks: one write
			for e < end && (rerr != nil || !bytes.Equal(p[int(e-start)*blockSize:int(e-start+1)*blockSize], old[int(e-start)*blockSize:int(e-start+1)*blockSize])) {
				e++
			}
			if _, err := w.f.WriteAt(p[k:int(e-start)*blockSize], int64(b)*blockSize); err != nil {
				w.fail(fmt.Errorf("image: write %s: %w", w.f.Name(), err))
				return
			}
			w.written += int64(e-b) * blockSize
			w.touched(b, e)
			b = e
		}
	}
}

// same reports whether the file already holds p at off (a clone's base
// bytes).
func (w *imageWriter) same(p []byte, off int64) bool {
	old := w.old(len(p))
	n, _ := w.f.ReadAt(old, off)
	return n == len(p) && bytes.Equal(old, p)
}

// old returns a scratch buffer of n bytes for reading the base's bytes.
func (w *imageWriter) old(n int) []byte {
	if cap(w.scratch) < n {
		w.scratch = make([]byte, n)
	}
	return w.scratch[:n]
}

var errInodeOrder = errors.New("image: inodes written out of group order")

// putInode encodes inode number ino into its group's table and returns the
// encoded bytes. Inodes must come in ascending group order.
func (w *imageWriter) putInode(ino uint32, in *inode) []byte {
	g := (ino - 1) / w.geo.ipg
	if g < w.itGroup {
		w.fail(errInodeOrder)
		return nil
	}
	if g > w.itGroup {
		w.flushInodeTable()
		w.itGroup = g
	}
	off := (ino - 1 - g*w.geo.ipg) * inodeSize
	b := w.itable[off : off+inodeSize]
	w.inoUsed[(ino-1)/8] |= 1 << ((ino - 1) % 8)
	in.encode(b)
	w.itUsed = max(w.itUsed, off+inodeSize)
	return b
}

// flushInodeTable writes the used part of the current group's inode table,
// to the end of its last block; the rest stays zero (a hole in the image
// file, zeroed in a clone).
func (w *imageWriter) flushInodeTable() {
	if w.itUsed == 0 {
		return
	}
	n := min(ceilDiv(uint64(w.itUsed), blockSize)*blockSize, uint64(len(w.itable))) // itable is whole blocks
	w.writeAt(w.itable[:n], int64(w.geo.inodeTable(w.itGroup))*blockSize)
	clear(w.itable[:w.itUsed])
	w.itUsed = 0
}

// finish writes the inode tables, bitmaps, group descriptors and
// superblocks, and returns what they hold. The backup copies (groups 1, 3,
// 5, ...) hold backup when it is set, the primary's state otherwise.
func (w *imageWriter) finish(sb superblock, dirsPerGroup []uint16, backup *sbState) (sbState, error) {
	w.flush()
	w.flushInodeTable()
	geo := &w.geo
	st := sbState{time: sb.time, uuid: sb.uuid, hashSeed: sb.hashSeed, groups: make([]groupCounts, geo.groups)}
	for g := range geo.groups {
		bb := w.groupBlockBitmap(g)
		ib, usedIn := w.groupInodeBitmap(g)
		c := &st.groups[g]
		c.freeBlocks = uint16(w.geo.groupEnd(g) - w.geo.groupStart(g) - countBits(bb, w.geo.groupEnd(g)-w.geo.groupStart(g)))
		c.freeInodes = uint16(geo.ipg - usedIn)
		c.usedDirs = dirsPerGroup[g]
		st.freeBlocks += uint32(c.freeBlocks)
		st.freeInodes += uint32(c.freeInodes)
		w.writeAt(bb, int64(geo.blockBitmap(g))*blockSize)
		w.writeAt(ib, int64(geo.inodeBitmap(g))*blockSize)
	}
	if backup == nil {
		backup = &st
	}
	for g := range geo.groups {
		if !hasSuper(g) {
			continue
		}
		s := backup
		if g == 0 {
			s = &st
		}
		w.writeSuper(g, s)
	}
	w.zeroRest()
	return st, w.err
}

// writeSuper writes group g's superblock and descriptor table from s.
func (w *imageWriter) writeSuper(g uint32, s *sbState) {
	geo := &w.geo
	sb := superblock{
		inodes: geo.inodes(), blocks: geo.blocks, freeBlocks: s.freeBlocks, freeInodes: s.freeInodes,
		inodesPerGroup: geo.ipg, time: s.time, uuid: s.uuid, hashSeed: s.hashSeed,
		volumeName: volumeName, groupNr: uint16(g),
	}
	gdt := make([]byte, geo.gdtBlocks*blockSize)
	for i, c := range s.groups {
		d := groupDesc{
			blockBitmap: geo.blockBitmap(uint32(i)), inodeBitmap: geo.inodeBitmap(uint32(i)), inodeTable: geo.inodeTable(uint32(i)),
			freeBlocks: c.freeBlocks, freeInodes: c.freeInodes, usedDirs: c.usedDirs,
		}
		d.encode(gdt[i*groupDescSize:])
	}
	sbuf := make([]byte, 1024)
	sb.encode(sbuf)
	start := int64(geo.groupStart(g)) * blockSize
	if g == 0 {
		start += superOffset
	}
	w.writeAt(sbuf, start)
	w.writeAt(gdt, int64(geo.groupStart(g)+1)*blockSize)
}

// groupBlockBitmap returns group g's block bitmap block; bits past the end
// of a short last group are set, as e2fsck expects.
func (w *imageWriter) groupBlockBitmap(g uint32) []byte {
	b := make([]byte, blockSize)
	start, end := w.geo.groupStart(g), w.geo.groupEnd(g)
	for i := start; i < end; i++ {
		if w.bitmap[i/8]&(1<<(i%8)) != 0 {
			b[(i-start)/8] |= 1 << ((i - start) % 8)
		}
	}
	for i := end - start; i < blocksPerGroup; i++ {
		b[i/8] |= 1 << (i % 8)
	}
	return b
}

// groupInodeBitmap returns group g's inode bitmap block and how many of its
// inodes are in use (reserved or written); padding bits are set.
func (w *imageWriter) groupInodeBitmap(g uint32) ([]byte, uint32) {
	b := make([]byte, blockSize)
	first := g * w.geo.ipg // bit index of the group's first inode
	var used uint32
	for i := uint32(0); i < w.geo.ipg; i++ {
		if j := first + i; w.inoUsed[j/8]&(1<<(j%8)) != 0 {
			b[i/8] |= 1 << (i % 8)
			used++
		}
	}
	for i := w.geo.ipg; i < blockSize*8; i++ {
		b[i/8] |= 1 << (i % 8)
	}
	return b, used
}

func countBits(b []byte, n uint32) uint32 {
	var c uint32
	for i := uint32(0); i < n; i++ {
		if b[i/8]&(1<<(i%8)) != 0 {
			c++
		}
	}
	return c
}

package image

import (
	"errors"
	"fmt"
	"os"
)

// writeBufBlocks is how many consecutive blocks are gathered before one
// pwrite: 1 MiB turns 150,000 small files into ~1,000 large writes.
const writeBufBlocks = 256

var errNoSpace = errors.New("image: out of blocks (sizing bug)")

// imageWriter lays blocks into the image file. It allocates data blocks
// in one forward sweep over the groups' data areas, gathers consecutive
// blocks into large writes, and keeps the first error (sticky): every later
// call is a no-op and finish reports it.
type imageWriter struct {
	f   *os.File
	geo geometry
	err error

	group uint32 // allocation cursor: group and next block
	next  uint32

	bitmap []byte // one bit per block, whole image
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

	buf      []byte
	bufStart uint32
	bufN     uint32
	written  int64 // data bytes handed to the file
}

func newImageWriter(f *os.File, geo geometry, inodes uint32) *imageWriter {
	w := &imageWriter{
		f: f, geo: geo,
		bitmap: make([]byte, ceilDiv(uint64(geo.blocks), 8)),
		itable: make([]byte, uint64(min(inodes, geo.ipg))*inodeSize),
		buf:    make([]byte, writeBufBlocks*blockSize),
		next:   geo.dataStart(0),
	}
	for g := range geo.groups { // metadata blocks are in use from the start
		for b := geo.groupStart(g); b < geo.dataStart(g); b++ {
			w.mark(b)
		}
	}
	return w
}

func (w *imageWriter) mark(b uint32) { w.bitmap[b/8] |= 1 << (b % 8) }

// alloc returns the next free data block.
func (w *imageWriter) alloc() uint32 {
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
	if _, err := w.f.WriteAt(w.buf[:n], int64(w.bufStart)*blockSize); err != nil {
		w.fail(fmt.Errorf("image: write %s: %w", w.f.Name(), err))
	}
	w.written += n
	end := w.bufStart + w.bufN
	w.bufN = 0
	w.reportFinal(end)
}

// reportFinal hands onFinal the chunks that lie wholly below block end:
// allocation only moves forward, so nothing below it is written again,
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
	if _, err := w.f.WriteAt(p, off); err != nil {
		w.fail(fmt.Errorf("image: write %s: %w", w.f.Name(), err))
	}
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
	in.encode(b)
	w.itUsed = max(w.itUsed, off+inodeSize)
	return b
}

// flushInodeTable writes the used part of the current group's inode table;
// the rest stays zero (a hole in the image file).
func (w *imageWriter) flushInodeTable() {
	if w.itUsed == 0 {
		return
	}
	w.writeAt(w.itable[:w.itUsed], int64(w.geo.inodeTable(w.itGroup))*blockSize)
	clear(w.itable[:w.itUsed])
	w.itUsed = 0
}

// finish writes the inode tables, bitmaps, group descriptors and
// superblocks, and returns the sticky error.
func (w *imageWriter) finish(sb superblock, dirsPerGroup []uint16, usedInodes uint32) error {
	w.flush()
	w.flushInodeTable()
	geo := &w.geo
	descs := make([]groupDesc, geo.groups)
	var freeBlocks, freeInodes uint32
	for g := range geo.groups {
		d := &descs[g]
		d.blockBitmap, d.inodeBitmap, d.inodeTable = geo.blockBitmap(g), geo.inodeBitmap(g), geo.inodeTable(g)
		bb := w.groupBlockBitmap(g)
		ib, usedIn := w.groupInodeBitmap(g, usedInodes)
		d.freeBlocks = uint16(w.geo.groupEnd(g) - w.geo.groupStart(g) - countBits(bb, w.geo.groupEnd(g)-w.geo.groupStart(g)))
		d.freeInodes = uint16(geo.ipg - usedIn)
		d.usedDirs = dirsPerGroup[g]
		freeBlocks += uint32(d.freeBlocks)
		freeInodes += uint32(d.freeInodes)
		w.writeAt(bb, int64(d.blockBitmap)*blockSize)
		w.writeAt(ib, int64(d.inodeBitmap)*blockSize)
	}
	sb.blocks, sb.inodes, sb.inodesPerGroup = geo.blocks, geo.inodes(), geo.ipg
	sb.freeBlocks, sb.freeInodes = freeBlocks, freeInodes
	gdt := make([]byte, geo.gdtBlocks*blockSize)
	for g := range descs {
		descs[g].encode(gdt[g*groupDescSize:])
	}
	sbuf := make([]byte, 1024)
	for g := range geo.groups {
		if !hasSuper(g) {
			continue
		}
		sb.groupNr = uint16(g)
		sb.encode(sbuf)
		start := int64(geo.groupStart(g)) * blockSize
		if g == 0 {
			start += superOffset
		}
		w.writeAt(sbuf, start)
		w.writeAt(gdt, int64(geo.groupStart(g)+1)*blockSize)
	}
	return w.err
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
// inodes are in use; inodes 1..usedInodes are in use, padding bits are set.
func (w *imageWriter) groupInodeBitmap(g, usedInodes uint32) ([]byte, uint32) {
	b := make([]byte, blockSize)
	first := g*w.geo.ipg + 1
	var used uint32
	for i := uint32(0); i < w.geo.ipg; i++ {
		if first+i <= usedInodes {
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

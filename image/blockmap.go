package image

import (
	"encoding/binary"
	"errors"
)

var errTooManyBlocks = errors.New("image: file needs more blocks than triple indirection maps")

// blockMap builds one inode's block pointers as its data blocks arrive in
// order. It holds at most one open indirect block per depth (3 × 4 KiB),
// whatever the file size. An indirect block is allocated when it is full or
// the file ends, so it lands right after the data it maps and the image is
// written front to back; one that maps only holes is not allocated at all.
type blockMap struct {
	w     *imageWriter
	in    *inode
	n     uint64 // logical blocks placed so far
	depth int    // depth of the indirect tree being filled, 0 while direct
	last  uint64 // index of the last block placed within that tree
	level [3][ptrsPerBlock]uint32
	dirty [3]bool
	enc   [blockSize]byte
}

func newBlockMap(w *imageWriter, in *inode) *blockMap {
	return &blockMap{w: w, in: in}
}

// add places the next logical block at physical block p (0: a hole).
func (m *blockMap) add(p uint32) {
	i := m.n
	m.n++
	if p != 0 {
		m.in.blocks++
	}
	if i < directBlocks {
		m.in.block[i] = p
		return
	}
	i -= directBlocks
	depth, span := 1, uint64(ptrsPerBlock)
	for i >= span {
		i -= span
		depth++
		span *= ptrsPerBlock
	}
	if depth > 3 {
		m.w.fail(errTooManyBlocks)
		return
	}
	m.depth, m.last = depth, i
	leaf := depth - 1
	m.level[leaf][i%ptrsPerBlock] = p
	m.dirty[leaf] = true
	for lvl, idx := leaf, i; lvl >= 0 && idx%ptrsPerBlock == ptrsPerBlock-1; lvl, idx = lvl-1, idx/ptrsPerBlock {
		m.close(lvl, idx)
	}
}

// close writes the indirect block open at level lvl (0 is the top of the
// tree), whose global index at that level is idx, and hangs it on its parent.
func (m *blockMap) close(lvl int, idx uint64) {
	ptr := uint32(0)
	if !allZero(m.level[lvl][:]) {
		ptr = m.w.alloc()
		for j, v := range m.level[lvl] {
			binary.LittleEndian.PutUint32(m.enc[4*j:], v)
		}
		m.w.writeBlock(ptr, m.enc[:])
		m.in.blocks++
	}
	clear(m.level[lvl][:])
	m.dirty[lvl] = false
	if lvl == 0 {
		m.in.block[directBlocks-1+m.depth] = ptr
		return
	}
	m.level[lvl-1][(idx/ptrsPerBlock)%ptrsPerBlock] = ptr
	m.dirty[lvl-1] = true
}

// finish closes the indirect blocks still open at the end of the file.
func (m *blockMap) finish() {
	if m.depth == 0 {
		return
	}
	idx := m.last
	for lvl := m.depth - 1; lvl >= 0; lvl-- {
		if m.dirty[lvl] {
			m.close(lvl, idx)
		}
		idx /= ptrsPerBlock
	}
}

func allZero(p []uint32) bool {
	for _, v := range p {
		if v != 0 {
			return false
		}
	}
	return true
}

package image

import "encoding/binary"

// dirEntry is one name in a directory block.
type dirEntry struct {
	name string
	ino  uint32
	ft   uint8
}

// recLen is the smallest record for a name: 8-byte header, name padded to 4.
func recLen(nameLen int) int { return 8 + (nameLen+3)&^3 }

// dirEntries lists directory d as it is stored: ".", "..", then the
// children sorted by name bytes (the root also holds lost+found).
func (t *tree) dirEntries(d int32) []dirEntry {
	n := &t.nodes[d]
	ents := make([]dirEntry, 0, n.count+3)
	ents = append(ents, dirEntry{".", n.ino, ftDir}, dirEntry{"..", t.nodes[n.parent].ino, ftDir})
	lf := d == 0
	for c := n.first; c < n.first+n.count; c++ {
		cn := &t.nodes[c]
		if lf && cn.name > "lost+found" {
			ents = append(ents, dirEntry{"lost+found", lostFound, ftDir})
			lf = false
		}
		ents = append(ents, dirEntry{cn.name, cn.ino, fileType(t.nodes[c].kind)})
	}
	if lf {
		ents = append(ents, dirEntry{"lost+found", lostFound, ftDir})
	}
	return ents
}

func fileType(k nodeKind) uint8 {
	switch k {
	case kindDir:
		return ftDir
	case kindSymlink:
		return ftLnk
	}
	return ftReg
}

// dirBlockCount is how many blocks encodeDir will produce for ents.
func dirBlockCount(ents []dirEntry) uint64 {
	blocks, used := uint64(1), 0
	for _, e := range ents {
		r := recLen(len(e.name))
		if used+r > blockSize {
			blocks++
			used = 0
		}
		used += r
	}
	return blocks
}

// encodeDir lays ents into directory blocks. Entries never cross a block;
// the last entry of each block stretches to the block's end.
func encodeDir(ents []dirEntry) []byte {
	out := make([]byte, dirBlockCount(ents)*blockSize)
	le := binary.LittleEndian
	pos, prev := 0, -1
	for _, e := range ents {
		r := recLen(len(e.name))
		if pos%blockSize+r > blockSize { // next block; stretch the previous entry
			next := (pos/blockSize + 1) * blockSize
			le.PutUint16(out[prev+4:], uint16(next-prev))
			pos = next
		}
		le.PutUint32(out[pos:], e.ino)
		le.PutUint16(out[pos+4:], uint16(r))
		out[pos+6] = uint8(len(e.name))
		out[pos+7] = e.ft
		copy(out[pos+8:], e.name)
		prev, pos = pos, pos+r
	}
	le.PutUint16(out[prev+4:], uint16(len(out)-prev))
	return out
}

package image

import "encoding/binary"

// On-disk constants of ext2 revision 1 as this writer uses them. Offsets and
// values follow the kernel's fs/ext2/ext2.h and e2fsprogs' ext2_fs.h.
const (
	blockSize      = 4096 // 4 KiB: page-sized, the common choice for images this big
	logBlockSize   = 2    // blockSize = 1024 << logBlockSize
	blocksPerGroup = blockSize * 8
	inodeSize      = 256 // room for nanosecond timestamps (extra fields), no 2038 limit
	extraIsize     = 32  // bytes of the extra inode fields in use
	maxInodesPerGr = blockSize * 8
	inodesPerBlock = blockSize / inodeSize
	ptrsPerBlock   = blockSize / 4
	groupDescSize  = 32
	superOffset    = 1024 // the primary superblock sits 1 KiB into block 0
	directBlocks   = 12   // i_block[0..11]; 12, 13, 14 are single, double, triple indirect

	volumeName = "loopcast"

	rootIno    = 2
	lostFound  = 11 // first non-reserved inode: lost+found, as mke2fs makes it
	firstIno   = 11
	linkMax    = 32000 // EXT2_LINK_MAX
	maxNameLen = 255
	// fastSymlinkMax: targets shorter than i_block's 60 bytes live in the inode.
	fastSymlinkMax = 59
	maxSymlinkLen  = blockSize - 1

	ext2Magic        = 0xEF53
	incompatFiletype = 0x0002
	roCompatSparse   = 0x0001
	roCompatLargeFil = 0x0002
	flagsSignedHash  = 0x0001
	hashHalfMD4      = 1

	sIFREG = 0o100000
	sIFDIR = 0o040000
	sIFLNK = 0o120000

	ftReg = 1
	ftDir = 2
	ftLnk = 7
)

// maxFileBlocks is the most blocks (data plus indirect) one inode can own:
// i_blocks counts 512-byte sectors in 32 bits (no huge_file feature).
const maxFileBlocks = (1<<32 - 1) / (blockSize / 512)

// hasSuper reports whether group g holds a superblock backup under
// sparse_super: groups 0, 1 and powers of 3, 5 and 7.
func hasSuper(g uint32) bool {
	if g <= 1 {
		return true
	}
	for _, base := range []uint32{3, 5, 7} {
		n := base
		for n < g {
			n *= base
		}
		if n == g {
			return true
		}
	}
	return false
}

// superblock holds the fields this writer sets; encode fills a 1 KiB block.
type superblock struct {
	inodes, blocks, freeBlocks, freeInodes uint32
	inodesPerGroup                         uint32
	time                                   uint32 // mkfs, write and last check time
	uuid                                   [16]byte
	hashSeed                               [16]byte
	volumeName                             string
	groupNr                                uint16 // which group this copy lives in
}

func (s *superblock) encode(b []byte) {
	le := binary.LittleEndian
	clear(b[:1024])
	le.PutUint32(b[0:], s.inodes)
	le.PutUint32(b[4:], s.blocks)
	le.PutUint32(b[8:], 0) // reserved blocks: a read-only image needs none
	le.PutUint32(b[12:], s.freeBlocks)
	le.PutUint32(b[16:], s.freeInodes)
	le.PutUint32(b[20:], 0) // first data block: 0 for blocks over 1 KiB
	le.PutUint32(b[24:], logBlockSize)
	le.PutUint32(b[28:], logBlockSize)
	le.PutUint32(b[32:], blocksPerGroup)
	le.PutUint32(b[36:], blocksPerGroup)
	le.PutUint32(b[40:], s.inodesPerGroup)
	le.PutUint32(b[48:], s.time) // s_wtime
	le.PutUint16(b[54:], 0xFFFF) // s_max_mnt_count: -1, no forced checks
	le.PutUint16(b[56:], ext2Magic)
	le.PutUint16(b[58:], 1)      // s_state: clean
	le.PutUint16(b[60:], 1)      // s_errors: continue
	le.PutUint32(b[64:], s.time) // s_lastcheck
	le.PutUint32(b[76:], 1)      // s_rev_level: dynamic
	le.PutUint32(b[84:], firstIno)
	le.PutUint16(b[88:], inodeSize)
	le.PutUint16(b[90:], s.groupNr)
	le.PutUint32(b[96:], incompatFiletype)
	le.PutUint32(b[100:], roCompatSparse|roCompatLargeFil)
	copy(b[104:120], s.uuid[:])
	copy(b[120:136], s.volumeName)
	copy(b[236:252], s.hashSeed[:])
	b[252] = hashHalfMD4
	le.PutUint32(b[264:], s.time) // s_mkfs_time
	le.PutUint16(b[348:], extraIsize)
	le.PutUint16(b[350:], extraIsize)
	le.PutUint32(b[352:], flagsSignedHash)
}

// groupDesc is one entry of the group descriptor table.
type groupDesc struct {
	blockBitmap, inodeBitmap, inodeTable uint32
	freeBlocks, freeInodes, usedDirs     uint16
}

func (d *groupDesc) encode(b []byte) {
	le := binary.LittleEndian
	clear(b[:groupDescSize])
	le.PutUint32(b[0:], d.blockBitmap)
	le.PutUint32(b[4:], d.inodeBitmap)
	le.PutUint32(b[8:], d.inodeTable)
	le.PutUint16(b[12:], d.freeBlocks)
	le.PutUint16(b[14:], d.freeInodes)
	le.PutUint16(b[16:], d.usedDirs)
}

// inode holds the fields this writer sets.
type inode struct {
	mode     uint16
	uid, gid uint32
	size     uint64
	sec      int64 // atime = ctime = mtime
	nsec     uint32
	links    uint16
	blocks   uint32 // 4 KiB blocks owned (data + indirect)
	block    [15]uint32
	inline   []byte // fast symlink target, stored in i_block
}

func (in *inode) encode(b []byte) {
	le := binary.LittleEndian
	clear(b[:inodeSize])
	le.PutUint16(b[0:], in.mode)
	le.PutUint16(b[2:], uint16(in.uid))
	le.PutUint32(b[4:], uint32(in.size))
	for _, off := range []int{8, 12, 16} { // atime, ctime, mtime
		le.PutUint32(b[off:], uint32(in.sec))
	}
	le.PutUint16(b[24:], uint16(in.gid))
	le.PutUint16(b[26:], in.links)
	le.PutUint32(b[28:], in.blocks*(blockSize/512))
	if in.inline != nil {
		copy(b[40:100], in.inline)
	} else {
		for i, p := range in.block {
			le.PutUint32(b[40+4*i:], p)
		}
	}
	le.PutUint32(b[108:], uint32(in.size>>32))
	le.PutUint16(b[120:], uint16(in.uid>>16))
	le.PutUint16(b[122:], uint16(in.gid>>16))
	le.PutUint16(b[128:], extraIsize)
	extra := timeExtra(in.sec, in.nsec)
	for _, off := range []int{132, 136, 140} { // ctime, mtime, atime extra
		le.PutUint32(b[off:], extra)
	}
}

// timeExtra encodes the extra timestamp word: nanoseconds in the upper 30
// bits, and in the low 2 bits the epoch bits extending seconds past 2038.
func timeExtra(sec int64, nsec uint32) uint32 {
	epoch := uint32((sec-int64(int32(sec)))>>32) & 3
	return nsec<<2 | epoch
}

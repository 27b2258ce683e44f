package image

import "fmt"

// Sizing defaults. Free space in the image is all zeros, so whole free
// chunks are never sent; headroom costs disk on the hosts, not bandwidth,
// and gives a later build on the same layout room for new files.
const (
	DefaultHeadroomPct = 10  // extra blocks and inodes, percent of what the tree needs
	minHeadroomBlocks  = 256 // at least 1 MiB of free blocks
	minHeadroomInodes  = 64
	minImageBlocks     = 256 // 1 MiB: one chunk at the smallest
	minInodesPerGroup  = inodesPerBlock
	// minLastGroupData keeps a trailing group from being all metadata.
	minLastGroupData = 64
)

// geometry is the fixed layout of an image: its groups and where each
// group's bitmaps and inode table live.
type geometry struct {
	blocks    uint32 // total blocks
	groups    uint32
	ipg       uint32 // inodes per group
	itBlocks  uint32 // inode table blocks per group
	gdtBlocks uint32 // group descriptor table blocks (in each superblock copy)
}

func (g *geometry) inodes() uint32             { return g.groups * g.ipg }
func (g *geometry) groupStart(i uint32) uint32 { return i * blocksPerGroup }
func (g *geometry) groupEnd(i uint32) uint32 {
	return min(g.blocks, (i+1)*blocksPerGroup)
}
func (g *geometry) superBlocks(i uint32) uint32 {
	if hasSuper(i) {
		return 1 + g.gdtBlocks
	}
	return 0
}
func (g *geometry) blockBitmap(i uint32) uint32 { return g.groupStart(i) + g.superBlocks(i) }
func (g *geometry) inodeBitmap(i uint32) uint32 { return g.blockBitmap(i) + 1 }
func (g *geometry) inodeTable(i uint32) uint32  { return g.blockBitmap(i) + 2 }
func (g *geometry) dataStart(i uint32) uint32   { return g.inodeTable(i) + g.itBlocks }
func (g *geometry) overhead(i uint32) uint32    { return g.superBlocks(i) + 2 + g.itBlocks }

// layoutFor returns the geometry for groups groups holding at least inodes
// inodes, with blocks unset.
func layoutFor(groups uint32, inodes uint64) (geometry, bool) {
	ipg := ceilDiv(inodes, uint64(groups))
	ipg = max(ceilDiv(ipg, minInodesPerGroup)*minInodesPerGroup, minInodesPerGroup)
	if ipg > maxInodesPerGr {
		return geometry{}, false
	}
	return geometry{
		groups:    groups,
		ipg:       uint32(ipg),
		itBlocks:  uint32(ipg / inodesPerBlock),
		gdtBlocks: uint32(ceilDiv(uint64(groups)*groupDescSize, blockSize)),
	}, true
}

func (g *geometry) totalOverhead() uint64 {
	var sum uint64
	for i := range g.groups {
		sum += uint64(g.overhead(i))
	}
	return sum
}

// planGeometry sizes an image for dataBlocks blocks of data and inodes
// inodes (both with headroom already added): the fewest groups that fit.
func planGeometry(dataBlocks, inodes uint64) (geometry, error) {
	for groups := uint32(1); groups <= maxGroups; groups++ {
		g, ok := layoutFor(groups, inodes)
		if !ok {
			continue
		}
		total := max(dataBlocks+g.totalOverhead(), minImageBlocks)
		last := uint64(groups-1) * blocksPerGroup
		// the last group must hold its own metadata and some data
		total = max(total, last+uint64(g.overhead(groups-1))+minLastGroupData)
		if total > uint64(groups)*blocksPerGroup {
			continue
		}
		g.blocks = uint32(total)
		return g, nil
	}
	return geometry{}, fmt.Errorf("image: %d blocks and %d inodes exceed what this writer lays out", dataBlocks, inodes)
}

// fixedGeometry lays out an image of exactly size bytes (rounded down to
// blocks) and checks that dataBlocks and inodes fit in it.
func fixedGeometry(size int64, dataBlocks, inodes uint64) (geometry, error) {
	total := uint64(size / blockSize)
	if total < minImageBlocks || total > uint64(maxGroups)*blocksPerGroup {
		return geometry{}, fmt.Errorf("image: size %d bytes out of range", size)
	}
	groups := uint32(ceilDiv(total, blocksPerGroup))
	g, ok := layoutFor(groups, inodes)
	if ok && groups > 1 && total-uint64(groups-1)*blocksPerGroup < uint64(g.overhead(groups-1))+minLastGroupData {
		total = uint64(groups-1) * blocksPerGroup // drop a trailing group too small to use
		groups--
		g, ok = layoutFor(groups, inodes)
	}
	if !ok {
		return geometry{}, fmt.Errorf("%w: %d inodes do not fit in %d bytes", ErrTooLarge, inodes, size)
	}
	g.blocks = uint32(total)
	if avail := total - g.totalOverhead(); dataBlocks > avail {
		return geometry{}, fmt.Errorf("%w: the tree needs %d blocks of 4 KiB, %d bytes hold %d", ErrTooLarge, dataBlocks, size, avail)
	}
	return g, nil
}

// maxGroups keeps block numbers within 32 bits: 16 TiB at 4 KiB blocks.
const maxGroups = 1 << 17

func ceilDiv(a, b uint64) uint64 { return (a + b - 1) / b }

// fileBlocksUpper is the most blocks a file of size bytes can own: every
// data block plus the indirect blocks that map them. Holes only lower it.
func fileBlocksUpper(size int64) uint64 {
	return blocksFor(ceilDiv(uint64(size), blockSize))
}

// blocksFor adds to n data blocks the indirect blocks that map them.
func blocksFor(n uint64) uint64 {
	total := n
	if n <= directBlocks {
		return total
	}
	n -= directBlocks
	for level := uint64(1); level <= 3 && n > 0; level++ {
		span := pow(ptrsPerBlock, level) // data blocks under one tree of this depth
		inTree := min(n, span)
		for e := uint64(1); e <= level; e++ { // indirect blocks at each depth
			total += ceilDiv(inTree, pow(ptrsPerBlock, e))
		}
		n -= inTree
	}
	if n > 0 {
		return 1 << 62 // beyond triple indirect
	}
	return total
}

func pow(b, e uint64) uint64 {
	r := uint64(1)
	for range e {
		r *= b
	}
	return r
}

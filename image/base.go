package image

import (
	"fmt"
	"slices"
)

// BaseReport says how a build used its base layout.
type BaseReport struct {
	// Kept is true when the image keeps the base's geometry and layout;
	// false when the tree no longer fits it and the image was laid out
	// afresh (Why says what did not fit).
	Kept bool
	Why  string
	// Inodes that kept their number, of which regular files with the same
	// size and content (so the same blocks); inodes newly numbered; base
	// inodes no longer used.
	Reused, Unchanged, New, Freed int
	// Cloned is true when the image started as a copy of the base image
	// (same size), so only what changed was written; Trusted counts the
	// files taken from it unread (same size and source stat as the base's
	// scan saw), Read the source bytes read.
	Cloned  bool
	Trusted int
	Read    int64
}

// dirName keys a base entry by its directory's entry index and its name.
type dirName struct {
	dir  int32
	name string
}

// basePlan places a tree on a base layout: which base inode each node
// keeps, and so which blocks it starts from.
type basePlan struct {
	l     *layout
	byDir map[dirName]int32
	owner map[uint32]int32 // inode → the entry that owns its blocks
	match []int32          // per node: the base entry whose inode it keeps, or -1
	lf    int32            // base entry of lost+found, or -1
}

func newBasePlan(l *layout) (*basePlan, error) {
	p := &basePlan{l: l, byDir: make(map[dirName]int32, len(l.entries)), owner: make(map[uint32]int32, len(l.entries)), lf: -1}
	for i := 1; i < len(l.entries); i++ {
		e := &l.entries[i]
		k := dirName{e.parent, e.name}
		if _, dup := p.byDir[k]; dup {
			return nil, fmt.Errorf("%w: entry %d: name %q twice in one directory", ErrLayout, i, e.name)
		}
		p.byDir[k] = int32(i)
		if !e.link {
			p.owner[e.ino] = int32(i)
		}
	}
	p.owner[rootIno] = 0
	if j, ok := p.byDir[dirName{0, "lost+found"}]; ok && l.entries[j].ino == lostFound && l.entries[j].kind == kindDir {
		p.lf = j
	}
	return p, nil
}

// usedBlocks marks the blocks that hold data in the base image: every
// inode's blocks, the inode table blocks its inodes are in, and the group
// headers; the others are zero (a build writes nothing else).
func (p *basePlan) usedBlocks(geo geometry) []byte {
	used := make([]byte, ceilDiv(uint64(geo.blocks), 8))
	mark := func(b uint32) {
		if b < geo.blocks {
			used[b/8] |= 1 << (b % 8)
		}
	}
	for _, x := range p.l.exts {
		for b := x.start; b < x.start+x.n; b++ {
			mark(b)
		}
	}
	perBlock := uint32(blockSize / inodeSize)
	for ino := uint32(1); ino < firstIno; ino++ {
		mark(geo.inodeTable(0) + (ino-1)/perBlock)
	}
	for i := range p.l.entries {
		ino := p.l.entries[i].ino
		g, k := (ino-1)/geo.ipg, (ino-1)%geo.ipg
		mark(geo.inodeTable(g) + k/perBlock)
	}
	for g := range geo.groups {
		for b := geo.groupStart(g); b < geo.inodeTable(g); b++ {
			mark(b)
		}
	}
	return used
}

// blocksOf returns the base blocks of inode ino.
func (p *basePlan) blocksOf(ino uint32) []extent {
	j, ok := p.owner[ino]
	if !ok {
		return nil
	}
	return p.l.blocks(&p.l.entries[j])
}

func extentBlocks(x []extent) uint64 {
	var n uint64
	for _, e := range x {
		n += uint64(e.n)
	}
	return n
}

// number gives t's nodes inode numbers on the base: a node keeps the
// inode of the base entry at the same path and of the same kind (the
// first claimant wins when a hard-link group split); the others take the
// lowest free numbers in scan order. It returns why the base does not fit,
// or "".
func (p *basePlan) number(t *tree) string {
	inodes := p.l.geo.inodes()
	taken := make([]uint64, inodes/64+1)
	take := func(ino uint32) { taken[ino/64] |= 1 << (ino % 64) }
	isTaken := func(ino uint32) bool { return taken[ino/64]&(1<<(ino%64)) != 0 }
	for ino := uint32(1); ino <= firstIno; ino++ {
		take(ino)
	}
	p.match = make([]int32, len(t.nodes))
	p.match[0] = 0
	t.nodes[0].ino = rootIno
	for i := 1; i < len(t.nodes); i++ {
		n := &t.nodes[i]
		n.ino, p.match[i] = 0, -1
		dir := p.match[n.parent]
		if dir < 0 || n.primary >= 0 {
			continue
		}
		j, ok := p.byDir[dirName{dir, n.name}]
		if !ok {
			continue
		}
		if e := &p.l.entries[j]; e.kind == n.kind && !isTaken(e.ino) {
			take(e.ino)
			n.ino, p.match[i] = e.ino, j
		}
	}
	next, high := uint32(firstIno+1), uint32(lostFound)
	for i := 1; i < len(t.nodes); i++ {
		n := &t.nodes[i]
		if n.primary >= 0 || n.ino != 0 {
			high = max(high, n.ino)
			continue
		}
		for next <= inodes && isTaken(next) {
			next++
		}
		if next > inodes {
			return fmt.Sprintf("the tree needs more than the base's %d inodes", inodes)
		}
		take(next)
		n.ino, high = next, max(high, next)
	}
	t.inodes = high
	return ""
}

// fits reports why the tree's blocks may not fit the base geometry, or "".
// It counts, per inode, the larger of what it may need and what it holds
// in the base: an inode keeps its base blocks until it is written.
func (p *basePlan) fits(b *builder) string {
	geo := &p.l.geo
	need := uint64(1)
	if p.lf >= 0 {
		need = max(need, extentBlocks(p.l.blocks(&p.l.entries[p.lf])))
	}
	for i := range b.t.nodes {
		n := &b.t.nodes[i]
		if n.primary >= 0 {
			continue
		}
		u := b.upperBlocks(int32(i))
		if p.match[i] >= 0 {
			u = max(u, extentBlocks(p.blocksOf(n.ino)))
		}
		need += u
	}
	if have := uint64(geo.blocks) - geo.totalOverhead(); need > have {
		return fmt.Sprintf("the tree may need %d blocks, the base holds %d", need, have)
	}
	return ""
}

// reserve marks the base blocks of every kept inode (and lost+found) in
// use before anything is written: new data goes only into free space.
func (p *basePlan) reserve(w *imageWriter, t *tree) error {
	mark := func(x []extent) error {
		for _, e := range x {
			for b := e.start; b < e.start+e.n; b++ {
				if w.used(b) {
					return fmt.Errorf("%w: block %d is metadata or listed twice", ErrLayout, b)
				}
				w.mark(b)
			}
		}
		return nil
	}
	if p.lf >= 0 {
		if err := mark(p.l.blocks(&p.l.entries[p.lf])); err != nil {
			return err
		}
	}
	for i := range t.nodes {
		if p.match[i] >= 0 && t.nodes[i].primary < 0 {
			if err := mark(p.blocksOf(t.nodes[i].ino)); err != nil {
				return err
			}
		}
	}
	return nil
}

// inodeOrder lists node indexes by inode number, so inode tables are
// filled group by group.
func inodeOrder(t *tree) []int32 {
	order := make([]int32, len(t.nodes))
	for i := range order {
		order[i] = int32(i)
	}
	slices.SortStableFunc(order, func(a, b int32) int {
		return int(t.nodes[a].ino) - int(t.nodes[b].ino)
	})
	return order
}

// report counts what the build kept of the base.
func (p *basePlan) report(b *builder) *BaseReport {
	r := &BaseReport{Kept: true, Cloned: b.w != nil && b.w.clone, Trusted: b.trusted, Read: b.readBytes}
	kept := map[uint32]bool{}
	for i := range b.t.nodes {
		n := &b.t.nodes[i]
		if n.primary >= 0 {
			continue
		}
		if i == 0 || p.match[i] < 0 {
			if i != 0 {
				r.New++
			}
			continue
		}
		r.Reused++
		kept[n.ino] = true
		if e := &p.l.entries[p.owner[n.ino]]; n.kind == kindFile && e.size == n.size && e.hash == b.hashes[i] {
			r.Unchanged++
		}
	}
	for ino := range p.owner {
		if ino != rootIno && ino != lostFound && !kept[ino] {
			r.Freed++
		}
	}
	return r
}

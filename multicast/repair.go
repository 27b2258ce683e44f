package multicast

import (
	"cmp"
	"math/bits"
	"slices"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// blockKey names one FEC block.
type blockKey struct {
	chunk uint32
	block uint16
}

// roundAgg aggregates one round's NACKs: per block the largest count of
// missing symbols over the hosts, and the chunks some host has not begun.
// Its size is bounded by the image's block and chunk counts, whatever the
// number of hosts, and each NACK costs work bounded by its entry limits.
type roundAgg struct {
	round  uint32
	chunks uint32 // chunk count of the image: entries beyond are ignored
	blocks map[blockKey]uint16
	whole  chunkSet
	worst  uint16 // highest loss per mille reported
	// changed: what is asked grew since the last summary of a quiet round
	changed bool
}

func newRoundAgg(round, chunks uint32) *roundAgg {
	return &roundAgg{round: round, chunks: chunks, blocks: map[blockKey]uint16{}, whole: make(chunkSet, (chunks+63)/64)}
}

// add folds in one NACK packet; packets of other rounds are ignored.
func (a *roundAgg) add(n *wire.Nack) {
	if n.Round != a.round {
		return
	}
	a.worst = max(a.worst, n.Loss)
	for _, rg := range n.Chunks {
		end := uint32(min(uint64(rg.First)+uint64(rg.Count), uint64(a.chunks)))
		for c := rg.First; c < end && !a.changed; c++ {
			a.changed = !a.whole.has(c)
		}
		a.whole.addRange(rg.First, end)
	}
	for _, e := range n.Blocks {
		if e.Chunk >= a.chunks {
			continue
		}
		k := blockKey{e.Chunk, e.Block}
		if e.Missing > a.blocks[k] {
			a.blocks[k], a.changed = e.Missing, true
		}
	}
}

// chunkSet is a bitmap of chunk indices; filling a range costs one word
// operation per 64 chunks, so a NACK's ranges cost little whatever they span.
type chunkSet []uint64

func (s chunkSet) has(c uint32) bool { return s[c/64]&(1<<(c%64)) != 0 }

// addRange adds chunks [first, end).
func (s chunkSet) addRange(first, end uint32) {
	for c := first; c < end; {
		if c%64 == 0 && end-c >= 64 {
			s[c/64] = ^uint64(0)
			c += 64
			continue
		}
		s[c/64] |= 1 << (c % 64)
		c++
	}
}

// remove takes chunk c out of the set.
func (s chunkSet) remove(c uint32) { s[c/64] &^= 1 << (c % 64) }

// intersect keeps only the chunks o has too (o as long as s); it reports
// whether s lost any.
func (s chunkSet) intersect(o chunkSet) bool {
	changed := false
	for i := range s {
		w := s[i] & o[i]
		changed = changed || w != s[i]
		s[i] = w
	}
	return changed
}

// list returns the chunks in the set, in order.
func (s chunkSet) list() []uint32 {
	var out []uint32
	for w, word := range s {
		for ; word != 0; word &= word - 1 {
			out = append(out, uint32(w*64+bits.TrailingZeros64(word)))
		}
	}
	return out
}

// repairJob is one unit of repair: resend a whole chunk's data symbols
// (whole), or send parity shards [from, to) of one block.
type repairJob struct {
	chunk    uint32
	whole    bool
	block    uint16
	from, to int
}

// scheduler turns a round's aggregate into repair jobs. It remembers, per
// block, the next parity index never sent, so every repair symbol is fresh:
// any k distinct symbols decode a block, so one repair packet fills a
// different hole at each host that lacks one.
type scheduler struct {
	next map[blockKey]int
}

// plan returns the jobs for agg in chunk/block order. k(chunk, block)
// gives the block's data symbol count and first unsent parity index (after
// proactive parity), or ok=false for a block that does not exist.
func (s *scheduler) plan(agg *roundAgg, k func(chunk uint32, block uint16) (k, first int, ok bool)) []repairJob {
	if s.next == nil {
		s.next = map[blockKey]int{}
	}
	var jobs []repairJob
	for _, c := range agg.whole.list() {
		jobs = append(jobs, repairJob{chunk: c, whole: true})
	}
	for key, missing := range agg.blocks {
		if agg.whole.has(key.chunk) {
			continue // the whole chunk goes again anyway
		}
		if j, ok := s.parity(key, int(missing), k); ok {
			jobs = append(jobs, j...)
		}
	}
	slices.SortFunc(jobs, func(a, b repairJob) int {
		return cmp.Or(cmp.Compare(a.chunk, b.chunk), cmp.Compare(b.wholeRank(), a.wholeRank()), cmp.Compare(a.block, b.block), cmp.Compare(a.from, b.from))
	})
	return jobs
}

// wholeRank orders a whole-chunk resend before the chunk's parity jobs.
func (j repairJob) wholeRank() int {
	if j.whole {
		return 1
	}
	return 0
}

// parity allocates missing fresh parity indices for one block; when the
// block's index space (wire.Shards) is used up it wraps to the block's
// first parity index (hosts that already hold a wrapped symbol simply
// ignore it).
func (s *scheduler) parity(key blockKey, missing int, k func(uint32, uint16) (int, int, bool)) ([]repairJob, bool) {
	dk, first, ok := k(key.chunk, key.block)
	if !ok || missing > dk {
		return nil, false
	}
	next, seen := s.next[key]
	if !seen || next < first {
		// never asked, or an index from another layout of the chunk (it went
		// from delta to plain): start at this layout's first parity index.
		// Any index from there on is fresh: receivers start a chunk over on
		// its first symbol in the new encoding.
		next = first
	}
	var jobs []repairJob
	end := wire.Shards(dk)
	for missing > 0 {
		if next >= end {
			next = dk
		}
		n := min(missing, end-next)
		jobs = append(jobs, repairJob{chunk: key.chunk, block: key.block, from: next, to: next + n})
		next += n
		missing -= n
	}
	s.next[key] = next
	return jobs, true
}

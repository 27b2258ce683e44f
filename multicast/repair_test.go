package multicast

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

func TestRoundAggMax(t *testing.T) {
	a := newRoundAgg(3, 10)
	a.add(&wire.Nack{Host: "a", Round: 3, Loss: 10, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 2}, {Chunk: 1, Block: 1, Missing: 5}}})
	a.add(&wire.Nack{Host: "b", Round: 3, Loss: 40, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 4}, {Chunk: 2, Block: 0, Missing: 1}}, Chunks: []wire.Range{{First: 8, Count: 5}}})
	a.add(&wire.Nack{Host: "c", Round: 2, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 60}}}) // stale round: ignored
	a.add(&wire.Nack{Host: "d", Round: 3, Blocks: []wire.BlockNeed{{Chunk: 99, Block: 0, Missing: 9}}}) // beyond the image: ignored
	want := map[blockKey]uint16{{1, 0}: 4, {1, 1}: 5, {2, 0}: 1}
	if d := cmp.Diff(want, a.blocks, cmp.AllowUnexported(blockKey{})); d != "" {
		t.Errorf("blocks (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]uint32{8, 9}, a.whole.list()); d != "" {
		t.Errorf("whole chunks clipped to the image (-want +got):\n%s", d)
	}
	if a.worst != 40 {
		t.Errorf("worst loss %d‰, want 40", a.worst)
	}
}

// fixedK says every block has k data symbols and p proactive parity.
func fixedK(k, p int) func(uint32, uint16) (int, int, bool) {
	return func(uint32, uint16) (int, int, bool) { return k, k + p, true }
}

func TestSchedulerFreshParity(t *testing.T) {
	var s scheduler
	a := newRoundAgg(1, 10)
	a.add(&wire.Nack{Host: "a", Round: 1, Blocks: []wire.BlockNeed{{Chunk: 2, Block: 1, Missing: 3}, {Chunk: 0, Block: 0, Missing: 1}}, Chunks: []wire.Range{{First: 5, Count: 1}}})
	a.add(&wire.Nack{Host: "b", Round: 1, Blocks: []wire.BlockNeed{{Chunk: 5, Block: 0, Missing: 2}}}) // chunk 5 goes whole anyway
	got := s.plan(a, fixedK(64, 4))
	want := []repairJob{
		{chunk: 0, block: 0, from: 68, to: 69},
		{chunk: 2, block: 1, from: 68, to: 71},
		{chunk: 5, whole: true},
	}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(repairJob{})); d != "" {
		t.Errorf("round 1 (-want +got):\n%s", d)
	}
	// Next round: the same block gets indices never sent before.
	a = newRoundAgg(2, 10)
	a.add(&wire.Nack{Host: "a", Round: 2, Blocks: []wire.BlockNeed{{Chunk: 2, Block: 1, Missing: 2}}})
	got = s.plan(a, fixedK(64, 4))
	if want := []repairJob{{chunk: 2, block: 1, from: 71, to: 73}}; !cmp.Equal(want, got, cmp.AllowUnexported(repairJob{})) {
		t.Errorf("round 2: got %+v, want %+v", got, want)
	}
}

func TestChunkSet(t *testing.T) {
	s := make(chunkSet, 4) // 256 chunks
	s.addRange(3, 5)
	s.addRange(60, 200)
	s.addRange(255, 256)
	var want []uint32
	for c := uint32(0); c < 256; c++ {
		if c == 3 || c == 4 || (c >= 60 && c < 200) || c == 255 {
			want = append(want, c)
		}
		if s.has(c) != (c == 3 || c == 4 || (c >= 60 && c < 200) || c == 255) {
			t.Errorf("has(%d) = %v", c, s.has(c))
		}
	}
	if d := cmp.Diff(want, s.list()); d != "" {
		t.Errorf("list (-want +got):\n%s", d)
	}
}

func TestSchedulerWraps(t *testing.T) {
	s := scheduler{next: map[blockKey]int{{0, 0}: 250}}
	a := newRoundAgg(1, 1)
	a.add(&wire.Nack{Host: "a", Round: 1, Blocks: []wire.BlockNeed{{Chunk: 0, Block: 0, Missing: 10}}})
	got := s.plan(a, fixedK(64, 0))
	want := []repairJob{{chunk: 0, block: 0, from: 64, to: 68}, {chunk: 0, block: 0, from: 250, to: 256}}
	if d := cmp.Diff(want, got, cmp.AllowUnexported(repairJob{})); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
}

func TestSchedulerRejectsUnknownBlocks(t *testing.T) {
	var s scheduler
	a := newRoundAgg(1, 4)
	a.add(&wire.Nack{Host: "a", Round: 1, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 3}, {Chunk: 1, Block: 1, Missing: 65}}})
	k := func(c uint32, b uint16) (int, int, bool) { return 64, 64, b == 0 }
	got := s.plan(a, k)
	if len(got) != 1 || got[0].block != 0 {
		t.Errorf("got %+v, want one job for block 0 (block 1 unknown, count > k)", got)
	}
}

// A chunk that goes from a delta to its plain encoding changes layout: its
// blocks' parity must start at the new layout's first parity index, or the
// coder refuses the request and the session aborts.
func TestSchedulerAfterLayoutChange(t *testing.T) {
	s := scheduler{next: map[blockKey]int{}}
	key := blockKey{chunk: 0, block: 0}
	if jobs, ok := s.parity(key, 1, fixedK(3, 0)); !ok || jobs[0].from != 3 {
		t.Fatalf("delta layout: %+v, %v", jobs, ok)
	}
	// plain layout: 44 data shards; a stale index (4) must not be reused
	jobs, ok := s.parity(key, 1, fixedK(44, 0))
	if !ok || jobs[0].from < 44 {
		t.Errorf("after the layout change without forget: %+v, want parity from 44", jobs)
	}
}

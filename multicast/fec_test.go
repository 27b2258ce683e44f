package multicast

import (
	"bytes"
	"math/rand/v2"
	"testing"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

func TestLayout(t *testing.T) {
	for _, tc := range []struct{ clen, sym, k, symbols, blocks int }{
		{1, 1408, 64, 1, 1},
		{1408, 1408, 64, 1, 1},
		{1409, 1408, 64, 2, 1},
		{64 * 1408, 1408, 64, 64, 1},
		{64*1408 + 1, 1408, 64, 65, 2},
		{1 << 20, 1408, 64, 745, 12},
	} {
		l := newLayout(tc.clen, tc.sym, tc.k)
		if l.symbols != tc.symbols || l.blocks != tc.blocks {
			t.Errorf("layout(%d): %d symbols in %d blocks, want %d in %d", tc.clen, l.symbols, l.blocks, tc.symbols, tc.blocks)
		}
		next := 0
		for b := range l.blocks {
			start, k := l.block(b)
			if start != next || k > tc.k || (l.blocks > 1 && k < tc.k/2) {
				t.Errorf("layout(%d) block %d: start %d (want %d), %d symbols", tc.clen, b, start, next, k)
			}
			next = start + k
		}
		if next != l.symbols {
			t.Errorf("layout(%d): blocks cover %d symbols, want %d", tc.clen, next, l.symbols)
		}
	}
}

func randShards(r *rand.Rand, k, size int) [][]byte {
	s := make([][]byte, k)
	for i := range s {
		s[i] = make([]byte, size)
		for j := range s[i] {
			s[i][j] = byte(r.Uint32())
		}
	}
	return s
}

// Parity shard k+j must not depend on how many parity shards the encoder
// was made with: the sender makes fresh ones on demand.
func TestParityIndependentOfCount(t *testing.T) {
	var c coder
	data := randShards(rand.New(rand.NewPCG(1, 2)), 10, 64)
	few, err := c.parity(data, 10, 12)
	if err != nil {
		t.Fatal(err)
	}
	many, err := c.parity(data, 10, 200)
	if err != nil {
		t.Fatal(err)
	}
	for j := range few {
		if !bytes.Equal(few[j], many[j]) {
			t.Errorf("parity shard %d differs between 2 and 190 parity shards", 10+j)
		}
	}
}

// Any k distinct shards, data or parity of any index, rebuild the data.
func TestReconstructFromFreshParity(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var c coder
	const k = 64
	data := randShards(r, k, 128)
	par, err := c.parity(data, k, k+40)
	if err != nil {
		t.Fatal(err)
	}
	shards := make([][]byte, wire.MaxShards)
	for i := 5; i < k; i++ { // lose data 0..4
		shards[i] = data[i]
	}
	for _, i := range []int{3, 17, 22, 30, 39} { // five parity shards of scattered indices
		shards[k+i] = par[i]
	}
	if err := c.reconstruct(k, shards); err != nil {
		t.Fatal(err)
	}
	for i := range k {
		if !bytes.Equal(shards[i], data[i]) {
			t.Fatalf("data shard %d not rebuilt", i)
		}
	}
}

package multicast

import (
	"fmt"

	"github.com/klauspost/reedsolomon"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// layout is how a compressed chunk is cut into symbols and FEC blocks. The
// symbols are spread evenly over the blocks (as RFC 5052 partitions a
// source block), so no block is left with a handful of symbols that parity
// protects poorly.
type layout struct {
	symbols int // data symbols in the chunk
	blocks  int
	base    int // data symbols in the shorter blocks
	extra   int // blocks [0, extra) have base+1 symbols
}

func newLayout(compressed, symbolSize, blockSymbols int) layout {
	n := (compressed + symbolSize - 1) / symbolSize
	nb := (n + blockSymbols - 1) / blockSymbols
	if nb == 0 {
		return layout{}
	}
	return layout{symbols: n, blocks: nb, base: n / nb, extra: n % nb}
}

// block returns the first data symbol of block b and its data symbol count.
func (l layout) block(b int) (start, k int) {
	k = l.base
	if b < l.extra {
		k++
	}
	return b*l.base + min(b, l.extra), k
}

// coder makes and caches Reed-Solomon encoders. Parity shard k+j is the
// same whatever the encoder's parity count (the Vandermonde-derived row
// depends only on its index and k; fec_test.go checks it), so a sender can
// make fresh parity indices on demand and a receiver decode with one coder
// per k. Owned by one goroutine.
type coder struct {
	enc map[[2]int]reedsolomon.Encoder
}

// parityStep rounds parity counts up so few encoders are cached.
const parityStep = 8

func (c *coder) get(k, m int) (reedsolomon.Encoder, error) {
	if c.enc == nil {
		c.enc = make(map[[2]int]reedsolomon.Encoder)
	}
	if e := c.enc[[2]int{k, m}]; e != nil {
		return e, nil
	}
	e, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, fmt.Errorf("multicast: reed-solomon %d+%d: %w", k, m, err)
	}
	c.enc[[2]int{k, m}] = e
	return e, nil
}

// parity returns parity shards with indices [from, to) (from >= k) of the
// k data shards, all of one size.
func (c *coder) parity(data [][]byte, from, to int) ([][]byte, error) {
	k := len(data)
	if from < k || to > wire.MaxShards || from >= to {
		return nil, fmt.Errorf("multicast: parity [%d,%d) of %d data shards", from, to, k)
	}
	m := min(wire.MaxShards-k, (to-k+parityStep-1)/parityStep*parityStep)
	enc, err := c.get(k, m)
	if err != nil {
		return nil, err
	}
	shards := make([][]byte, k+m)
	copy(shards, data)
	for i := k; i < k+m; i++ {
		shards[i] = make([]byte, len(data[0]))
	}
	if err := enc.Encode(shards); err != nil {
		return nil, fmt.Errorf("multicast: encode parity: %w", err)
	}
	return shards[from:to], nil
}

// reconstruct fills the missing data shards of shards (length MaxShards,
// indexed by shard index, nil where absent; at least k present).
func (c *coder) reconstruct(k int, shards [][]byte) error {
	enc, err := c.get(k, wire.MaxShards-k)
	if err != nil {
		return err
	}
	return enc.ReconstructData(shards)
}

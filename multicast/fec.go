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

// coder makes and caches Reed-Solomon encoders. A block of k data symbols
// has wire.Shards(k) shard indices. Up to wire.GF8MaxData it is coded over
// GF(2^8), where parity shard k+j is the same whatever the encoder's parity
// count (the Vandermonde-derived row depends only on its index and k;
// fec_test.go checks it): a sender makes only the parity it sends, with an
// encoder of a few parity shards more. Above, it is coded with Leopard
// GF(2^16), whose parity depends on the parity count, so both sides use
// all wire.Shards(k)-k parity shards: the sender makes them all at once
// (a 1 MiB chunk's in ~0.3 ms). Owned by one goroutine.
type coder struct {
	enc map[[2]int]reedsolomon.Encoder
}

// parityStep rounds GF(2^8) parity counts up so few encoders are cached.
const parityStep = 8

func (c *coder) get(k, m int) (reedsolomon.Encoder, error) {
	if c.enc == nil {
		c.enc = make(map[[2]int]reedsolomon.Encoder)
	}
	if e := c.enc[[2]int{k, m}]; e != nil {
		return e, nil
	}
	var opts []reedsolomon.Option
	if k > wire.GF8MaxData {
		opts = append(opts, reedsolomon.WithLeopardGF16(true))
	}
	e, err := reedsolomon.New(k, m, opts...)
	if err != nil {
		return nil, fmt.Errorf("multicast: reed-solomon %d+%d: %w", k, m, err)
	}
	c.enc[[2]int{k, m}] = e
	return e, nil
}

// parityCount is how many parity shards the encoder making parity up to
// index to (exclusive) of a block of k has.
func parityCount(k, to int) int {
	n := wire.Shards(k)
	if k > wire.GF8MaxData {
		return n - k
	}
	return min(n-k, (to-k+parityStep-1)/parityStep*parityStep)
}

// parity returns parity shards with indices [from, to) (from >= k) of the
// k data shards, all of one size.
func (c *coder) parity(data [][]byte, from, to int) ([][]byte, error) {
	k := len(data)
	if from < k || to > wire.Shards(k) || from >= to {
		return nil, fmt.Errorf("multicast: parity [%d,%d) of %d data shards", from, to, k)
	}
	m := parityCount(k, to)
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

// reconstruct fills the missing data shards of shards (length
// wire.Shards(k), indexed by shard index, nil where absent; at least k
// present).
func (c *coder) reconstruct(k int, shards [][]byte) error {
	enc, err := c.get(k, wire.Shards(k)-k)
	if err != nil {
		return err
	}
	return enc.ReconstructData(shards)
}

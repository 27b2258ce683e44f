package wire

import "math/bits"

// GF8MaxData is the largest block coded over GF(2^8): its data and parity
// shards share 256 indices, and parity shard k+j is the same whatever the
// parity count, so a sender makes fresh indices on demand. Larger blocks
// are coded with Leopard GF(2^16), whose parity depends on the parity
// count: both sides code them with Shards(k) shards in all.
const GF8MaxData = 128

// LeopardAlign is the multiple of bytes a symbol must be for Leopard
// GF(2^16) coding (blocks above GF8MaxData).
const LeopardAlign = 64

// Shards is the number of shard indices of a block of k data symbols
// (1 <= k <= MaxBlockSymbols): 256 up to GF8MaxData; above, the power of
// two at or above k + k/4, so at least a quarter as much parity as data
// can be made (more than any loss the repair rounds are meant for) and
// Leopard's transforms run at their natural size.
func Shards(k int) int {
	if k <= GF8MaxData {
		return 256
	}
	return 1 << bits.Len(uint(k+k/4-1))
}

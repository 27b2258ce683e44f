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
	shards := make([][]byte, wire.Shards(k))
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

// A block above wire.GF8MaxData is coded with Leopard GF(2^16) over its
// whole index space: parity made in two calls (proactive, then a repair
// round's fresh indices) is one code, and any k shards rebuild the data,
// also with parity from the far end of the index space.
func TestLeopardBlocks(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	var c coder
	const k = 745 // a 1 MiB chunk that does not compress, in 1,408-byte symbols
	n := wire.Shards(k)
	if n != 1024 {
		t.Fatalf("Shards(%d) = %d, want 1024", k, n)
	}
	data := randShards(r, k, 1408)
	first, err := c.parity(data, k, k+20)
	if err != nil {
		t.Fatal(err)
	}
	later, err := c.parity(data, k+20, n)
	if err != nil {
		t.Fatal(err)
	}
	var again coder // a receiver's coder, made afresh
	shards := make([][]byte, n)
	for i := 30; i < k; i++ { // lose data 0..29
		shards[i] = data[i]
	}
	for _, i := range []int{1, 7, 19} { // three of the first parity
		shards[k+i] = first[i]
	}
	for j := len(later) - 27; j < len(later); j++ { // and 27 from the end
		shards[k+20+j] = later[j]
	}
	if err := again.reconstruct(k, shards); err != nil {
		t.Fatal(err)
	}
	for i := range k {
		if !bytes.Equal(shards[i], data[i]) {
			t.Fatalf("data shard %d not rebuilt", i)
		}
	}
	if _, err := c.parity(data, k, n+1); err == nil {
		t.Error("parity beyond the block's index space was made")
	}
}

func TestShards(t *testing.T) {
	for k, want := range map[int]int{1: 256, 64: 256, 128: 256, 129: 256, 205: 256, 206: 512, 745: 1024, 819: 1024, 820: 2048, wire.MaxBlockSymbols: wire.MaxShards} {
		if got := wire.Shards(k); got != want {
			t.Errorf("Shards(%d) = %d, want %d", k, got, want)
		}
		if got := wire.Shards(k); k > wire.GF8MaxData && got-k < k/4 {
			t.Errorf("Shards(%d) = %d: less than a quarter as much parity as data", k, got)
		}
	}
}

// A session whose blocks are whole chunks of more than wire.GF8MaxData
// symbols (Leopard GF(2^16)) repairs loss like one of small blocks: every
// host ends with the image.
func TestTransferLeopardBlocks(t *testing.T) {
	ts := newTestSession(t, lossy(0.05, 11))
	// 256-byte symbols: a random 64 KiB chunk is one block of 256 data symbols
	ts.send.SymbolSize, ts.send.BlockSymbols = 256, wire.MaxBlockSymbols
	ts.send.FECOverhead, ts.send.Rate = AutoFEC, 20e6
	hosts := []string{"a", "b", "c"}
	ts.send.Hosts = hosts
	res := ts.runVerified(hosts, nil)
	for _, h := range hosts {
		if res[h].BadChunks != 0 { // a chunk rebuilt wrong is asked again: the session heals, but the code is broken
			t.Errorf("%s: %d chunks failed their check after decoding", h, res[h].BadChunks)
		}
	}
	r := ts.report
	t.Logf("%d data + %d repair (%d proactive) packets, %d rounds", r.DataPackets, r.RepairPackets, r.Proactive, r.Rounds)
	if r.RepairPackets == 0 {
		t.Error("no repair packets at 5% loss: the Leopard path was not exercised")
	}
}

// Blocks are whole chunks for a group larger than quiet rounds start at,
// when the symbol size allows Leopard coding; 64 symbols otherwise.
func TestDefaultBlockSymbols(t *testing.T) {
	many := make([]string, quietHosts+1)
	for _, tc := range []struct {
		o    SendOptions
		want int
	}{
		{SendOptions{Hosts: many[:3], SymbolSize: DefaultSymbolSize}, DefaultBlockSymbols},
		{SendOptions{Hosts: many[:quietHosts], SymbolSize: DefaultSymbolSize}, DefaultBlockSymbols},
		{SendOptions{Hosts: many, SymbolSize: DefaultSymbolSize}, LargeGroupBlockSymbols},
		{SendOptions{MinHosts: quietHosts + 1, SymbolSize: DefaultSymbolSize}, LargeGroupBlockSymbols},
		{SendOptions{Hosts: many, SymbolSize: 1400}, DefaultBlockSymbols}, // not a multiple of 64
	} {
		if got := defaultBlockSymbols(&tc.o); got != tc.want {
			t.Errorf("%d hosts (min %d), %d-byte symbols: %d symbols a block, want %d", len(tc.o.Hosts), tc.o.MinHosts, tc.o.SymbolSize, got, tc.want)
		}
	}
}

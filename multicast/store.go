package multicast

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Errors from store.add that cost the session nothing but the packet or
// the chunk: the receiver logs them and carries on.
var (
	// errBadSymbol marks a symbol inconsistent with what the host has.
	errBadSymbol = errors.New("multicast: symbol inconsistent with its chunk")
	// errChunkRetry marks a chunk that failed to decode or verify and was
	// forgotten, so the next NACK asks for it whole.
	errChunkRetry = errors.New("multicast: chunk failed its check and is asked again")
)

// store is a receiver's state: the preallocated partial image, the
// symbols of chunks not yet decoded, and per-block bookkeeping (a few dozen
// bytes per block). Symbols wait in memory, in a buffer per chunk, so on
// the happy path each byte is written once, decoded, into the image; only
// when the chunks waiting (lost symbols, slow decoders) hold more than
// memBudget does the oldest go to a sparse spool file, whose range is
// punched out when the chunk decodes. A receiver's footprint does not grow
// with the image.
type store struct {
	m          *image.Manifest
	symSize, k int
	file       *os.File // the partial image
	spool      *os.File
	lens       [][2]uint32    // per chunk: plain and delta frame lengths, from the signed descriptor
	cipher     *contentCipher // an encrypted session's content key, once the sender sent it
	releaseID  image.ID
	chunks     []chunkState
	remaining  int   // non-zero chunks not yet written
	slots      int64 // spool symbol slots per chunk
	ready      []int // chunks whose every block can be decoded, not yet handed to a decoder
	bad        int   // chunks that failed their check and were asked again
	reflinked  int64 // bytes of local chunks shared by reflink, not copied
	memUsed    int   // bytes of chunkState.mem held
	spilled    int   // chunks whose symbols went to the spool
	memOrder   []int // chunks holding mem, oldest first (may list spilled or done ones)

	base     *baseFile // the announced base image; nil: deltas are ignored
	deltaBad chunkSet  // chunks whose delta failed: only a plain copy is taken

	// A relay's (relay.go): frames keeps every plain frame verified;
	// want lists chunks held (done) whose frame is wanted all the same:
	// their symbols are taken again, verified and kept as a frame only.
	frames *frameStore
	want   chunkSet
}

type chunkState struct {
	// mem holds the chunk's symbols in the spool's slot layout while it is
	// being received (nil once spilled to the spool, or before the first)
	mem     []byte
	spooled bool // its symbols are in the spool, not in mem
	done    bool
	pending bool // handed to a decoder; its blocks no longer change
	delta   bool // its symbols are of the delta encoding
	// prefilled: the image holds the base image's chunk here, shared by
	// reflink (prefillBase); a delta then writes only its changed blocks
	prefilled bool
	clen      uint32 // compressed length; 0 until a first symbol names it
	blocks    []blockState
	ready     int // blocks holding enough symbols to decode
}

// blockState records which shard indices a block holds and, per spool
// slot, which shard the slot holds.
type blockState struct {
	have  []uint64 // a bit per shard index, wire.Shards(k) of them; nil until the first symbol
	slots []uint16
}

func newStore(m *image.Manifest, ann *wire.Announce, file, spool *os.File) *store {
	st := &store{m: m, symSize: int(ann.SymbolSize), k: int(ann.BlockSymbols), file: file, spool: spool,
		chunks: make([]chunkState, len(m.Chunks)), deltaBad: make(chunkSet, (len(m.Chunks)+63)/64)}
	st.slots = int64((wire.MaxCompressed(m.ChunkSize) + st.symSize - 1) / st.symSize)
	for i, c := range m.Chunks {
		st.chunks[i].done = c.Zero
		if !c.Zero {
			st.remaining++
		}
	}
	return st
}

// add stores one symbol; when it completes its chunk's last block, the
// chunk joins st.ready for a decoder.
func (st *store) add(s *wire.Symbol) error {
	if int(s.Chunk) >= len(st.chunks) || len(s.Payload) != st.symSize {
		return fmt.Errorf("%w: chunk %d, %d bytes", errBadSymbol, s.Chunk, len(s.Payload))
	}
	cs := &st.chunks[s.Chunk]
	if cs.pending || cs.done && !st.wants(s.Chunk) {
		return nil
	}
	if s.Delta && (st.base == nil || st.deltaBad.has(s.Chunk)) {
		return nil // cannot use it: the NACK asks for the chunk whole, which the sender then sends plain
	}
	if cs.clen != 0 && cs.delta && !s.Delta {
		st.release(cs)
		*cs = chunkState{done: cs.done, prefilled: cs.prefilled} // the sender switched this chunk to plain: start over with it
	}
	if cs.clen == 0 {
		if s.Compressed == 0 || s.Compressed != st.frameLen(s.Chunk, s.Delta) {
			return fmt.Errorf("%w: chunk %d compressed to %d, the session descriptor says %d", errBadSymbol, s.Chunk, s.Compressed, st.frameLen(s.Chunk, s.Delta))
		}
		cs.clen, cs.delta = s.Compressed, s.Delta
		cs.blocks = make([]blockState, newLayout(int(cs.clen), st.symSize, st.k).blocks)
	}
	l := newLayout(int(cs.clen), st.symSize, st.k)
	if s.Compressed != cs.clen || s.Delta != cs.delta || int(s.Block) >= l.blocks {
		return fmt.Errorf("%w: chunk %d block %d, length %d (have %d)", errBadSymbol, s.Chunk, s.Block, s.Compressed, cs.clen)
	}
	return st.addToBlock(s, cs, l)
}

// wants reports whether a held chunk's frame is wanted (a relay's).
func (st *store) wants(i uint32) bool { return st.want != nil && st.want.has(i) }

// frameLen is the length of chunk i's frame as the signed session
// descriptor gives it: a symbol naming another is forged or corrupt.
func (st *store) frameLen(i uint32, delta bool) uint32 {
	if st.lens == nil || int(i) >= len(st.lens) {
		return 0
	}
	if delta {
		return st.lens[i][1]
	}
	return st.lens[i][0]
}

func (st *store) addToBlock(s *wire.Symbol, cs *chunkState, l layout) error {
	bs := &cs.blocks[s.Block]
	start, k := l.block(int(s.Block))
	if int(s.Index) >= wire.Shards(k) {
		return fmt.Errorf("%w: chunk %d block %d index %d, beyond the block's %d shards", errBadSymbol, s.Chunk, s.Block, s.Index, wire.Shards(k))
	}
	if bs.have == nil {
		bs.have = make([]uint64, (wire.Shards(k)+63)/64)
	}
	w, bit := s.Index/64, uint64(1)<<(s.Index%64)
	if len(bs.slots) >= k || bs.have[w]&bit != 0 {
		return nil // block already decodable, or a duplicate
	}
	if err := st.put(s, cs, l, start+len(bs.slots)); err != nil {
		return err
	}
	bs.have[w] |= bit
	bs.slots = append(bs.slots, s.Index)
	if len(bs.slots) == k {
		if cs.ready++; cs.ready == len(cs.blocks) {
			cs.pending = true
			st.ready = append(st.ready, int(s.Chunk))
		}
	}
	return nil
}

// memBudget bounds the symbols held in memory: 24 MiB covers a few dozen
// chunks waiting for repair or a decoder, and keeps a receiver far below
// its 64 MiB footprint goal; beyond it the oldest waiting chunk goes to the
// spool file. A variable only so tests can make the spool path run.
var memBudget = 24 << 20

// ReceiverMemoryLimit is the Go memory limit the receiver command sets
// (runtime/debug.SetMemoryLimit; GOMEMLIMIT overrides it): with memBudget
// of symbols held, the collector then runs before the heap's default
// headroom would carry a busy receiver past its 64 MiB footprint goal.
const ReceiverMemoryLimit = 48 << 20

// maxMemOrder bounds the list of chunks that held memory before it is
// compacted: far more than memBudget can hold at once.
const maxMemOrder = 1024

// put stores symbol s in slot (of the chunk's slot layout): in the
// chunk's memory buffer, allocated at its first symbol, or in the spool
// once the chunk has been spilled.
func (st *store) put(s *wire.Symbol, cs *chunkState, l layout, slot int) error {
	if cs.mem == nil && !cs.spooled {
		if err := st.makeRoom(l.symbols * st.symSize); err != nil {
			return err
		}
		cs.mem = make([]byte, l.symbols*st.symSize)
		st.memUsed += len(cs.mem)
		if len(st.memOrder) >= maxMemOrder { // drop the chunks done since
			st.memOrder = slices.DeleteFunc(st.memOrder, func(i int) bool { return st.chunks[i].mem == nil })
		}
		st.memOrder = append(st.memOrder, int(s.Chunk))
	}
	if cs.mem != nil {
		copy(cs.mem[slot*st.symSize:], s.Payload)
		return nil
	}
	off := (int64(s.Chunk)*st.slots + int64(slot)) * int64(st.symSize)
	if _, err := st.spool.WriteAt(s.Payload, off); err != nil {
		return fmt.Errorf("multicast: spool chunk %d: %w", s.Chunk, err)
	}
	return nil
}

// makeRoom spills the oldest chunks not with a decoder to the spool until
// n more bytes fit in memBudget.
func (st *store) makeRoom(n int) error {
	for st.memUsed+n > memBudget && len(st.memOrder) > 0 {
		i := st.memOrder[0]
		st.memOrder = st.memOrder[1:]
		cs := &st.chunks[i]
		if cs.mem == nil {
			continue // decoded or reset since
		}
		if cs.pending && !slices.Contains(st.ready, i) {
			st.memOrder = append(st.memOrder, i) // with a decoder now: its buffer goes soon
			if st.allWithDecoders() {
				return nil // nothing to spill: go over budget by a few chunks
			}
			continue
		}
		if _, err := st.spool.WriteAt(cs.mem, int64(i)*st.slots*int64(st.symSize)); err != nil {
			return fmt.Errorf("multicast: spool chunk %d: %w", i, err)
		}
		st.release(cs)
		cs.spooled = true
		st.spilled++
	}
	return nil
}

// allWithDecoders reports whether every chunk holding memory is with a
// decoder (so none can be spilled).
func (st *store) allWithDecoders() bool {
	for _, i := range st.memOrder {
		cs := &st.chunks[i]
		if cs.mem != nil && !(cs.pending && !slices.Contains(st.ready, i)) {
			return false
		}
	}
	return true
}

// release drops a chunk's memory buffer.
func (st *store) release(cs *chunkState) {
	st.memUsed -= len(cs.mem)
	cs.mem = nil
}

// job describes ready chunk i to a decoder. The blocks it references do
// not change while the chunk is pending.
func (st *store) job(i int) decodeJob {
	cs := &st.chunks[i]
	return decodeJob{chunk: i, clen: cs.clen, delta: cs.delta, blocks: cs.blocks, mem: cs.mem, cipher: st.cipher, release: st.releaseID,
		frames: st.frames, frameOnly: cs.done, prefilled: cs.prefilled}
}

// decoded records a decoder's verdict on chunk i: written, or forgotten
// so the next NACK asks for it whole. Other errors are fatal.
func (st *store) decoded(i int, err error) error {
	held := st.chunks[i].done // decoded for its frame only (a relay's)
	switch {
	case err == nil:
		st.release(&st.chunks[i])
		st.chunks[i] = chunkState{done: true}
		if st.want != nil {
			st.want.remove(uint32(i))
		}
		if !held {
			st.remaining--
		}
	case errors.Is(err, errChunkRetry):
		st.bad++
		if st.chunks[i].delta {
			st.deltaBad.addRange(uint32(i), uint32(i)+1)
		}
		st.release(&st.chunks[i])
		st.chunks[i] = chunkState{done: held, prefilled: st.chunks[i].prefilled} // nothing was written: the base's bytes are still there
	default:
		return err
	}
	return nil
}

// needs lists what the host lacks: chunks with no symbol yet and, per
// started chunk, blocks with how many symbols each still misses.
func (st *store) needs() (chunks []wire.Range, blocks []wire.BlockNeed) {
	for i := range st.chunks {
		cs := &st.chunks[i]
		switch {
		case cs.pending, cs.done && !st.wants(uint32(i)):
		case cs.clen == 0:
			chunks = wire.AppendChunk(chunks, uint32(i))
		default:
			blocks = st.blockNeeds(blocks, uint32(i), cs)
		}
	}
	return chunks, blocks
}

func (st *store) blockNeeds(out []wire.BlockNeed, i uint32, cs *chunkState) []wire.BlockNeed {
	l := newLayout(int(cs.clen), st.symSize, st.k)
	for b := range cs.blocks {
		if _, k := l.block(b); len(cs.blocks[b].slots) < k {
			out = append(out, wire.BlockNeed{Chunk: i, Block: uint16(b), Missing: uint16(k - len(cs.blocks[b].slots))})
		}
	}
	return out
}

// resume marks chunks of an existing partial image that already verify.
func (st *store) resume() int {
	n := 0
	buf := make([]byte, st.m.ChunkSize)
	for i, c := range st.m.Chunks {
		if c.Zero {
			continue
		}
		off, size := st.m.ChunkRange(i)
		raw := buf[:size]
		if _, err := st.file.ReadAt(raw, off); err == nil && !image.IsZero(raw) && st.m.VerifyChunk(i, raw) == nil {
			st.chunks[i].done = true
			st.remaining--
			n++
		}
	}
	return n
}

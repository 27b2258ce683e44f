package image

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/klauspost/compress/zstd"
)

// DeltaBlock is the unit a delta frame compares a chunk with its base in:
// the filesystem block of the image (ext2's 4 KiB) and of the hosts'
// stores, so a host can share every unchanged block with its base image by
// reflink and write only the changed ones.
const DeltaBlock = 4096

// deltaDictID names the raw dictionary (the base's blocks) in a delta
// frame's zstd frame; any non-zero value would do, it never leaves
// loopcast.
const deltaDictID = 0x4c43_4d44 // "LCMD"

// deltaWindow is the zstd window of a delta frame of chunks of chunkSize
// bytes: the dictionary (at most the chunk's size) and the changed blocks
// (at most the chunk) must both be in reach, so twice the chunk size,
// rounded up to the power of two zstd requires. Decoders cap their window
// at the same value.
func deltaWindow(chunkSize uint32) int {
	w := zstd.MinWindowSize
	for w < 2*int(chunkSize) {
		w <<= 1
	}
	return w
}

// deltaMagic starts a block delta frame; it cannot start a zstd frame
// (0xFD2FB528), which is what a delta frame of earlier packs was.
var deltaMagic = [4]byte{'L', 'C', 'B', 'D'}

// A delta frame holds a chunk as the blocks in which it differs from the
// base image's chunk at the same index:
//
//	"LCBD"      4 bytes
//	n           u32, big endian: the chunk's length (at most a chunk)
//	changed     ceil(ceil(n/DeltaBlock)/8) bytes, a bit per block, least
//	            significant bit first: set where the block differs from the
//	            base's (or the base has no such block, or only part of it)
//	blocks      one zstd frame: the changed blocks, one after another,
//	            compressed with the base's blocks at the same positions
//	            (those the base has) as raw dictionary; absent when no
//	            block changed (the chunk is the start of the base's)
//
// Finding the changed blocks is a byte comparison, and the dictionary is
// only the base's version of what changed: a chunk with a few files
// changed costs a few blocks' compression, where a dictionary of the whole
// base chunk cost ~7.6 ms to set up per chunk whatever changed.
const deltaHeader = 8

// deltaBlocks returns how many DeltaBlock blocks a chunk of n bytes has.
func deltaBlocks(n int) int { return (n + DeltaBlock - 1) / DeltaBlock }

// blockRange returns the bounds of block b in a chunk of n bytes.
func blockRange(b, n int) (int, int) { return b * DeltaBlock, min((b+1)*DeltaBlock, n) }

// baseHas reports whether base holds block b of a chunk of n bytes whole,
// with raw's bytes there when raw is not nil.
func baseHas(base, raw []byte, b, n int) bool {
	s, e := blockRange(b, n)
	if e > len(base) {
		return false
	}
	return raw == nil || bytes.Equal(raw[s:e], base[s:e])
}

// deltaDict appends the base's blocks at the changed positions (those it
// has: a block the base lacks has no dictionary) to dict.
func deltaDict(dict, base []byte, changed []byte, n int) []byte {
	for b := range deltaBlocks(n) {
		if changed[b/8]&(1<<(b%8)) == 0 {
			continue
		}
		s, e := blockRange(b, n)
		if s < len(base) {
			dict = append(dict, base[s:min(e, len(base))]...)
		}
	}
	return dict
}

// DeltaEncoder makes delta frames; one per goroutine, reused across
// chunks: its zstd encoder keeps its tables, so a chunk costs the hashing
// of its few dictionary blocks, not fresh tables (which, allocated per
// chunk, cost more than compressing it).
type DeltaEncoder struct {
	level        zstd.EncoderLevel
	window       int
	enc          *zstd.Encoder
	blocks, dict []byte
}

// NewDeltaEncoder returns an encoder at zstd's default level, for builds.
func NewDeltaEncoder() *DeltaEncoder { return &DeltaEncoder{level: zstd.SpeedDefault} }

// NewFastDeltaEncoder returns an encoder at zstd's fastest level: for
// deltas made per request on a serving host, where CPU costs more than
// bytes.
func NewFastDeltaEncoder() *DeltaEncoder { return &DeltaEncoder{level: zstd.SpeedFastest} }

// Close releases the zstd encoder.
func (e *DeltaEncoder) Close() {
	if e.enc != nil {
		e.enc.Close()
		e.enc = nil
	}
}

// Encode appends to dst the delta frame of raw (a chunk of at most
// chunkSize bytes) against base (the base image's chunk at the same index,
// of any length). It returns dst unchanged when raw equals base.
func (e *DeltaEncoder) Encode(dst, raw, base []byte, chunkSize uint32) ([]byte, error) {
	n := len(raw)
	if n > int(chunkSize) {
		return nil, fmt.Errorf("image: delta of a %d-byte chunk, larger than the chunk size %d", n, chunkSize)
	}
	nb := deltaBlocks(n)
	start := len(dst)
	dst = append(dst, deltaMagic[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(n))
	mapAt := len(dst)
	dst = append(dst, make([]byte, (nb+7)/8)...)
	e.blocks = e.blocks[:0]
	for b := range nb {
		if baseHas(base, raw, b, n) {
			continue
		}
		dst[mapAt+b/8] |= 1 << (b % 8)
		s, end := blockRange(b, n)
		e.blocks = append(e.blocks, raw[s:end]...)
	}
	if len(e.blocks) == 0 {
		if n == len(base) {
			return dst[:start], nil // raw is base
		}
		return dst, nil // raw is the start of base: the map alone says so
	}
	e.dict = deltaDict(e.dict[:0], base, dst[mapAt:], n)
	if err := e.reset(chunkSize); err != nil {
		return nil, err
	}
	return e.enc.EncodeAll(e.blocks, dst), nil
}

// reset points the zstd encoder at the current dictionary, making it at
// the first chunk (or when the chunk size changes).
func (e *DeltaEncoder) reset(chunkSize uint32) error {
	dict := zstd.WithEncoderDictRaw(deltaDictID, e.dict)
	if e.enc != nil && e.window == deltaWindow(chunkSize) {
		if err := e.enc.ResetWithOptions(nil, dict); err != nil {
			return fmt.Errorf("image: zstd delta encoder: %w", err)
		}
		return nil
	}
	e.Close()
	e.window = deltaWindow(chunkSize)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(e.level), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false), zstd.WithWindowSize(e.window), dict)
	if err != nil {
		return fmt.Errorf("image: zstd delta encoder: %w", err)
	}
	e.enc = enc
	return nil
}

// ErrDelta is returned (wrapped) for a delta frame that does not decode.
var ErrDelta = errors.New("image: bad delta frame")

// DeltaDecoder decodes delta frames; one per goroutine, reused across
// chunks, bounded by the chunk size it was made for.
type DeltaDecoder struct {
	chunkSize    uint32
	zd           *zstd.Decoder
	dict, blocks []byte
}

// NewDeltaDecoder returns a decoder of delta frames of chunks of at most
// chunkSize bytes.
func NewDeltaDecoder(chunkSize uint32) (*DeltaDecoder, error) {
	zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(chunkSize)),
		zstd.WithDecoderMaxWindow(uint64(deltaWindow(chunkSize))), zstd.WithDecoderDictRaw(deltaDictID, nil))
	if err != nil {
		return nil, fmt.Errorf("image: zstd delta decoder: %w", err)
	}
	return &DeltaDecoder{chunkSize: chunkSize, zd: zd}, nil
}

// Close releases the zstd decoder.
func (d *DeltaDecoder) Close() { d.zd.Close() }

// Decode appends to dst (which must not overlap base) the chunk the delta
// frame comp makes of base, the base image's chunk at its index. It checks
// the frame's bounds (a chunk of at most the chunk size, blocks the base
// has where they are unchanged, exactly the changed blocks' bytes), not
// the result: the caller verifies it against the manifest.
func (d *DeltaDecoder) Decode(comp, base, dst []byte) ([]byte, error) {
	if len(comp) < deltaHeader || !bytes.Equal(comp[:4], deltaMagic[:]) {
		return nil, fmt.Errorf("%w: no delta header", ErrDelta)
	}
	n := int(binary.BigEndian.Uint32(comp[4:8]))
	if n > int(d.chunkSize) {
		return nil, fmt.Errorf("%w: a chunk of %d bytes, more than the chunk size %d", ErrDelta, n, d.chunkSize)
	}
	nb := deltaBlocks(n)
	if len(comp) < deltaHeader+(nb+7)/8 {
		return nil, fmt.Errorf("%w: truncated block map", ErrDelta)
	}
	changed := comp[deltaHeader : deltaHeader+(nb+7)/8]
	var want int
	for b := range nb {
		s, e := blockRange(b, n)
		switch {
		case changed[b/8]&(1<<(b%8)) != 0:
			want += e - s
		case !baseHas(base, nil, b, n):
			return nil, fmt.Errorf("%w: block %d unchanged but the base of %d bytes lacks it", ErrDelta, b, len(base))
		}
	}
	rest := comp[deltaHeader+len(changed):]
	if want == 0 {
		if len(rest) != 0 {
			return nil, fmt.Errorf("%w: %d bytes after a block map with no changed block", ErrDelta, len(rest))
		}
		return append(dst, base[:n]...), nil
	}
	d.dict = deltaDict(d.dict[:0], base, changed, n)
	if err := d.zd.ResetWithOptions(nil, zstd.WithDecoderDictRaw(deltaDictID, d.dict)); err != nil {
		return nil, fmt.Errorf("image: zstd delta decoder: %w", err)
	}
	blocks, err := d.zd.DecodeAll(rest, d.blocks[:0])
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrDelta, err)
	}
	d.blocks = blocks
	if len(blocks) != want {
		return nil, fmt.Errorf("%w: %d bytes of changed blocks, want %d", ErrDelta, len(blocks), want)
	}
	dst = slices.Grow(dst, n)
	for b := range nb {
		s, e := blockRange(b, n)
		if changed[b/8]&(1<<(b%8)) == 0 {
			dst = append(dst, base[s:e]...)
			continue
		}
		dst, blocks = append(dst, blocks[:e-s]...), blocks[e-s:]
	}
	return dst, nil
}

// DeltaMap returns the changed-block map of a delta frame Decode accepted:
// bit b (least significant first) is set where block b, of DeltaBlock
// bytes, differs from the base's; a host writes those blocks and nothing
// else over its base's chunk.
func DeltaMap(frame []byte) []byte {
	n := int(binary.BigEndian.Uint32(frame[4:8]))
	return frame[deltaHeader : deltaHeader+(deltaBlocks(n)+7)/8]
}

package wire

import (
	"encoding/binary"
	"fmt"
)

// SymbolHeaderLen is the size of a Symbol before its payload.
const SymbolHeaderLen = 14

// Symbol flags.
const symbolDelta = 1 // the chunk is zstd-compressed against the base image's chunk at its index

// Symbol is one FEC symbol of a compressed chunk: a DATA symbol (Index <
// the block's data count) or a REPAIR parity symbol (Index at or above it).
// Both are multicast and share this layout:
//
//	0 chunk u32  4 compressed length u32  8 block u16  10 index u8
//	11 flags u8 (1: delta)  12 payload length u16  14 payload
//
// The chunk's compressed bytes are cut into symbols of the announced size
// (the last one zero-padded) and grouped into blocks; see layout in multicast's fec.go.
type Symbol struct {
	Repair     bool // REPAIR rather than DATA
	Chunk      uint32
	Compressed uint32 // compressed length of the chunk
	Block      uint16
	Index      uint8
	Delta      bool   // the chunk's bytes are a delta against the base chunk at its index
	Payload    []byte // aliases the packet when parsed
}

func (s *Symbol) Type() Type {
	if s.Repair {
		return TypeRepair
	}
	return TypeData
}

func (s *Symbol) AppendBinary(b []byte) ([]byte, error) {
	if len(s.Payload) == 0 || len(s.Payload) > MaxSymbolSize {
		return b, fmt.Errorf("%w: chunk %d symbol of %d bytes", ErrMalformed, s.Chunk, len(s.Payload))
	}
	b = binary.BigEndian.AppendUint32(b, s.Chunk)
	b = binary.BigEndian.AppendUint32(b, s.Compressed)
	b = binary.BigEndian.AppendUint16(b, s.Block)
	var fl byte
	if s.Delta {
		fl |= symbolDelta
	}
	b = append(b, s.Index, fl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Payload)))
	return append(b, s.Payload...), nil
}

func parseSymbol(t Type, b []byte) (*Symbol, error) {
	r := reader{b: b}
	s := &Symbol{Repair: t == TypeRepair, Chunk: r.u32(), Compressed: r.u32(), Block: r.u16(), Index: r.u8()}
	fl := r.u8()
	r.check(fl&^symbolDelta == 0, "symbol flags %#x", fl)
	s.Delta = fl&symbolDelta != 0
	n := int(r.u16())
	r.check(n > 0 && n <= MaxSymbolSize, "symbol of %d bytes", n)
	s.Payload = r.take(n)
	return s, r.done()
}

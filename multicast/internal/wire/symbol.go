package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// SymbolHeaderLen is the size of a Symbol before its payload.
const SymbolHeaderLen = 15

// Symbol flags.
const symbolDelta = 1 // the chunk is zstd-compressed against the base image's chunk at its index

// Symbol is one FEC symbol of a compressed chunk: a DATA symbol (Index <
// the block's data count) or a REPAIR parity symbol (Index at or above it).
// Both are multicast and share this layout:
//
//	0 chunk u32  4 compressed length u32  8 block u16  10 index u16
//	12 flags u8 (1: delta)  13 payload length u16  15 payload
//
// The chunk's compressed bytes are cut into symbols of the announced size
// (the last one zero-padded) and grouped into blocks; see layout in multicast's fec.go.
type Symbol struct {
	Repair     bool // REPAIR rather than DATA
	Chunk      uint32
	Compressed uint32 // compressed length of the chunk
	Block      uint16
	Index      uint16
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
	b = binary.BigEndian.AppendUint16(b, s.Index)
	b = append(b, fl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(s.Payload)))
	return append(b, s.Payload...), nil
}

func parseSymbol(t Type, b []byte) (*Symbol, error) {
	s := cryptobyte.String(b)
	m := &Symbol{Repair: t == TypeRepair}
	var fl uint8
	if !s.ReadUint32(&m.Chunk) || !s.ReadUint32(&m.Compressed) || !s.ReadUint16(&m.Block) || !s.ReadUint16(&m.Index) || !s.ReadUint8(&fl) {
		return nil, short(b, s, "symbol header")
	}
	if fl&^symbolDelta != 0 {
		return nil, malformed("symbol flags %#x", fl)
	}
	m.Delta = fl&symbolDelta != 0
	var n uint16
	if !s.ReadUint16(&n) {
		return nil, short(b, s, "symbol length")
	}
	if n == 0 || int(n) > MaxSymbolSize {
		return nil, malformed("symbol of %d bytes", n)
	}
	if !s.ReadBytes(&m.Payload, int(n)) {
		return nil, short(b, s, "symbol payload")
	}
	return m, done(s)
}

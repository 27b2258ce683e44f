package wire

import (
	"encoding/binary"
	"fmt"
)

// BlockNeed says how many symbols a host still lacks to decode one block.
type BlockNeed struct {
	Chunk   uint32
	Block   uint16
	Missing uint8
}

// Nack answers a STATUS (unicast): for each incomplete block a count of
// missing symbols — not a list — and the chunks of which the host has no
// symbol at all (it cannot know their block layout). One round's answer
// may span Parts packets; each is bounded, so at most
// 1+64+10+1+16*8+2+160*7 = 1326 bytes of body.
//
//	0 host id: len u8 + bytes   round u32   loss ‰ u16   part u8   parts u8
//	  range count u8, ranges: first chunk u32, count u32
//	  block count u16, blocks: chunk u32, block u16, missing u8
type Nack struct {
	Host   string
	Round  uint32
	Loss   uint16 // packet loss the host measured since its last NACK, per mille
	Part   uint8  // 0-based index of this packet in the round's answer
	Parts  uint8  // packets in the round's answer
	Chunks []Range
	Blocks []BlockNeed
}

func (*Nack) Type() Type { return TypeNack }

func (n *Nack) AppendBinary(b []byte) ([]byte, error) {
	if err := n.check(); err != nil {
		return b, err
	}
	b, err := appendStr8(b, "host id", n.Host, MaxHostID)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, n.Round)
	b = binary.BigEndian.AppendUint16(b, n.Loss)
	b = append(b, n.Part, n.Parts, byte(len(n.Chunks)))
	b = appendRanges(b, n.Chunks)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Blocks)))
	for _, e := range n.Blocks {
		b = binary.BigEndian.AppendUint32(b, e.Chunk)
		b = binary.BigEndian.AppendUint16(b, e.Block)
		b = append(b, e.Missing)
	}
	return b, nil
}

func (n *Nack) check() error {
	switch {
	case len(n.Chunks) > MaxNackRanges || len(n.Blocks) > MaxNackBlocks:
		return fmt.Errorf("%w: nack from %q with %d ranges, %d blocks", ErrMalformed, n.Host, len(n.Chunks), len(n.Blocks))
	case n.Part >= n.Parts || n.Parts > MaxNackParts:
		return fmt.Errorf("%w: nack from %q part %d of %d", ErrMalformed, n.Host, n.Part, n.Parts)
	case n.Loss > 1000:
		return fmt.Errorf("%w: nack from %q loss %d‰", ErrMalformed, n.Host, n.Loss)
	}
	for _, e := range n.Blocks {
		if e.Missing == 0 {
			return fmt.Errorf("%w: nack from %q: chunk %d block %d misses 0", ErrMalformed, n.Host, e.Chunk, e.Block)
		}
	}
	return nil
}

func parseNack(b []byte) (*Nack, error) {
	r := reader{b: b}
	n := &Nack{Host: r.str8("host id", MaxHostID), Round: r.u32(), Loss: r.u16(), Part: r.u8(), Parts: r.u8()}
	nr := int(r.u8())
	r.check(nr <= MaxNackRanges, "%d ranges in nack, more than %d", nr, MaxNackRanges)
	n.Chunks = readRanges(&r, nr)
	nb := int(r.u16())
	r.check(nb <= MaxNackBlocks, "%d blocks in nack, more than %d", nb, MaxNackBlocks)
	for i := 0; i < nb && r.err == nil; i++ {
		n.Blocks = append(n.Blocks, BlockNeed{Chunk: r.u32(), Block: r.u16(), Missing: r.u8()})
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	return n, n.check()
}

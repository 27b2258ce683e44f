package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// BlockNeed says how many symbols a host still lacks to decode one block.
type BlockNeed struct {
	Chunk   uint32
	Block   uint16
	Missing uint16
}

// Nack answers a STATUS (unicast): for each incomplete block a count of
// missing symbols — not a list — and the chunks of which the host has no
// symbol at all (it cannot know their block layout). One round's answer
// may span Parts packets; each is bounded, so at most
// 1+64+10+1+16*8+2+150*8 = 1406 bytes of body (1,438 with the header and
// MAC: under MaxPacket).
//
//	0 host id: len u8 + bytes   round u32   loss ‰ u16   part u8   parts u8
//	  range count u8, ranges: first chunk u32, count u32
//	  block count u16, blocks: chunk u32, block u16, missing u16
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
	return appendBlocks(b, n.Blocks), nil
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
	s := cryptobyte.String(b)
	n := &Nack{}
	if err := readStr8(&s, b, "host id", MaxHostID, &n.Host); err != nil {
		return nil, err
	}
	var nr uint8
	if !s.ReadUint32(&n.Round) || !s.ReadUint16(&n.Loss) || !s.ReadUint8(&n.Part) || !s.ReadUint8(&n.Parts) || !s.ReadUint8(&nr) {
		return nil, short(b, s, "nack header")
	}
	var err error
	if n.Chunks, n.Blocks, err = readNeeds(&s, b, int(nr), "nack"); err != nil {
		return nil, err
	}
	if err := done(s); err != nil {
		return nil, err
	}
	return n, n.check()
}

// readNeeds reads what a NACK, or a STATUS summary, lists once its range
// count nr is read: nr ranges, a block count u16, the blocks; both counts
// bounded (MaxNackRanges, MaxNackBlocks).
func readNeeds(s *cryptobyte.String, body []byte, nr int, in string) ([]Range, []BlockNeed, error) {
	if nr > MaxNackRanges {
		return nil, nil, malformed("%d ranges in %s, more than %d", nr, in, MaxNackRanges)
	}
	rs, err := readRanges(s, body, nr)
	if err != nil {
		return nil, nil, err
	}
	var nb uint16
	if !s.ReadUint16(&nb) {
		return nil, nil, short(body, *s, "block count")
	}
	if nb > MaxNackBlocks {
		return nil, nil, malformed("%d blocks in %s, more than %d", nb, in, MaxNackBlocks)
	}
	bs, err := readBlocks(s, body, int(nb))
	return rs, bs, err
}

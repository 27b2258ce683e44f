package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Parsers read a body with a cryptobyte.String, a cursor whose reads
// report false, and do not move, when too few bytes are left; each checks
// a field against its bound as soon as it is read, before it sizes
// anything. The helpers here turn a failed read or check into the error
// Parse wraps with the packet's type and sequence.

// short is a body cut short while reading what: where, and what is left.
func short(body []byte, s cryptobyte.String, what string) error {
	return fmt.Errorf("%w: %s at offset %d, %d bytes left", ErrShort, what, len(body)-len(s), len(s))
}

// malformed is a field out of its bounds.
func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
}

// done is nil when the whole body was read.
func done(s cryptobyte.String) error {
	if !s.Empty() {
		return malformed("%d trailing bytes", len(s))
	}
	return nil
}

// readStr8 reads a u8 length and that many bytes into out, refusing more
// than max.
func readStr8(s *cryptobyte.String, body []byte, what string, max int, out *string) error {
	var n uint8
	var p []byte
	if !s.ReadUint8(&n) {
		return short(body, *s, what)
	}
	if int(n) > max {
		return malformed("%s of %d bytes, more than %d", what, n, max)
	}
	if !s.ReadBytes(&p, int(n)) {
		return short(body, *s, what)
	}
	*out = string(p)
	return nil
}

// appendStr8 appends a u8 length and s, refusing more than max bytes.
func appendStr8(b []byte, what, s string, max int) ([]byte, error) {
	if len(s) > max {
		return b, fmt.Errorf("%w: %s of %d bytes, more than %d", ErrMalformed, what, len(s), max)
	}
	b = append(b, byte(len(s)))
	return append(b, s...), nil
}

// readRanges reads n ranges (first chunk u32, count u32), each non-empty
// and not wrapping; nil for none. Callers bound n.
func readRanges(s *cryptobyte.String, body []byte, n int) ([]Range, error) {
	if n == 0 {
		return nil, nil
	}
	rs := make([]Range, 0, n)
	for range n {
		var rg Range
		if !s.ReadUint32(&rg.First) || !s.ReadUint32(&rg.Count) {
			return nil, short(body, *s, "range")
		}
		if rg.Count == 0 || rg.First+rg.Count <= rg.First {
			return nil, malformed("range %d+%d", rg.First, rg.Count)
		}
		rs = append(rs, rg)
	}
	return rs, nil
}

// appendRanges appends ranges as readRanges reads them.
func appendRanges(b []byte, rs []Range) []byte {
	for _, rg := range rs {
		b = binary.BigEndian.AppendUint32(b, rg.First)
		b = binary.BigEndian.AppendUint32(b, rg.Count)
	}
	return b
}

// readBlocks reads n block needs (chunk u32, block u16, missing u16); nil
// for none. Callers bound n.
func readBlocks(s *cryptobyte.String, body []byte, n int) ([]BlockNeed, error) {
	if n == 0 {
		return nil, nil
	}
	bs := make([]BlockNeed, n)
	for i := range bs {
		if !s.ReadUint32(&bs[i].Chunk) || !s.ReadUint16(&bs[i].Block) || !s.ReadUint16(&bs[i].Missing) {
			return nil, short(body, *s, "block")
		}
	}
	return bs, nil
}

// appendBlocks appends block needs as readBlocks reads them.
func appendBlocks(b []byte, bs []BlockNeed) []byte {
	for _, e := range bs {
		b = binary.BigEndian.AppendUint32(b, e.Chunk)
		b = binary.BigEndian.AppendUint16(b, e.Block)
		b = binary.BigEndian.AppendUint16(b, e.Missing)
	}
	return b
}

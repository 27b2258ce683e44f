// Package binread reads the fields of a binary message or file, big-endian,
// with golang.org/x/crypto/cryptobyte, and keeps the first error: after a
// read fails every later read returns zero values, and Err names the field
// that failed. A parser reads a whole structure and checks Err once, so it
// reads like the layout it decodes.
package binread

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Reader reads fields from a byte slice. Every error it records wraps the
// sentinel it was made with, so callers test with errors.Is.
type Reader struct {
	s    cryptobyte.String
	kind error
	err  error
}

// New returns a Reader of b whose errors wrap kind.
func New(b []byte, kind error) *Reader { return &Reader{s: b, kind: kind} }

// Err returns the first error, or nil.
func (r *Reader) Err() error { return r.err }

// Len returns the number of bytes not read yet.
func (r *Reader) Len() int { return len(r.s) }

// Fail records kind with the formatted text, unless an error is recorded.
func (r *Reader) Fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{r.kind}, args...)...)
	}
}

// Check records err, a check of a field that failed, unless an error is
// recorded or err is nil.
func (r *Reader) Check(err error) {
	if r.err == nil {
		r.err = err
	}
}

// short records that what (n bytes; 0 when length-prefixed) did not fit.
func (r *Reader) short(what string, n int) {
	if n > 0 {
		r.Fail("truncated in %s: %d bytes left, need %d", what, len(r.s), n)
	} else {
		r.Fail("truncated in %s: %d bytes left", what, len(r.s))
	}
}

// Bytes returns the next n bytes, what the field is called; nil after a
// failure. The slice aliases the input.
func (r *Reader) Bytes(what string, n int) (p []byte) {
	if r.err == nil && !r.s.ReadBytes(&p, n) {
		r.short(what, n)
	}
	return p
}

// U8 reads a byte.
func (r *Reader) U8(what string) (v uint8) {
	if r.err == nil && !r.s.ReadUint8(&v) {
		r.short(what, 1)
	}
	return v
}

// U16 reads a big-endian uint16.
func (r *Reader) U16(what string) (v uint16) {
	if r.err == nil && !r.s.ReadUint16(&v) {
		r.short(what, 2)
	}
	return v
}

// U32 reads a big-endian uint32.
func (r *Reader) U32(what string) (v uint32) {
	if r.err == nil && !r.s.ReadUint32(&v) {
		r.short(what, 4)
	}
	return v
}

// U64 reads a big-endian uint64.
func (r *Reader) U64(what string) (v uint64) {
	if r.err == nil && !r.s.ReadUint64(&v) {
		r.short(what, 8)
	}
	return v
}

// Prefixed8 reads a u8 length and that many bytes.
func (r *Reader) Prefixed8(what string) []byte {
	var p cryptobyte.String
	if r.err == nil && !r.s.ReadUint8LengthPrefixed(&p) {
		r.short(what, 0)
	}
	return p
}

// Prefixed16 reads a big-endian u16 length and that many bytes.
func (r *Reader) Prefixed16(what string) []byte {
	var p cryptobyte.String
	if r.err == nil && !r.s.ReadUint16LengthPrefixed(&p) {
		r.short(what, 0)
	}
	return p
}

// Uvarint reads an unsigned varint (encoding/binary) of at most limit.
func (r *Reader) Uvarint(what string, limit uint64) uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.s)
	if n <= 0 {
		r.Fail("truncated or overlong number in %s", what)
		return 0
	}
	r.s.Skip(n)
	if v > limit {
		r.Fail("%s %d, more than %d", what, v, limit)
		return 0
	}
	return v
}

// Done returns the first error, or an error if bytes are left over.
func (r *Reader) Done() error {
	if r.err == nil && !r.s.Empty() {
		r.Fail("%d trailing bytes", len(r.s))
	}
	return r.err
}

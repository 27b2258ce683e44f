package wire

import (
	"encoding/binary"
	"fmt"
)

// reader decodes big-endian fields with a sticky error, so parsers read
// like the layout they decode and check the error once.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w: need %d bytes at offset %d, have %d", ErrShort, n, r.off, len(r.b)-r.off)
		return nil
	}
	p := r.b[r.off : r.off+n]
	r.off += n
	return p
}

func (r *reader) u8() uint8 {
	if p := r.take(1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if p := r.take(2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if p := r.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if p := r.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// str8 reads a u8 length and that many bytes, refusing more than max.
func (r *reader) str8(what string, max int) string {
	n := int(r.u8())
	r.check(n <= max, "%s of %d bytes, more than %d", what, n, max)
	return string(r.take(n))
}

// check records a malformation unless ok.
func (r *reader) check(ok bool, format string, args ...any) {
	if !ok && r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

// done returns the first error, or an error if bytes are left over.
func (r *reader) done() error {
	r.check(r.off == len(r.b), "%d trailing bytes", len(r.b)-r.off)
	return r.err
}

// appendStr8 appends a u8 length and s, refusing more than max bytes.
func appendStr8(b []byte, what, s string, max int) ([]byte, error) {
	if len(s) > max {
		return b, fmt.Errorf("%w: %s of %d bytes, more than %d", ErrMalformed, what, len(s), max)
	}
	b = append(b, byte(len(s)))
	return append(b, s...), nil
}

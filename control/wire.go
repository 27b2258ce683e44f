package control

import (
	"encoding/binary"
	"fmt"
	"github.com/loopcast/loopcast/hostkey"
	"unicode/utf8"
)

var magic = [4]byte{'L', 'C', 'C', 'P'}

// headerLen is the fixed header: magic, version, type, flags, deploy id.
const headerLen = 16

// Header starts every message.
type Header struct {
	Type   Type
	Deploy uint64 // the deploy (or session) the message belongs to
}

// appendHeader appends the fixed header:
//
//	0 magic [4]  4 version u8  5 type u8  6 flags u16 (0)  8 deploy u64
func (h Header) appendHeader(b []byte) []byte {
	b = append(b, magic[:]...)
	b = append(b, Version, byte(h.Type))
	b = binary.BigEndian.AppendUint16(b, 0)
	return binary.BigEndian.AppendUint64(b, h.Deploy)
}

// parseHeader decodes the fixed header and returns it with the rest.
func parseHeader(b []byte) (Header, []byte, error) {
	if len(b) > MaxMessageLen {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, more than %d", ErrMalformed, len(b), MaxMessageLen)
	}
	if len(b) < headerLen {
		return Header{}, nil, fmt.Errorf("%w: %d bytes, shorter than a header", ErrMalformed, len(b))
	}
	if [4]byte(b[:4]) != magic {
		return Header{}, nil, fmt.Errorf("%w: bad magic %q", ErrMalformed, b[:4])
	}
	if b[4] != Version {
		return Header{}, nil, fmt.Errorf("%w: version %d (this build reads %d)", ErrVersion, b[4], Version)
	}
	if fl := binary.BigEndian.Uint16(b[6:]); fl != 0 {
		return Header{}, nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, fl)
	}
	h := Header{Type: Type(b[5]), Deploy: binary.BigEndian.Uint64(b[8:])}
	return h, b[headerLen:], nil
}

// checkName checks a name: at most MaxName printable ASCII bytes without
// spaces, and not empty unless empty is allowed.
func checkName(what, s string, empty bool) error {
	if s == "" && !empty {
		return fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	if len(s) > MaxName {
		return fmt.Errorf("%w: %s of %d bytes, more than %d", ErrMalformed, what, len(s), MaxName)
	}
	for i := range len(s) {
		if s[i] <= ' ' || s[i] > '~' {
			return fmt.Errorf("%w: %s %q has byte %#x", ErrMalformed, what, s, s[i])
		}
	}
	return nil
}

// checkText checks a text: at most MaxText bytes of UTF-8.
// checkHost checks a host id: the one rule (hostkey.CheckID) the wire,
// the CLI and inventories share.
func checkHost(what, s string) error {
	if err := hostkey.CheckID(s); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

func checkText(what, s string) error {
	if len(s) > MaxText {
		return fmt.Errorf("%w: %s of %d bytes, more than %d", ErrMalformed, what, len(s), MaxText)
	}
	if !utf8.ValidString(s) {
		return fmt.Errorf("%w: %s is not UTF-8", ErrMalformed, what)
	}
	return nil
}

// appendName appends a checked name: length u8, bytes.
func appendName(b []byte, s string) []byte { return append(append(b, byte(len(s))), s...) }

// appendText appends a checked text: length u16, bytes.
func appendText(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// reader decodes the variable part of a message with a sticky error: after
// the first failure every read returns zero values, and err says why.
type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(format string, args ...any) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

// take returns the next n bytes.
func (r *reader) take(what string, n int) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) < n {
		r.fail("truncated in %s: %d bytes left, need %d", what, len(r.b), n)
		return nil
	}
	p := r.b[:n]
	r.b = r.b[n:]
	return p
}

func (r *reader) u8(what string) uint8 {
	if p := r.take(what, 1); p != nil {
		return p[0]
	}
	return 0
}

func (r *reader) u16(what string) uint16 {
	if p := r.take(what, 2); p != nil {
		return binary.BigEndian.Uint16(p)
	}
	return 0
}

func (r *reader) u32(what string) uint32 {
	if p := r.take(what, 4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *reader) u64(what string) uint64 {
	if p := r.take(what, 8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// name reads a name and checks it.
func (r *reader) name(what string, empty bool) string {
	n := int(r.u8(what))
	s := string(r.take(what, n))
	if r.err == nil {
		if err := checkName(what, s, empty); err != nil {
			r.err = err
		}
	}
	return s
}

// text reads a text and checks it.
func (r *reader) text(what string) string {
	n := int(r.u16(what))
	if n > MaxText {
		r.fail("%s of %d bytes, more than %d", what, n, MaxText)
	}
	s := string(r.take(what, n))
	if r.err == nil {
		if err := checkText(what, s); err != nil {
			r.err = err
		}
	}
	return s
}

// done fails unless every byte was read.
func (r *reader) done() error {
	if r.err == nil && len(r.b) != 0 {
		r.fail("%d trailing bytes", len(r.b))
	}
	return r.err
}

// CheckName reports whether s can name a host, group or release in a
// command: 1 to MaxName printable ASCII bytes without spaces. Callers use
// it to refuse a bad name before anything is sent.
func CheckName(s string) error { return checkName("name", s, false) }

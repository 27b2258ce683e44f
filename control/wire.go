package control

import (
	"encoding/binary"
	"fmt"
	"unicode/utf8"

	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/binread"
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

// checkRelease checks a release id to encode: the zero id (no release) is
// written as the empty name, where one is allowed.
func checkRelease(what string, id image.ID, empty bool) error {
	if id.IsZero() && !empty {
		return fmt.Errorf("%w: empty %s", ErrMalformed, what)
	}
	return nil
}

// checkHost checks a host id: the one rule (hostkey.CheckID) the wire,
// the CLI and inventories share.
func checkHost(what, s string) error {
	if err := hostkey.CheckID(s); err != nil {
		return fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
	return nil
}

// checkText checks a text: at most MaxText bytes of UTF-8.
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

// appendRelease appends a release id as a name: its 16 hex digits, or the
// empty name for the zero id.
func appendRelease(b []byte, id image.ID) []byte {
	if id.IsZero() {
		return append(b, 0)
	}
	return appendName(b, id.String())
}

// appendText appends a checked text: length u16, bytes.
func appendText(b []byte, s string) []byte {
	return append(binary.BigEndian.AppendUint16(b, uint16(len(s))), s...)
}

// reader decodes the variable part of a message: binread's fields
// (cryptobyte, the first error kept, naming the field) plus the names and
// texts of this protocol, checked as they are read.
type reader struct{ *binread.Reader }

func newReader(b []byte) *reader { return &reader{binread.New(b, ErrMalformed)} }

// name reads a name (length u8) and checks it.
func (r *reader) name(what string, empty bool) string {
	s := string(r.Prefixed8(what))
	r.Check(checkName(what, s, empty))
	return s
}

// host reads a host id (length u8) and checks it by the one host-id rule,
// as checkHost does before encoding: what parses, encodes.
func (r *reader) host(what string) string {
	s := string(r.Prefixed8(what))
	if r.Err() == nil {
		r.Check(checkHost(what, s))
	}
	return s
}

// release reads a release id written as a name: 16 lowercase hex digits,
// or, where empty is allowed, the empty name for the zero id. Anything
// else (another name, the zero id's digits, which appendRelease never
// writes) is malformed, naming the field.
func (r *reader) release(what string, empty bool) image.ID {
	s := r.name(what, empty)
	if r.Err() != nil || s == "" {
		return image.ID{}
	}
	id, err := image.ParseRelease(s)
	if err != nil {
		r.Fail("%s: %v", what, err)
		return image.ID{}
	}
	return id
}

// text reads a text (length u16) and checks it.
func (r *reader) text(what string) string {
	s := string(r.Prefixed16(what))
	r.Check(checkText(what, s))
	return s
}

package wire

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
)

// Auth is the header's flags: which tag ends a packet. The tag covers
// every byte before it, header included, so it binds the packet's type,
// session and sequence. Which packet carries which tag, under which key,
// is multicast's auth.go.
type Auth uint16

const (
	AuthNone Auth = 0 // no tag
	AuthSig  Auth = 1 // an ed25519 signature (SigLen bytes)
	AuthMAC  Auth = 2 // HMAC-SHA256 truncated to MACLen bytes
)

const (
	SigLen = ed25519.SignatureSize
	MACLen = 16
	// minRefuseVersion is the oldest version whose REFUSE this one reads.
	minRefuseVersion = 3
)

// tagLen returns the tag length header flags call for; -1: unknown flags.
func tagLen(a Auth) int {
	switch a {
	case AuthNone:
		return 0
	case AuthSig:
		return SigLen
	case AuthMAC:
		return MACLen
	}
	return -1
}

// AppendTagged appends the packet of h and m, its flags set to a, and the
// tag sum makes over it (SigLen or MACLen bytes, as a calls for).
func AppendTagged(b []byte, h Header, m Message, a Auth, sum func(covered []byte) []byte) ([]byte, error) {
	start := len(b)
	b, err := AppendPacket(b, h, m)
	if err != nil {
		return b, err
	}
	if n := len(b) - start + tagLen(a); n > MaxPacket {
		what := ""
		if a == AuthSig {
			what = "signed "
		}
		return b[:start], fmt.Errorf("%w: %s%v of %d bytes, more than %d", ErrMalformed, what, m.Type(), n, MaxPacket)
	}
	binary.BigEndian.PutUint16(b[start+6:], uint16(a))
	return append(b, sum(b[start:])...), nil
}

// Auth returns a parsed packet's header flags.
func (h *Header) Auth() Auth { return h.auth }

// Tag returns a parsed packet's signature or MAC (it aliases the packet).
func (h *Header) Tag() []byte { return h.tag }

// Covered returns the bytes a parsed packet's tag covers: the packet
// before the tag (it aliases the packet).
func (h *Header) Covered() []byte { return h.covered }

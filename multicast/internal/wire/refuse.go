package wire

import (
	"fmt"
	"unicode/utf8"

	"golang.org/x/crypto/cryptobyte"
)

// RefuseCode says why a host will not take a session. Values are on the
// wire — only append.
type RefuseCode uint8

const (
	RefuseOther        RefuseCode = 1 + iota // Detail says why
	RefuseNoSpace                            // its disk cannot hold the image (with its reserve)
	RefuseUntrustedKey                       // the release is not signed by a key it trusts
	RefuseVersion                            // it speaks another protocol or manifest version
	RefuseBusy                               // it is receiving another session
	RefuseOlder                              // the release is older than its current one
)

var refuseNames = [...]string{
	RefuseOther: "other", RefuseNoSpace: "no-space", RefuseUntrustedKey: "untrusted-key",
	RefuseVersion: "version", RefuseBusy: "busy", RefuseOlder: "older-than-current",
}

func (c RefuseCode) String() string {
	if int(c) < len(refuseNames) && refuseNames[c] != "" {
		return refuseNames[c]
	}
	return fmt.Sprintf("refusal(%d)", uint8(c))
}

// Refuse is a host's answer to a session it will not take (unicast to the
// sender, at most once per refuseEvery per session), signed by the host's
// key. Its layout, like the header's, is the same in every version from
// 3 on, so a host of another version can say so.
//
//	0 host id: len u8 + bytes   host key [32]   code u8
//	  detail: len u8 + bytes (≤ MaxReason)
type Refuse struct {
	Host    string
	HostKey [32]byte
	Code    RefuseCode
	Detail  string
}

func (*Refuse) Type() Type { return TypeRefuse }

func (m *Refuse) AppendBinary(b []byte) ([]byte, error) {
	b, err := appendStr8(b, "host id", m.Host, MaxHostID)
	if err != nil {
		return b, err
	}
	b = append(b, m.HostKey[:]...)
	b = append(b, byte(m.Code))
	return appendStr8(b, "detail", Truncate(m.Detail, MaxReason), MaxReason)
}

func parseRefuse(b []byte) (*Refuse, error) {
	s := cryptobyte.String(b)
	m := &Refuse{}
	if err := readStr8(&s, b, "host id", MaxHostID, &m.Host); err != nil {
		return nil, err
	}
	var code uint8
	if !s.CopyBytes(m.HostKey[:]) || !s.ReadUint8(&code) {
		return nil, short(b, s, "refuse key and code")
	}
	if m.Code = RefuseCode(code); m.Code == 0 {
		return nil, malformed("refuse code 0")
	}
	if err := readStr8(&s, b, "detail", MaxReason, &m.Detail); err != nil {
		return nil, err
	}
	return m, done(s)
}

// Truncate cuts s to at most n bytes, on a rune boundary: a free-text
// field (a reason, a detail) that would not fit its str8 is cut, not
// refused.
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

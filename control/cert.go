package control

import (
	"bytes"
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"time"
)

// HostCert is the sender's word, signed by a release key, that a host of a
// group has a host key: the sender issues one for every host whose key it
// pinned, at the end of each deploy that published a fleet pointer. Agents
// keep every certificate they hear and hand any of them on (they prove
// themselves), and a host asking a peer for a release's chunks shows its
// own and proves it holds the key (package peer): a stranger on the LAN,
// who has no pinned key, is not served.
//
//	header (deploy field 0) | issued u64 (Unix ms) | expires u64 (Unix ms)
//	| group name | host name | host key [32] | scheme u8 (1)
//	| release public key [32] | signature [64] over every byte before it
type HostCert struct {
	Issued, Expires int64 // Unix milliseconds
	Group, Host     string
	HostKey         ed25519.PublicKey

	PublicKey ed25519.PublicKey // the release key that signed it
	Signature []byte
}

// CertLifetime is how long a certificate is good for: a host that took no
// deploy in this long (its certificate renewed at each) must take one
// before its peers serve it again.
const CertLifetime = 30 * 24 * time.Hour

// SignHostCert signs c with key and returns its encoding.
func SignHostCert(c *HostCert, key ed25519.PrivateKey) ([]byte, error) {
	if err := checkName("group", c.Group, false); err != nil {
		return nil, err
	}
	if err := checkHost("host", c.Host); err != nil {
		return nil, err
	}
	if len(c.HostKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: host key of %d bytes", ErrMalformed, len(c.HostKey))
	}
	c.PublicKey = key.Public().(ed25519.PublicKey)
	b := Header{Type: TypeHostCert}.appendHeader(nil)
	b = binary.BigEndian.AppendUint64(b, uint64(c.Issued))
	b = binary.BigEndian.AppendUint64(b, uint64(c.Expires))
	b = appendName(b, c.Group)
	b = appendName(b, c.Host)
	b = append(b, c.HostKey...)
	b = append(append(b, schemeEd25519), c.PublicKey...)
	c.Signature = ed25519.Sign(key, b)
	return append(b, c.Signature...), nil
}

// ParseHostCert decodes a certificate and checks its signature under the
// key it carries; VerifyHostCert then checks that key, group and time.
func ParseHostCert(b []byte) (*HostCert, error) {
	h, rest, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Type != TypeHostCert {
		return nil, fmt.Errorf("%w: %v where a host certificate was expected", ErrMalformed, h.Type)
	}
	r := newReader(rest)
	c := &HostCert{Issued: int64(r.U64("issued")), Expires: int64(r.U64("expires"))}
	c.Group = r.name("group", false)
	c.Host = r.host("host")
	if k := r.Bytes("host key", ed25519.PublicKeySize); k != nil {
		c.HostKey = ed25519.PublicKey(bytes.Clone(k))
	}
	if s := r.U8("scheme"); r.Err() == nil && s != schemeEd25519 {
		r.Fail("certificate signature scheme %d", s)
	}
	if k := r.Bytes("public key", ed25519.PublicKeySize); k != nil {
		c.PublicKey = ed25519.PublicKey(bytes.Clone(k))
	}
	c.Signature = bytes.Clone(r.Bytes("signature", ed25519.SignatureSize))
	if err := r.Done(); err != nil {
		return nil, err
	}
	if err := checkHost("host", c.Host); err != nil {
		return nil, err
	}
	if !ed25519.Verify(c.PublicKey, b[:len(b)-ed25519.SignatureSize], c.Signature) {
		return nil, fmt.Errorf("%w: certificate of host %s", ErrBadSignature, c.Host)
	}
	return c, nil
}

// VerifyHostCert checks that c is signed by one of keys, for group, and
// good at now.
func VerifyHostCert(c *HostCert, keys []ed25519.PublicKey, group string, now time.Time) error {
	switch ms := now.UnixMilli(); {
	case !trusted(keys, c.PublicKey):
		return fmt.Errorf("%w: certificate of host %s", ErrUntrustedKey, c.Host)
	case c.Group != group:
		return fmt.Errorf("%w: certificate of host %s is for group %s", ErrOtherGroup, c.Host, c.Group)
	case ms > c.Expires:
		return fmt.Errorf("%w: certificate of host %s expired %s", ErrStale, c.Host, time.UnixMilli(c.Expires).UTC().Format(time.RFC3339))
	case ms < c.Issued-MaxClockSkew.Milliseconds():
		return fmt.Errorf("%w: certificate of host %s", ErrFuture, c.Host)
	}
	return nil
}

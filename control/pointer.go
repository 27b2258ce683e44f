package control

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/loopcast/loopcast/image"
)

// Pointer is the fleet pointer: a statement, signed by a release key, of
// the release a group serves. The sender issues one at the end of every
// deploy that switched hosts and of every rollback; agents keep the newest
// they have seen and hand it to any agent that asks, so a host that missed
// a deploy learns of it from its peers. Seq only grows: an agent takes a
// pointer only when its Seq is higher than its own, so a replayed older
// pointer changes nothing, and a rollback is a newer pointer to an older
// release.
//
// Its encoding (after the common header, whose deploy field is Seq):
//
//	issued u64 (Unix ms) | group name | release name | manifest digest [32]
//	| hosts u32 | kind u8 (0 deploy, 1 rollback) | scheme u8 (1)
//	| public key [32] | signature [64]
//
// The signature covers every byte before it.
type Pointer struct {
	Seq     uint64
	Issued  int64 // Unix milliseconds, by the sender's clock
	Group   string
	Release image.ID
	// Digest is the SHA-256 of the release's signed manifest
	// (image.Manifest.Digest): a host fetching the release from a peer
	// takes only that manifest.
	Digest [sha256.Size]byte
	// Hosts is how many hosts the sender knows in the group: agents size
	// their share of answers to a pointer query by it.
	Hosts uint32
	// Rollback marks a rollback's pointer: only it may take a host to a
	// release older than the one it serves.
	Rollback bool

	PublicKey ed25519.PublicKey
	Signature []byte
}

// IssuedAt returns the issue time.
func (p *Pointer) IssuedAt() time.Time { return time.UnixMilli(p.Issued) }

// KeyID names the signing key.
func (p *Pointer) KeyID() string {
	if p.PublicKey == nil {
		return "unsigned"
	}
	return image.KeyID(p.PublicKey)
}

func (p *Pointer) String() string {
	return fmt.Sprintf("fleet pointer #%d (group %s, release %s, issued %s, key %s)",
		p.Seq, p.Group, p.Release, p.IssuedAt().UTC().Format(time.RFC3339), p.KeyID())
}

func (p *Pointer) appendSigned(b []byte) ([]byte, error) {
	if err := checkName("group", p.Group, false); err != nil {
		return b, err
	}
	if err := checkRelease("release", p.Release, false); err != nil {
		return b, err
	}
	if len(p.PublicKey) != ed25519.PublicKeySize {
		return b, fmt.Errorf("%w: pointer key of %d bytes", ErrMalformed, len(p.PublicKey))
	}
	b = Header{Type: TypePointer, Deploy: p.Seq}.appendHeader(b)
	b = binary.BigEndian.AppendUint64(b, uint64(p.Issued))
	b = appendName(b, p.Group)
	b = appendRelease(b, p.Release)
	b = append(b, p.Digest[:]...)
	b = binary.BigEndian.AppendUint32(b, p.Hosts)
	kind := byte(0)
	if p.Rollback {
		kind = 1
	}
	b = append(b, kind)
	return append(append(b, schemeEd25519), p.PublicKey...), nil
}

// SignPointer signs p with key and returns its encoding.
func SignPointer(p *Pointer, key ed25519.PrivateKey) ([]byte, error) {
	p.PublicKey = key.Public().(ed25519.PublicKey)
	msg, err := p.appendSigned(nil)
	if err != nil {
		return nil, err
	}
	p.Signature = ed25519.Sign(key, msg)
	return append(msg, p.Signature...), nil
}

// ParsePointer decodes a pointer and checks its signature under the key it
// carries; VerifyPointer then checks that key and the group.
func ParsePointer(b []byte) (*Pointer, error) {
	h, rest, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Type != TypePointer {
		return nil, fmt.Errorf("%w: %v where a pointer was expected", ErrMalformed, h.Type)
	}
	r := newReader(rest)
	p := &Pointer{Seq: h.Deploy, Issued: int64(r.U64("issued"))}
	p.Group = r.name("group", false)
	p.Release = r.release("release", false)
	copy(p.Digest[:], r.Bytes("digest", sha256.Size))
	p.Hosts = r.U32("hosts")
	switch k := r.U8("kind"); {
	case r.Err() != nil:
	case k > 1:
		r.Fail("pointer kind %d", k)
	default:
		p.Rollback = k == 1
	}
	if s := r.U8("scheme"); r.Err() == nil && s != schemeEd25519 {
		r.Fail("pointer signature scheme %d", s)
	}
	if k := r.Bytes("public key", ed25519.PublicKeySize); k != nil {
		p.PublicKey = ed25519.PublicKey(bytes.Clone(k))
	}
	p.Signature = bytes.Clone(r.Bytes("signature", ed25519.SignatureSize))
	if err := r.Done(); err != nil {
		return nil, err
	}
	if !ed25519.Verify(p.PublicKey, b[:len(b)-ed25519.SignatureSize], p.Signature) {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, p)
	}
	return p, nil
}

// VerifyPointer checks that p is signed by one of keys and names group.
func VerifyPointer(p *Pointer, keys []ed25519.PublicKey, group string) error {
	if !trusted(keys, p.PublicKey) {
		return fmt.Errorf("%w: %v", ErrUntrustedKey, p)
	}
	if p.Group != group {
		return fmt.Errorf("%w: %v, this agent's group is %s", ErrOtherGroup, p, group)
	}
	return nil
}

// PointerQuery asks the agents of a group for their fleet pointer. It is
// unsigned (it changes nothing): an agent whose pointer's Seq is at least
// Have answers, with its share of the group's answers, at a bounded rate.
//
//	group name | have u64
type PointerQuery struct {
	Group string
	Have  uint64 // the asker's pointer Seq; 0 when it has none
}

// AppendBinary appends the encoding.
func (q *PointerQuery) AppendBinary(b []byte) ([]byte, error) {
	if err := checkName("group", q.Group, false); err != nil {
		return b, err
	}
	b = Header{Type: TypePointerQuery}.appendHeader(b)
	b = appendName(b, q.Group)
	return binary.BigEndian.AppendUint64(b, q.Have), nil
}

// ParsePointerQuery decodes a query.
func ParsePointerQuery(b []byte) (*PointerQuery, error) {
	h, rest, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	if h.Type != TypePointerQuery {
		return nil, fmt.Errorf("%w: %v where a pointer query was expected", ErrMalformed, h.Type)
	}
	r := newReader(rest)
	q := &PointerQuery{Group: r.name("group", false), Have: r.U64("have")}
	return q, r.Done()
}

// PointerAnswer is an agent's answer to a query: its pointer, verbatim (it
// proves itself), and whether the agent serves the pointer's release to
// peers. Serves is a hint: a fetch checks every byte against the signed
// manifest. LastResort marks the sender's `sender serve`: agents fetch
// from it only when no peer serves the release.
//
//	flags u8 (bit 0: serves, bit 1: last resort) | pointer length u16 | pointer
type PointerAnswer struct {
	Serves     bool
	LastResort bool
	Pointer    []byte
}

// AppendBinary appends the encoding.
func (a *PointerAnswer) AppendBinary(b []byte) ([]byte, error) {
	if len(a.Pointer) > MaxMessageLen-headerLen-3 {
		return b, fmt.Errorf("%w: pointer of %d bytes", ErrMalformed, len(a.Pointer))
	}
	b = Header{Type: TypePointerAnswer}.appendHeader(b)
	var fl byte
	if a.Serves {
		fl |= 1
	}
	if a.LastResort {
		fl |= 2
	}
	b = append(b, fl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(a.Pointer)))
	return append(b, a.Pointer...), nil
}

// ParsePointerAnswer decodes an answer and the pointer in it (signature
// checked under its own key; the caller checks the key is trusted).
func ParsePointerAnswer(b []byte) (*PointerAnswer, *Pointer, error) {
	h, rest, err := parseHeader(b)
	if err != nil {
		return nil, nil, err
	}
	if h.Type != TypePointerAnswer {
		return nil, nil, fmt.Errorf("%w: %v where a pointer answer was expected", ErrMalformed, h.Type)
	}
	r := newReader(rest)
	fl := r.U8("flags")
	if fl&^3 != 0 {
		r.Fail("unknown answer flags %#x", fl)
	}
	a := &PointerAnswer{Serves: fl&1 != 0, LastResort: fl&2 != 0, Pointer: bytes.Clone(r.Prefixed16("pointer"))}
	if err := r.Done(); err != nil {
		return nil, nil, err
	}
	p, err := ParsePointer(a.Pointer)
	if err != nil {
		return nil, nil, err
	}
	return a, p, nil
}

// PeekType returns the type of a message without decoding the rest; ok is
// false when b does not start with a header this build reads.
func PeekType(b []byte) (Type, bool) {
	h, _, err := parseHeader(b)
	return h.Type, err == nil
}

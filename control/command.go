package control

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/loopcast/loopcast/image"
)

// Signature schemes of a command's trailer; on the wire, only append.
const (
	schemeNone    = 0
	schemeEd25519 = 1
)

// Envelope is what every command carries besides its own fields: where it
// goes, when and by whom it was issued. The signature covers all of it.
type Envelope struct {
	Deploy  uint64   // the deploy it belongs to, echoed in replies
	Group   string   // the agents' group; an agent refuses other groups
	Targets []string // hosts that must obey; empty: every host of the group
	Nonce   [NonceLen]byte
	Issued  int64 // Unix milliseconds, by the sender's clock

	PublicKey ed25519.PublicKey // nil: unsigned
	Signature []byte
}

// NewEnvelope returns an envelope issued at now with a fresh random nonce.
func NewEnvelope(group string, deploy uint64, targets []string, now time.Time) Envelope {
	e := Envelope{Deploy: deploy, Group: group, Targets: targets, Issued: now.UnixMilli()}
	rand.Read(e.Nonce[:]) // never fails (crypto/rand since Go 1.24)
	return e
}

// KeyID names the signing key for messages, "unsigned" when there is none.
func (e *Envelope) KeyID() string {
	if e.PublicKey == nil {
		return "unsigned"
	}
	return image.KeyID(e.PublicKey)
}

// IssuedAt returns the issue time.
func (e *Envelope) IssuedAt() time.Time { return time.UnixMilli(e.Issued) }

// targets reports whether the command names host (or every host).
func (e *Envelope) targets(host string) bool {
	if len(e.Targets) == 0 {
		return true
	}
	for _, h := range e.Targets {
		if h == host {
			return true
		}
	}
	return false
}

func (e *Envelope) check() error {
	if err := checkName("group", e.Group, false); err != nil {
		return err
	}
	if len(e.Targets) > MaxTargets {
		return fmt.Errorf("%w: %d targets, more than %d", ErrMalformed, len(e.Targets), MaxTargets)
	}
	for _, h := range e.Targets {
		if err := checkHost("target host", h); err != nil {
			return err
		}
	}
	if e.PublicKey != nil && (len(e.PublicKey) != ed25519.PublicKeySize || len(e.Signature) != ed25519.SignatureSize) {
		return fmt.Errorf("%w: key of %d bytes, signature of %d", ErrMalformed, len(e.PublicKey), len(e.Signature))
	}
	return nil
}

// appendEnvelope appends the fields after the header up to the command's
// own fields: issued, nonce, group, targets.
func (e *Envelope) appendEnvelope(b []byte) []byte {
	b = binary.BigEndian.AppendUint64(b, uint64(e.Issued))
	b = append(b, e.Nonce[:]...)
	b = appendName(b, e.Group)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Targets)))
	for _, h := range e.Targets {
		b = appendName(b, h)
	}
	return b
}

func parseEnvelope(r *reader, h Header) Envelope {
	e := Envelope{Deploy: h.Deploy, Issued: int64(r.U64("issued"))}
	copy(e.Nonce[:], r.Bytes("nonce", NonceLen))
	e.Group = r.name("group", false)
	n := int(r.U16("target count"))
	if n > MaxTargets {
		r.Fail("%d targets, more than %d", n, MaxTargets)
		return e
	}
	for range n {
		if r.Err() != nil {
			break
		}
		e.Targets = append(e.Targets, r.host("target host"))
	}
	return e
}

// parseTrailer reads the signature scheme and, when signed, key and
// signature.
func parseTrailer(r *reader, e *Envelope) {
	switch s := r.U8("scheme"); {
	case r.Err() != nil:
	case s == schemeNone:
	case s == schemeEd25519:
		// Copies: the caller may reuse its packet buffer.
		if k := r.Bytes("public key", ed25519.PublicKeySize); k != nil {
			e.PublicKey = ed25519.PublicKey(bytes.Clone(k))
		}
		e.Signature = bytes.Clone(r.Bytes("signature", ed25519.SignatureSize))
	default:
		r.Fail("unknown signature scheme %d", s)
	}
}

// Command is ACTIVATE, ROLLBACK or STATUS.
type Command interface {
	Type() Type
	// Env returns the command's envelope, to read or to fill in.
	Env() *Envelope
	// AppendBinary appends the encoding, signature included if set.
	AppendBinary(b []byte) ([]byte, error)
	// appendFields appends the type's own fields after the envelope.
	appendFields(b []byte) []byte
	checkFields() error
}

// Activate tells agents to make a staged release current. An agent refuses
// a release older than its current one: only Rollback may name it.
type Activate struct {
	Envelope
	Release image.ID
}

// Rollback tells agents to go back to the previous release, or to the one
// named (which may be older than current).
type Rollback struct {
	Envelope
	To image.ID // zero: the previous release
}

// StatusRequest asks agents for their state; it changes nothing.
type StatusRequest struct {
	Envelope
}

func (*Activate) Type() Type      { return TypeActivate }
func (*Rollback) Type() Type      { return TypeRollback }
func (*StatusRequest) Type() Type { return TypeStatus }

func (c *Activate) Env() *Envelope      { return &c.Envelope }
func (c *Rollback) Env() *Envelope      { return &c.Envelope }
func (c *StatusRequest) Env() *Envelope { return &c.Envelope }

func (c *Activate) appendFields(b []byte) []byte    { return appendRelease(b, c.Release) }
func (c *Rollback) appendFields(b []byte) []byte    { return appendRelease(b, c.To) }
func (*StatusRequest) appendFields(b []byte) []byte { return b }

func (c *Activate) checkFields() error    { return checkRelease("release", c.Release, false) }
func (c *Rollback) checkFields() error    { return checkRelease("release", c.To, true) }
func (*StatusRequest) checkFields() error { return nil }

func (c *Activate) AppendBinary(b []byte) ([]byte, error)      { return appendCommand(b, c) }
func (c *Rollback) AppendBinary(b []byte) ([]byte, error)      { return appendCommand(b, c) }
func (c *StatusRequest) AppendBinary(b []byte) ([]byte, error) { return appendCommand(b, c) }

// appendCommand appends the whole encoding of c.
func appendCommand(b []byte, c Command) ([]byte, error) {
	b, err := appendSigned(b, c)
	if err != nil {
		return b, err
	}
	return append(b, c.Env().Signature...), nil
}

// appendSigned appends the part of c's encoding the signature covers:
// everything up to the signature itself.
func appendSigned(b []byte, c Command) ([]byte, error) {
	e := c.Env()
	if err := e.check(); err != nil {
		return b, err
	}
	if err := c.checkFields(); err != nil {
		return b, err
	}
	b = Header{Type: c.Type(), Deploy: e.Deploy}.appendHeader(b)
	b = c.appendFields(e.appendEnvelope(b))
	if e.PublicKey == nil {
		return append(b, schemeNone), nil
	}
	return append(append(b, schemeEd25519), e.PublicKey...), nil
}

// Sign signs c with key (setting its public key and signature) and returns
// its encoding.
func Sign(c Command, key ed25519.PrivateKey) ([]byte, error) {
	e := c.Env()
	e.PublicKey = key.Public().(ed25519.PublicKey)
	e.Signature = make([]byte, ed25519.SignatureSize) // placeholder for check
	msg, err := appendSigned(nil, c)
	if err != nil {
		e.PublicKey, e.Signature = nil, nil
		return nil, err
	}
	e.Signature = ed25519.Sign(key, msg)
	return append(msg, e.Signature...), nil
}

// signedBytes returns what c's signature covers.
func signedBytes(c Command) ([]byte, error) { return appendSigned(nil, c) }

func parseActivate(r *reader, h Header) (*Activate, error) {
	c := &Activate{Envelope: parseEnvelope(r, h)}
	c.Release = r.release("release", false)
	parseTrailer(r, &c.Envelope)
	return c, r.Done()
}

func parseRollback(r *reader, h Header) (*Rollback, error) {
	c := &Rollback{Envelope: parseEnvelope(r, h)}
	c.To = r.release("release", true)
	parseTrailer(r, &c.Envelope)
	return c, r.Done()
}

func parseStatusRequest(r *reader, h Header) (*StatusRequest, error) {
	c := &StatusRequest{Envelope: parseEnvelope(r, h)}
	parseTrailer(r, &c.Envelope)
	return c, r.Done()
}

package control

import (
	"crypto/ed25519"
	"fmt"
	"slices"
)

// Message is a command or a reply.
type Message interface {
	Type() Type
	AppendBinary(b []byte) ([]byte, error)
}

// Parse decodes one message. It checks structure and bounds only; a
// command must pass a Verifier before it is obeyed.
func Parse(b []byte) (Message, error) {
	h, rest, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	r := newReader(rest)
	switch h.Type {
	case TypeActivate:
		return nilOnError(parseActivate(r, h))
	case TypeRollback:
		return nilOnError(parseRollback(r, h))
	case TypeStatus:
		return nilOnError(parseStatusRequest(r, h))
	case TypeReply:
		return nilOnError(parseReply(r, h))
	}
	return nil, fmt.Errorf("%w: unknown type %v", ErrMalformed, h.Type)
}

// nilOnError returns a nil interface with an error, never a typed nil.
func nilOnError[M Message](m M, err error) (Message, error) {
	if err != nil {
		return nil, err
	}
	return m, nil
}

// ParseCommand decodes a command, refusing replies.
func ParseCommand(b []byte) (Command, error) {
	m, err := Parse(b)
	if err != nil {
		return nil, err
	}
	c, ok := m.(Command)
	if !ok {
		return nil, fmt.Errorf("%w: %v where a command was expected", ErrMalformed, m.Type())
	}
	return c, nil
}

// replyTrailer is what SignReply appends: the host's public key and its
// signature over the reply and that key.
const replyTrailer = ed25519.PublicKeySize + ed25519.SignatureSize

// SignReply encodes r signed by the agent's host key, so the sender counts
// it only when the key is the one it pins for r.Host.
func SignReply(r *Reply, key ed25519.PrivateKey) ([]byte, error) {
	b, err := r.AppendBinary(nil)
	if err != nil {
		return nil, err
	}
	b = append(b, key.Public().(ed25519.PublicKey)...)
	return append(b, ed25519.Sign(key, b)...), nil
}

// ParseReply decodes a signed reply, refusing commands and replies whose
// signature does not verify under the key they carry; HostKey is set to
// that key, which the caller must check is r.Host's.
func ParseReply(b []byte) (*Reply, error) {
	if len(b) < headerLen+replyTrailer || len(b) > MaxMessageLen {
		return nil, fmt.Errorf("%w: %d bytes: too short for a signed reply", ErrMalformed, len(b))
	}
	body, pub, sig := b[:len(b)-replyTrailer], b[len(b)-replyTrailer:len(b)-ed25519.SignatureSize], b[len(b)-ed25519.SignatureSize:]
	m, err := Parse(body)
	if err != nil {
		return nil, err
	}
	r, ok := m.(*Reply)
	if !ok {
		return nil, fmt.Errorf("%w: %v where a reply was expected", ErrMalformed, m.Type())
	}
	if !ed25519.Verify(pub, b[:len(b)-ed25519.SignatureSize], sig) {
		return nil, fmt.Errorf("%w: reply from %s", ErrBadReplySignature, r.Host)
	}
	r.HostKey = slices.Clone(pub)
	return r, nil
}

package control

import "fmt"

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
	r := &reader{b: rest}
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

// ParseReply decodes a reply, refusing commands.
func ParseReply(b []byte) (*Reply, error) {
	m, err := Parse(b)
	if err != nil {
		return nil, err
	}
	r, ok := m.(*Reply)
	if !ok {
		return nil, fmt.Errorf("%w: %v where a reply was expected", ErrMalformed, m.Type())
	}
	return r, nil
}

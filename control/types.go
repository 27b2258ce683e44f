package control

import (
	"errors"
	"fmt"
)

// Version is the wire version this package reads and writes. Version 2:
// replies are signed by the agent's host key (SignReply).
const Version = 2

// Bounds on what a message may hold; every one is checked when encoding
// and when parsing.
const (
	// MaxName caps a host, group or release name: a DNS label set fits;
	// release ids (image.ID) are written as names of 16 hex digits.
	MaxName = 64
	// MaxTargets caps a command's host list so that a command with every
	// name at MaxName (about 33 KiB) fits one UDP datagram. A sender with
	// more hosts to name sends several commands, or addresses the group.
	MaxTargets = 512
	// MaxText caps an error or version text: enough for a wrapped error
	// naming a path and two release ids.
	MaxText = 512
	// MaxStaged caps the staged releases a STATUS reply lists; retention
	// keeps far fewer mounted.
	MaxStaged = 64
	// MaxMessageLen is the largest UDP payload over IPv4; nothing longer
	// can arrive in one datagram, so nothing longer is parsed.
	MaxMessageLen = 65507
	// NonceLen is the length of a command's random nonce: 128 bits never
	// collide by chance.
	NonceLen = 16
)

// Type is a message type. The values are on the wire: only append.
type Type uint8

const (
	TypeActivate Type = 1 // sender -> agents: make a staged release current
	TypeRollback Type = 2 // sender -> agents: go back to the previous or a named release
	TypeStatus   Type = 3 // sender -> agents: report your releases
	TypeReply    Type = 4 // agent -> sender: the outcome of a command
	// The fleet pointer (see Pointer): sender -> agents, and agent -> agent.
	TypePointer       Type = 5 // the signed fleet pointer
	TypePointerQuery  Type = 6 // POINTER?: an agent asks its peers for theirs
	TypePointerAnswer Type = 7 // an agent's answer: its pointer, and whether it serves the release
	TypeHostCert      Type = 8 // sender -> agents: a host's key, signed (HostCert)
)

func (t Type) String() string {
	switch t {
	case TypeActivate:
		return "ACTIVATE"
	case TypeRollback:
		return "ROLLBACK"
	case TypeStatus:
		return "STATUS"
	case TypeReply:
		return "REPLY"
	case TypePointer:
		return "POINTER"
	case TypePointerQuery:
		return "POINTER?"
	case TypePointerAnswer:
		return "POINTER-ANSWER"
	case TypeHostCert:
		return "HOST-CERT"
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// isCommand reports whether t is a command type.
func (t Type) isCommand() bool { return t >= TypeActivate && t <= TypeStatus }

// Outcome is how an agent answered a command. The values are on the wire:
// only append.
type Outcome uint8

const (
	OutcomeOK      Outcome = 1 // applied (or already so)
	OutcomeFailed  Outcome = 2 // verified, but the store refused or failed it
	OutcomeRefused Outcome = 3 // not verified: unsigned, untrusted, stale, replayed
)

func (o Outcome) String() string {
	switch o {
	case OutcomeOK:
		return "ok"
	case OutcomeFailed:
		return "failed"
	case OutcomeRefused:
		return "refused"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

func (o Outcome) valid() bool { return o >= OutcomeOK && o <= OutcomeRefused }

// Errors; match them with errors.Is. Refusals by a Verifier come wrapped in
// a *RefusedError naming the command and its key.
var (
	// ErrMalformed: the bytes are not a well-formed message.
	ErrMalformed = errors.New("control: malformed message")
	// ErrVersion: a message of a wire version this build does not read.
	ErrVersion = errors.New("control: unsupported version")
	// ErrBadReplySignature is a reply whose signature does not verify.
	ErrBadReplySignature = errors.New("control: reply signature does not verify")
	// ErrUnsigned: a command without a signature.
	ErrUnsigned = errors.New("control: command is not signed")
	// ErrBadSignature: the signature does not verify with its key.
	ErrBadSignature = errors.New("control: signature does not verify")
	// ErrUntrustedKey: signed by a key the agent does not trust.
	ErrUntrustedKey = errors.New("control: signed by an untrusted key")
	// ErrStale: issued longer ago than the accepted window.
	ErrStale = errors.New("control: command is too old")
	// ErrFuture: issued further ahead than the accepted window.
	ErrFuture = errors.New("control: command is from the future")
	// ErrReplay: a nonce seen before, or older than the replay cache can
	// vouch for.
	ErrReplay = errors.New("control: command replayed")
	// ErrOtherGroup: a command for another group.
	ErrOtherGroup = errors.New("control: command for another group")
	// ErrNotForHost: a command whose target list does not name this host.
	ErrNotForHost = errors.New("control: command not for this host")
)

package control

import (
	"crypto/ed25519"
	"encoding/binary"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/loopcast/loopcast/image"
)

// Reply is an agent's answer to a command addressed to it.
type Reply struct {
	Deploy  uint64         // the command's deploy id
	Nonce   [NonceLen]byte // the command's nonce: which command this answers
	Command Type           // the command's type
	Outcome Outcome
	Host    string   // the agent's host id
	Current image.ID // the release current after the command; zero: none
	Error   string   // why it failed or was refused; empty iff Outcome is ok
	Status  *Status
	// HostKey is the key the reply is signed by (set by ParseReply): the
	// sender counts the reply only if it pins that key for Host.
	HostKey ed25519.PublicKey
}

// Status is what a STATUS command asks for; a reply carries it exactly
// when it answers STATUS with OutcomeOK.
type Status struct {
	Previous     image.ID   // the rollback target; zero: none
	FreeBytes    uint64     // free disk on the agent's root
	Staged       []image.ID // staged, never activated, oldest first
	AgentVersion string
	LastError    string // the store's last error; empty: none
	LastRefusal  string // the last session the agent refused, and why; empty: none
	// What `sender doctor` reads (absent from agents before them: zero):
	// Probe is the nonce of the last doctor probe the agent heard on the
	// group's data port (multicast.AppendProbe), MTU that of the interface
	// it joined the group on (0: unknown), Problems what the agent finds
	// wrong with itself (no loop devices), empty when nothing.
	Probe    [NonceLen]byte
	MTU      uint16
	Problems string
}

// Type returns TypeReply.
func (*Reply) Type() Type { return TypeReply }

func (r *Reply) check() error {
	switch {
	case !r.Command.isCommand():
		return fmt.Errorf("%w: reply to %v", ErrMalformed, r.Command)
	case !r.Outcome.valid():
		return fmt.Errorf("%w: outcome %v", ErrMalformed, r.Outcome)
	case (r.Outcome == OutcomeOK) != (r.Error == ""):
		return fmt.Errorf("%w: outcome %v with error %q", ErrMalformed, r.Outcome, r.Error)
	case (r.Command == TypeStatus && r.Outcome == OutcomeOK) != (r.Status != nil):
		return fmt.Errorf("%w: %v reply %v with status %v", ErrMalformed, r.Command, r.Outcome, r.Status != nil)
	}
	for _, err := range []error{
		checkHost("host", r.Host), checkRelease("current release", r.Current, true),
		checkText("error", r.Error),
	} {
		if err != nil {
			return err
		}
	}
	if r.Status != nil {
		return r.Status.check()
	}
	return nil
}

func (s *Status) check() error {
	if len(s.Staged) > MaxStaged {
		return fmt.Errorf("%w: %d staged releases, more than %d", ErrMalformed, len(s.Staged), MaxStaged)
	}
	for _, id := range s.Staged {
		if err := checkRelease("staged release", id, false); err != nil {
			return err
		}
	}
	for _, err := range []error{
		checkRelease("previous release", s.Previous, true), checkText("agent version", s.AgentVersion),
		checkText("last error", s.LastError), checkText("last refusal", s.LastRefusal),
		checkText("problems", s.Problems),
	} {
		if err != nil {
			return err
		}
	}
	return nil
}

// AppendBinary appends the reply's encoding.
func (r *Reply) AppendBinary(b []byte) ([]byte, error) {
	if err := r.check(); err != nil {
		return b, err
	}
	b = Header{Type: TypeReply, Deploy: r.Deploy}.appendHeader(b)
	b = append(b, r.Nonce[:]...)
	b = append(b, byte(r.Command), byte(r.Outcome))
	b = appendName(b, r.Host)
	b = appendRelease(b, r.Current)
	b = appendText(b, r.Error)
	if s := r.Status; s != nil {
		b = appendRelease(b, s.Previous)
		b = binary.BigEndian.AppendUint64(b, s.FreeBytes)
		b = append(b, byte(len(s.Staged)))
		for _, id := range s.Staged {
			b = appendRelease(b, id)
		}
		b = appendText(b, s.AgentVersion)
		b = appendText(b, s.LastError)
		b = appendText(b, s.LastRefusal)
		if s.hasDoctor() { // absent when empty: the encoding of a reply without them
			b = append(b, s.Probe[:]...)
			b = binary.BigEndian.AppendUint16(b, s.MTU)
			b = appendText(b, s.Problems)
		}
	}
	return b, nil
}

func parseReply(r *reader, h Header) (*Reply, error) {
	p := &Reply{Deploy: h.Deploy}
	copy(p.Nonce[:], r.Bytes("nonce", NonceLen))
	p.Command, p.Outcome = Type(r.U8("command")), Outcome(r.U8("outcome"))
	p.Host = r.host("host")
	p.Current = r.release("current release", true)
	p.Error = r.text("error")
	if r.Err() == nil && p.Command == TypeStatus && p.Outcome == OutcomeOK {
		p.Status = parseStatus(r)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return p, p.check()
}

func parseStatus(r *reader) *Status {
	s := &Status{Previous: r.release("previous release", true), FreeBytes: r.U64("free bytes")}
	n := int(r.U8("staged count"))
	if n > MaxStaged {
		r.Fail("%d staged releases, more than %d", n, MaxStaged)
		return s
	}
	for range n {
		if r.Err() != nil {
			break
		}
		s.Staged = append(s.Staged, r.release("staged release", false))
	}
	s.AgentVersion = r.text("agent version")
	s.LastError = r.text("last error")
	s.LastRefusal = r.text("last refusal")
	if r.Err() != nil || r.Len() == 0 {
		return s // an agent from before the doctor's fields
	}
	copy(s.Probe[:], r.Bytes("probe", NonceLen))
	s.MTU = r.U16("mtu")
	s.Problems = r.text("problems")
	if r.Err() == nil && !s.hasDoctor() {
		r.Fail("an empty doctor block (it is written as none)")
	}
	return s
}

// hasDoctor reports whether any of the doctor's fields is set.
func (s *Status) hasDoctor() bool {
	return s.Probe != [NonceLen]byte{} || s.MTU != 0 || s.Problems != ""
}

// TruncateText makes s a valid text: UTF-8, at most MaxText bytes, cut at
// a rune boundary with "…" marking the cut.
func TruncateText(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= MaxText {
		return s
	}
	const ellipsis = "…"
	cut := MaxText - len(ellipsis)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + ellipsis
}

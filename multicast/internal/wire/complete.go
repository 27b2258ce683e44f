package wire

import (
	"encoding/binary"

	"golang.org/x/crypto/cryptobyte"
)

// Complete statuses (values are on the wire — only append).
const (
	CompleteOK          = 0 // image verified and in place (not staged by this receiver)
	CompleteFailed      = 1 // the host gave up; Reason says why
	CompleteStaged      = 2 // image verified, in place and staged: ready to switch
	CompleteStageFailed = 3 // image verified and in place, but staging failed; Reason says why
)

// Complete reports a host's end of the session (unicast), with the outcome
// of its staging when it staged the image at once, so the sender learns
// that too without asking; the sender echoes it back to acknowledge.
//
//	0 host id: len u8 + bytes   status u8   reason: len u8 + bytes
//	  stage time ms u32
type Complete struct {
	Host        string
	Status      uint8
	Reason      string
	StageMillis uint32 // how long staging took (with CompleteStaged or CompleteStageFailed)
}

func (*Complete) Type() Type { return TypeComplete }

func (c *Complete) AppendBinary(b []byte) ([]byte, error) {
	b, err := appendStr8(b, "host id", c.Host, MaxHostID)
	if err != nil {
		return b, err
	}
	b = append(b, c.Status)
	b, err = appendStr8(b, "reason", c.Reason, MaxReason)
	return binary.BigEndian.AppendUint32(b, c.StageMillis), err
}

func parseComplete(b []byte) (*Complete, error) {
	s := cryptobyte.String(b)
	c := &Complete{}
	if err := readStr8(&s, b, "host id", MaxHostID, &c.Host); err != nil {
		return nil, err
	}
	if !s.ReadUint8(&c.Status) {
		return nil, short(b, s, "complete status")
	}
	if c.Status > CompleteStageFailed {
		return nil, malformed("complete status %d", c.Status)
	}
	if err := readStr8(&s, b, "reason", MaxReason, &c.Reason); err != nil {
		return nil, err
	}
	if !s.ReadUint32(&c.StageMillis) {
		return nil, short(b, s, "stage time")
	}
	return c, done(s)
}

// Abort ends the session for everyone (multicast): receivers discard
// their partial files.
//
//	0 reason: len u8 + bytes
type Abort struct {
	Reason string
}

func (*Abort) Type() Type { return TypeAbort }

func (a *Abort) AppendBinary(b []byte) ([]byte, error) {
	return appendStr8(b, "reason", a.Reason, MaxReason)
}

func parseAbort(b []byte) (*Abort, error) {
	s := cryptobyte.String(b)
	a := &Abort{}
	if err := readStr8(&s, b, "reason", MaxReason, &a.Reason); err != nil {
		return nil, err
	}
	return a, done(s)
}

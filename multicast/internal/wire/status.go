package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// Status flags.
const (
	statusProbe   = 1 // a loss probe during the first pass: answer with loss only
	statusQuiet   = 2 // a large group's round: the host count follows; answer only with a need (multicast's quiet.go)
	statusSummary = 4 // what the round's NACKs asked so far follows: a host it covers stays quiet
)

// Status asks every registered host for its state at the end of a round
// (multicast). Hosts answer with NACK, or COMPLETE when done. A probe,
// sent while the first pass is still going, asks only for the loss each
// host saw: hosts answer with one NACK that lists nothing, and the sender
// sizes proactive parity from the answers. In a large group the round is
// quiet (multicast's quiet.go): hosts answer only with a need, after a backoff, and a
// host whose need a summary of the round already covers stays silent.
//
//	0 round u32   4 flags u8 (1: probe, 2: quiet, 4: summary)
//	  then, with flag 2: hosts u16 (members still receiving)
//	  then, with flag 4: range count u8 (≤16) | ranges: first chunk u32,
//	  count u32 (chunks asked whole) | block count u16 (≤150) | blocks:
//	  chunk u32, block u16, missing u16 (the most any host asked)
type Status struct {
	Round   uint32
	Probe   bool
	Quiet   bool
	Hosts   uint16 // with Quiet: the members still receiving
	Summary bool
	Chunks  []Range     // with Summary: chunks some host asked whole
	Blocks  []BlockNeed // with Summary: per block, the most symbols a host asked
}

func (*Status) Type() Type { return TypeStatus }

func (s *Status) AppendBinary(b []byte) ([]byte, error) {
	if len(s.Chunks) > MaxNackRanges || len(s.Blocks) > MaxNackBlocks || !s.Summary && (len(s.Chunks) > 0 || len(s.Blocks) > 0) {
		return b, fmt.Errorf("%w: status summary of %d ranges and %d blocks", ErrMalformed, len(s.Chunks), len(s.Blocks))
	}
	b = binary.BigEndian.AppendUint32(b, s.Round)
	var fl byte
	if s.Probe {
		fl |= statusProbe
	}
	if s.Quiet {
		fl |= statusQuiet
	}
	if s.Summary {
		fl |= statusSummary
	}
	b = append(b, fl)
	if s.Quiet {
		b = binary.BigEndian.AppendUint16(b, s.Hosts)
	}
	if s.Summary {
		b = append(b, byte(len(s.Chunks)))
		b = appendRanges(b, s.Chunks)
		b = binary.BigEndian.AppendUint16(b, uint16(len(s.Blocks)))
		b = appendBlocks(b, s.Blocks)
	}
	return b, nil
}

func parseStatus(b []byte) (*Status, error) {
	s := cryptobyte.String(b)
	m := &Status{}
	var fl uint8
	if !s.ReadUint32(&m.Round) || !s.ReadUint8(&fl) {
		return nil, short(b, s, "status header")
	}
	if fl&^(statusProbe|statusQuiet|statusSummary) != 0 {
		return nil, malformed("status flags %#x", fl)
	}
	m.Probe, m.Quiet, m.Summary = fl&statusProbe != 0, fl&statusQuiet != 0, fl&statusSummary != 0
	if m.Quiet && !s.ReadUint16(&m.Hosts) {
		return nil, short(b, s, "status hosts")
	}
	if m.Summary {
		var nr uint8
		if !s.ReadUint8(&nr) {
			return nil, short(b, s, "status summary")
		}
		var err error
		if m.Chunks, m.Blocks, err = readNeeds(&s, b, int(nr), "a status summary"); err != nil {
			return nil, err
		}
	}
	return m, done(s)
}

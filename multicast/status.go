package multicast

import "encoding/binary"

// Status flags.
const statusProbe = 1 // a loss probe during the first pass: answer with loss only

// Status asks every registered host for its state at the end of a round
// (multicast). Hosts answer with NACK, or COMPLETE when done. A probe,
// sent while the first pass is still going, asks only for the loss each
// host saw: hosts answer with one NACK that lists nothing, and the sender
// sizes proactive parity from the answers.
//
//	0 round u32   4 flags u8 (1: probe)
type Status struct {
	Round uint32
	Probe bool
}

func (*Status) Type() Type { return TypeStatus }

func (s *Status) AppendBinary(b []byte) ([]byte, error) {
	b = binary.BigEndian.AppendUint32(b, s.Round)
	var fl byte
	if s.Probe {
		fl |= statusProbe
	}
	return append(b, fl), nil
}

func parseStatus(b []byte) (*Status, error) {
	r := reader{b: b}
	s := &Status{Round: r.u32()}
	fl := r.u8()
	r.check(fl&^statusProbe == 0, "status flags %#x", fl)
	s.Probe = fl&statusProbe != 0
	return s, r.done()
}

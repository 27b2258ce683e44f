package multicast

import "encoding/binary"

// Status asks every registered host for its state at the end of a round
// (multicast). Hosts answer with NACK, or COMPLETE when done.
//
//	0 round u32
type Status struct {
	Round uint32
}

func (*Status) Type() Type { return TypeStatus }

func (s *Status) AppendBinary(b []byte) ([]byte, error) {
	return binary.BigEndian.AppendUint32(b, s.Round), nil
}

func parseStatus(b []byte) (*Status, error) {
	r := reader{b: b}
	s := &Status{Round: r.u32()}
	return s, r.done()
}

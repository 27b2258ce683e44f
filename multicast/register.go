package multicast

import (
	"encoding/binary"
	"fmt"
)

// Register flags.
const (
	registerNeedManifest = 1 // the host lacks the manifest; please resend it
	registerHasBase      = 2 // the host holds the announced base image
)

// Range is a run of chunks [First, First+Count).
type Range struct{ First, Count uint32 }

// Register is a receiver joining a session (unicast to the sender). The
// sender echoes it back to acknowledge. A host that lacks the manifest
// sets NeedManifest; it counts as registered only once it has it.
//
//	0 host id: len u8 + bytes   flags u8   range count u16
//	  ranges: first chunk u32, count u32, repeated (chunks already held)
type Register struct {
	Host         string
	NeedManifest bool
	HasBase      bool    // holds the announced base release's image: can decode deltas
	Have         []Range // chunks the host already holds: ascending, disjoint
}

func (*Register) Type() Type { return TypeRegister }

func (m *Register) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Have) > MaxRegisterRanges {
		return b, fmt.Errorf("%w: %d ranges in register, more than %d", ErrMalformed, len(m.Have), MaxRegisterRanges)
	}
	if !disjoint(m.Have) {
		return b, fmt.Errorf("%w: register ranges not ascending and disjoint", ErrMalformed)
	}
	b, err := appendStr8(b, "host id", m.Host, MaxHostID)
	if err != nil {
		return b, err
	}
	var fl byte
	if m.NeedManifest {
		fl |= registerNeedManifest
	}
	if m.HasBase {
		fl |= registerHasBase
	}
	b = append(b, fl)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Have)))
	return appendRanges(b, m.Have), nil
}

func appendRanges(b []byte, rs []Range) []byte {
	for _, rg := range rs {
		b = binary.BigEndian.AppendUint32(b, rg.First)
		b = binary.BigEndian.AppendUint32(b, rg.Count)
	}
	return b
}

func readRanges(r *reader, n int) []Range {
	var rs []Range
	for i := 0; i < n && r.err == nil; i++ {
		rg := Range{First: r.u32(), Count: r.u32()}
		r.check(rg.Count > 0 && rg.First+rg.Count > rg.First, "range %d+%d", rg.First, rg.Count)
		rs = append(rs, rg)
	}
	return rs
}

func parseRegister(b []byte) (*Register, error) {
	r := reader{b: b}
	m := &Register{Host: r.str8("host id", MaxHostID)}
	fl := r.u8()
	r.check(fl&^(registerNeedManifest|registerHasBase) == 0, "register flags %#x", fl)
	m.NeedManifest = fl&registerNeedManifest != 0
	m.HasBase = fl&registerHasBase != 0
	n := int(r.u16())
	r.check(n <= MaxRegisterRanges, "%d ranges in register, more than %d", n, MaxRegisterRanges)
	m.Have = readRanges(&r, n)
	r.check(disjoint(m.Have), "register ranges not ascending and disjoint")
	return m, r.done()
}

// disjoint reports whether rs are ascending and do not overlap, so the
// sender can count holders per chunk without double counting, in work
// bounded by the image's chunk count.
func disjoint(rs []Range) bool {
	end := uint64(0)
	for _, rg := range rs {
		if uint64(rg.First) < end {
			return false
		}
		end = uint64(rg.First) + uint64(rg.Count)
	}
	return true
}

package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// ManifestFrag carries bytes [Offset, Offset+len(Data)) of the encoded
// manifest, which is Total bytes long (multicast, sent on request).
//
//	0 offset u32  4 total u32  8 length u16  10 bytes
type ManifestFrag struct {
	Offset, Total uint32
	Data          []byte // aliases the packet when parsed
}

func (*ManifestFrag) Type() Type { return TypeManifest }

func (m *ManifestFrag) AppendBinary(b []byte) ([]byte, error) {
	if err := m.check(); err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, m.Offset)
	b = binary.BigEndian.AppendUint32(b, m.Total)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Data)))
	return append(b, m.Data...), nil
}

func (m *ManifestFrag) check() error {
	end := uint64(m.Offset) + uint64(len(m.Data))
	if m.Total == 0 || m.Total > MaxManifestSize || len(m.Data) == 0 || len(m.Data) > MaxPacket || end > uint64(m.Total) {
		return fmt.Errorf("%w: manifest fragment %d+%d of %d", ErrMalformed, m.Offset, len(m.Data), m.Total)
	}
	return nil
}

func parseManifestFrag(b []byte) (*ManifestFrag, error) {
	s := cryptobyte.String(b)
	m := &ManifestFrag{}
	var n uint16
	if !s.ReadUint32(&m.Offset) || !s.ReadUint32(&m.Total) || !s.ReadUint16(&n) || !s.ReadBytes(&m.Data, int(n)) {
		return nil, short(b, s, "manifest fragment")
	}
	if err := done(s); err != nil {
		return nil, err
	}
	return m, m.check()
}

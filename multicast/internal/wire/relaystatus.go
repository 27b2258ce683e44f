package wire

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"golang.org/x/crypto/cryptobyte"
)

// Relayed host states in RELAY-STATUS (values are on the wire — only
// append).
const (
	RelayHostReceiving = 1 + iota // registered with the relay, not done
	RelayHostComplete             // its COMPLETE reached the relay (forwarded as it is)
	RelayHostFailed               // it gave up (Reason is its own)
	RelayHostDropped              // the relay gave up on it (Reason says why)
)

// Bounds on RELAY-STATUS.
const (
	// MaxRelayStatusHosts caps the hosts of one RELAY-STATUS: with
	// maximal ids and reasons, 16+65+25+1+8×(65+1+18+65)+16 = 1315 bytes
	// fit one packet with the MAC; a relay pages its hosts over several.
	MaxRelayStatusHosts = 8
	// MaxRelayReason caps a relayed host's reason.
	MaxRelayReason = 64
)

// RelayStatus is a relay's report to the sender on the session it runs
// on its subnet (multicast's relay.go), MAC'd under the relay's own
// session key with the sender: what it sent there, and a page of its
// hosts. The sender takes a relayed host's completion only from the
// host's own signed COMPLETE; this says where the host is (its own
// address, for commands) and which the relay gave up on.
//
//	0 relay id str8 | seq u32 | down bytes u64 | down packets u64
//	  | rounds u32 | count u8 (≤8) | per host: host id str8, state u8,
//	  address [16] (IPv6, or IPv4-mapped; all zero: unknown), port u16,
//	  reason str8 (≤64)
type RelayStatus struct {
	Relay       string
	Seq         uint32 // grows with every RELAY-STATUS the relay sends
	DownBytes   uint64 // datagram bytes the relay sent on its subnet
	DownPackets uint64
	Rounds      uint32 // its repair rounds
	Hosts       []RelayedHost
}

// RelayedHost is one host's line in RELAY-STATUS.
type RelayedHost struct {
	Host   string
	State  uint8
	Addr   netip.AddrPort // where the relay hears it; the zero value: unknown
	Reason string
}

func (*RelayStatus) Type() Type { return TypeRelayStatus }

func (m *RelayStatus) AppendBinary(b []byte) ([]byte, error) {
	if len(m.Hosts) > MaxRelayStatusHosts {
		return b, fmt.Errorf("%w: relay status of %d hosts, more than %d", ErrMalformed, len(m.Hosts), MaxRelayStatusHosts)
	}
	b, err := appendStr8(b, "relay id", m.Relay, MaxHostID)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, m.Seq)
	b = binary.BigEndian.AppendUint64(b, m.DownBytes)
	b = binary.BigEndian.AppendUint64(b, m.DownPackets)
	b = binary.BigEndian.AppendUint32(b, m.Rounds)
	b = append(b, byte(len(m.Hosts)))
	for _, h := range m.Hosts {
		if b, err = h.append(b); err != nil {
			return b, err
		}
	}
	return b, nil
}

func (h *RelayedHost) append(b []byte) ([]byte, error) {
	if h.State < RelayHostReceiving || h.State > RelayHostDropped {
		return b, fmt.Errorf("%w: relayed host state %d", ErrMalformed, h.State)
	}
	b, err := appendStr8(b, "host id", h.Host, MaxHostID)
	if err != nil {
		return b, err
	}
	b = append(b, h.State)
	var ip [16]byte
	switch {
	case h.Addr.Addr().IsValid():
		ip = h.Addr.Addr().As16()
	case h.Addr.Port() != 0:
		return b, fmt.Errorf("%w: relayed host port %d without an address", ErrMalformed, h.Addr.Port())
	}
	b = append(b, ip[:]...)
	b = binary.BigEndian.AppendUint16(b, h.Addr.Port())
	return appendStr8(b, "reason", Truncate(h.Reason, MaxRelayReason), MaxRelayReason)
}

func parseRelayStatus(b []byte) (*RelayStatus, error) {
	s := cryptobyte.String(b)
	m := &RelayStatus{}
	if err := readStr8(&s, b, "relay id", MaxHostID, &m.Relay); err != nil {
		return nil, err
	}
	var n uint8
	if !s.ReadUint32(&m.Seq) || !s.ReadUint64(&m.DownBytes) || !s.ReadUint64(&m.DownPackets) ||
		!s.ReadUint32(&m.Rounds) || !s.ReadUint8(&n) {
		return nil, short(b, s, "relay status")
	}
	if n > MaxRelayStatusHosts {
		return nil, malformed("relay status of %d hosts, more than %d", n, MaxRelayStatusHosts)
	}
	for range n {
		h, err := readRelayedHost(&s, b)
		if err != nil {
			return nil, err
		}
		m.Hosts = append(m.Hosts, h)
	}
	return m, done(s)
}

func readRelayedHost(s *cryptobyte.String, b []byte) (RelayedHost, error) {
	var h RelayedHost
	if err := readStr8(s, b, "host id", MaxHostID, &h.Host); err != nil {
		return h, err
	}
	var ip [16]byte
	var port uint16
	if !s.ReadUint8(&h.State) || !s.CopyBytes(ip[:]) || !s.ReadUint16(&port) {
		return h, short(b, *s, "relayed host")
	}
	if h.State < RelayHostReceiving || h.State > RelayHostDropped {
		return h, malformed("relayed host state %d", h.State)
	}
	if ip != [16]byte{} {
		h.Addr = netip.AddrPortFrom(netip.AddrFrom16(ip).Unmap(), port)
	} else if port != 0 {
		return h, malformed("relayed host port %d without an address", port)
	}
	return h, readStr8(s, b, "reason", MaxRelayReason, &h.Reason)
}

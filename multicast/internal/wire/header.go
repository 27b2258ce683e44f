package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// VersionError is a packet of another protocol version: its peer runs
// another loopcast.
type VersionError struct{ Got uint8 }

func (e *VersionError) Error() string {
	rel := "an older"
	if e.Got > Version {
		rel = "a newer"
	}
	return fmt.Sprintf("%v: the peer speaks version %d (%s loopcast), this one speaks %d; run the same version on the sender and the hosts",
		ErrVersion, e.Got, rel, Version)
}

func (e *VersionError) Unwrap() error { return ErrVersion }

// Version is the wire protocol version this package speaks. A packet with
// another version is rejected, never guessed at.
//
// Version 2: COMPLETE carries the staging outcome; images are named by a
// version 2 manifest. Version 3: packets are authenticated (multicast's auth.go):
// ANNOUNCE is signed by the release key and names the session's keys,
// STATUS and ABORT are signed by the session key, REGISTER and REFUSE by
// the host's key, and NACK, COMPLETE and the sender's acknowledgements
// carry a MAC under per-host keys agreed in REGISTER. Version 4: ANNOUNCE
// may name a TCP fetch port, over which a host that hears no multicast
// runs the session (multicast's stream.go). Version 5: FEC blocks of up to
// MaxBlockSymbols (1,024) data symbols, a whole compressed chunk, coded
// with Leopard GF(2^16) Reed-Solomon above GF8MaxData: a symbol's index,
// ANNOUNCE's block symbols and a block's missing count are u16; relays
// (multicast's relay.go): a RelayGrant in ANNOUNCE and in the REGISTER
// acknowledgement, REGISTER's relay flag, RELAY-STATUS. Version 6: a delta
// chunk's bytes are image's block delta frame (the 4 KiB blocks in which
// it differs from its base chunk), not a zstd frame with the whole base
// chunk as dictionary.
const Version = 6

// HeaderLen is the size of the fixed header every packet starts with.
const HeaderLen = 16

var magic = [4]byte{'L', 'C', 'M', 'C'}

// Bounds on what a packet may carry; every length and count read from the
// network is checked against one of these before it is used.
const (
	// MaxPacket is the largest datagram either side sends or accepts: an
	// IPv4 UDP payload on a 1500-byte Ethernet MTU (1500-20-8).
	MaxPacket = 1472
	// MaxHostID caps a host id: long enough for an FQDN label set, short
	// enough that a NACK with a host id still fits one packet.
	MaxHostID = 64
	// MaxReason caps the free-text reason in COMPLETE and ABORT.
	MaxReason = 200
	// MaxManifestSize caps the encoded manifest a receiver will assemble:
	// 8 MiB names ~200,000 chunks (a 200 GiB image at 1 MiB chunks: 33 bytes
	// of manifest and 8 of frame lengths per chunk in the descriptor) and
	// keeps a receiver's memory bounded.
	MaxManifestSize = 8 << 20
	// MaxBlockSymbols caps the data symbols of one FEC block: a 1 MiB
	// chunk that does not compress is 745 symbols of 1,408 bytes, so one
	// block holds a whole chunk.
	MaxBlockSymbols = 1024
	// MaxShards caps data + parity shards of a block (Shards(MaxBlockSymbols)).
	MaxShards = 2048
	// MinSymbolSize and MaxSymbolSize bound the symbol (payload) size an
	// ANNOUNCE may name; the upper bound keeps DATA within MaxPacket.
	MinSymbolSize = 64
	MaxSymbolSize = MaxPacket - HeaderLen - SymbolHeaderLen
	// MaxAnnounceHosts caps the host ids in one ANNOUNCE page.
	MaxAnnounceHosts = 16
	// MaxRegisterRanges caps the held-chunk ranges in one REGISTER: with a
	// maximal host id, 16+65+1+72+2+150*8+64 = 1420 bytes fit one packet.
	// A host holding a more scattered set lists its largest runs only, so
	// it may be sent chunks it holds, never denied one it lacks.
	MaxRegisterRanges = 150
	// MaxRegisterBitmap caps the chunks of a REGISTER's bitmap (one bit per
	// chunk, from chunk 0): 9,600 bits are 1,200 bytes, the same room as
	// the ranges. A host whose held set needs more ranges than fit sends
	// the bitmap instead when the image has no more chunks than this (9.4
	// GiB of 1 MiB chunks), so a scattered set (a hotfix touching hundreds
	// of chunks) is told exactly.
	MaxRegisterBitmap = 9600
	// MaxNackRanges caps whole-chunk ranges in one NACK packet.
	MaxNackRanges = 16
	// MaxNackBlocks caps per-block entries in one NACK packet; with a
	// maximal host id the packet stays under MaxPacket (see nack.go).
	MaxNackBlocks = 150
	// MaxNackParts caps the NACK packets a host sends per round: 16 × 150
	// blocks covers ~2,400 incomplete blocks (~200 MiB at 5% loss) per
	// round while a sender's work per host and round stays bounded.
	MaxNackParts = 16
)

// Errors returned by Parse.
var (
	ErrShort     = errors.New("multicast: packet truncated")
	ErrMagic     = errors.New("multicast: not a loopcast packet")
	ErrVersion   = errors.New("multicast: unsupported protocol version")
	ErrType      = errors.New("multicast: unknown message type")
	ErrMalformed = errors.New("multicast: malformed packet")
)

// Type is a message type. Values are on the wire — only append.
type Type uint8

const (
	TypeAnnounce Type = 1 + iota
	TypeRegister
	TypeManifest
	TypeData
	TypeStatus
	TypeNack
	TypeRepair
	TypeComplete
	TypeAbort
	TypeRefuse // its value and layout stay in every version
	TypeRelayStatus
)

var typeNames = [...]string{
	TypeAnnounce: "ANNOUNCE", TypeRegister: "REGISTER", TypeManifest: "MANIFEST",
	TypeData: "DATA", TypeStatus: "STATUS", TypeNack: "NACK", TypeRepair: "REPAIR",
	TypeComplete: "COMPLETE", TypeAbort: "ABORT", TypeRefuse: "REFUSE", TypeRelayStatus: "RELAY-STATUS",
}

func (t Type) String() string {
	if int(t) < len(typeNames) && typeNames[t] != "" {
		return typeNames[t]
	}
	return fmt.Sprintf("Type(%d)", uint8(t))
}

// Header is the fixed start of every packet:
//
//	0 magic "LCMC"  4 version u8  5 type u8  6 flags u16 (Auth)
//	8 session u32  12 sequence u32
//
// These 16 bytes keep their layout in every version, and so does REFUSE's
// body: a host of another version can still say why it will not take a
// session, and the sender understands it.
type Header struct {
	Type    Type
	Session uint32 // chosen by the sender per transfer
	Seq     uint32 // per-sender packet counter; receivers estimate loss from gaps
	Version uint8  // as parsed; Version when encoding

	auth    Auth   // of a parsed packet
	tag     []byte // its signature or MAC (aliases the packet)
	covered []byte // the bytes the tag covers: the packet before the tag
}

// AppendBinary appends the encoded header.
func (h Header) AppendBinary(b []byte) ([]byte, error) {
	b = append(b, magic[:]...)
	b = append(b, Version, byte(h.Type), 0, 0)
	b = binary.BigEndian.AppendUint32(b, h.Session)
	return binary.BigEndian.AppendUint32(b, h.Seq), nil
}

func parseHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: %d bytes, header needs %d", ErrShort, len(b), HeaderLen)
	}
	if [4]byte(b[:4]) != magic {
		return Header{}, ErrMagic
	}
	h := Header{
		Type:    Type(b[5]),
		Session: binary.BigEndian.Uint32(b[8:]),
		Seq:     binary.BigEndian.Uint32(b[12:]),
		Version: b[4],
	}
	if b[4] != Version && (h.Type != TypeRefuse || b[4] < minRefuseVersion) {
		return h, &VersionError{Got: b[4]}
	}
	fl := Auth(binary.BigEndian.Uint16(b[6:]))
	n := tagLen(fl)
	if n < 0 {
		return h, fmt.Errorf("%w: header flags %#x", ErrMalformed, b[6:8])
	}
	if len(b) < HeaderLen+n {
		return h, fmt.Errorf("%w: %d bytes, header and tag need %d", ErrShort, len(b), HeaderLen+n)
	}
	h.auth, h.tag, h.covered = fl, b[len(b)-n:], b[:len(b)-n]
	return h, nil
}

// Message is the body of a packet.
type Message interface {
	Type() Type
	AppendBinary(b []byte) ([]byte, error)
}

// AppendPacket appends a header (its Type taken from m) and m.
func AppendPacket(b []byte, h Header, m Message) ([]byte, error) {
	h.Type = m.Type()
	b, _ = h.AppendBinary(b)
	return m.AppendBinary(b)
}

// Parse decodes a whole packet. Byte slices in the result (DATA payload,
// MANIFEST fragment) alias b.
func Parse(b []byte) (Header, Message, error) {
	h, err := parseHeader(b)
	if err != nil {
		return h, nil, err
	}
	m, err := parseBody(h.Type, b[HeaderLen:len(h.covered)])
	if err != nil {
		return h, nil, fmt.Errorf("%v packet seq %d: %w", h.Type, h.Seq, err)
	}
	return h, m, nil
}

func parseBody(t Type, b []byte) (Message, error) {
	switch t {
	case TypeAnnounce:
		return parseAnnounce(b)
	case TypeRegister:
		return parseRegister(b)
	case TypeManifest:
		return parseManifestFrag(b)
	case TypeData, TypeRepair:
		return parseSymbol(t, b)
	case TypeStatus:
		return parseStatus(b)
	case TypeNack:
		return parseNack(b)
	case TypeComplete:
		return parseComplete(b)
	case TypeAbort:
		return parseAbort(b)
	case TypeRefuse:
		return parseRefuse(b)
	case TypeRelayStatus:
		return parseRelayStatus(b)
	}
	return nil, fmt.Errorf("%w %d", ErrType, uint8(t))
}

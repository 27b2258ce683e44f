package wire

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"slices"

	"golang.org/x/crypto/cryptobyte"
)

// Register flags.
const (
	registerNeedManifest = 1  // the host lacks the manifest; please resend it
	registerHasBase      = 2  // the host holds the announced base image
	registerBitmap       = 4  // the held chunks are a bitmap, not ranges
	registerKey          = 8  // (the sender's acknowledgement) the sealed content key follows the keys
	registerRelay        = 16 // the host asks to relay the session on its own subnet
	registerGrant        = 32 // (the sender's acknowledgement) a relay grant follows the keys
)

// WrappedKeyLen is a sealed content key's length: an AES-256 key and its
// AES-GCM tag (multicast's seal.go).
const WrappedKeyLen = 32 + 16

// Range is a run of chunks [First, First+Count).
type Range struct{ First, Count uint32 }

// Register is a receiver joining a session (unicast to the sender). The
// sender echoes it back to acknowledge. A host that lacks the manifest
// sets NeedManifest; it counts as registered only once it has it.
//
//	0 host id: len u8 + bytes   flags u8 (1: need manifest, 2: holds the
//	  base, 4: bitmap, 8: wrapped key, 16: asks to relay, 32: grant)
//	  signed at (unix ms) u64   host key [32]   host X25519 key [32]
//	  with flag 8: wrapped content key [48]
//	  with flag 32: grant length u16, grant (then no held chunks)
//	  ranges:  range count u16, then first chunk u32, count u32, repeated
//	  bitmap:  bit count u32 (≤ MaxRegisterBitmap), then ⌈count/8⌉ bytes,
//	           bit i (MSB first) set when chunk i is held
//
// Have is encoded as ranges when they fit (MaxRegisterRanges), else as a
// bitmap when the chunks do (MaxRegisterBitmap), else as its largest runs:
// a host may then be sent chunks it holds, never denied one it lacks.
//
// The packet is signed by the host key it carries; the sender pins that
// key (hostkey.Pins) and takes a host's reply address and MAC keys only
// from a REGISTER signed later than the last it took.
type Register struct {
	Host      string
	SignedAt  int64    // unix ms
	HostKey   [32]byte // the host's ed25519 identity
	Ephemeral [32]byte // the host's X25519 key for this session
	// WrappedKey, in the sender's acknowledgement of an encrypted
	// session, is the content key sealed for this host (multicast's seal.go).
	WrappedKey   []byte
	NeedManifest bool
	HasBase      bool    // holds the announced base release's image: can decode deltas
	Have         []Range // chunks the host already holds: ascending, disjoint
	// Relay: the host asks to relay the session on its own subnet (it runs
	// receiver run --relay).
	Relay bool
	// Grant, in the sender's acknowledgement of a relay's REGISTER, is
	// its leave to relay (signed by the release key).
	Grant *RelayGrant
}

func (*Register) Type() Type { return TypeRegister }

func (m *Register) AppendBinary(b []byte) ([]byte, error) {
	if !disjoint(m.Have) {
		return b, fmt.Errorf("%w: register ranges not ascending and disjoint", ErrMalformed)
	}
	if m.Grant != nil && len(m.Have) > 0 {
		return b, fmt.Errorf("%w: register with a grant and held chunks", ErrMalformed)
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
	if m.WrappedKey != nil {
		if len(m.WrappedKey) != WrappedKeyLen {
			return b, fmt.Errorf("%w: wrapped key of %d bytes", ErrMalformed, len(m.WrappedKey))
		}
		fl |= registerKey
	}
	if m.Relay {
		fl |= registerRelay
	}
	if m.Grant != nil {
		fl |= registerGrant
	}
	bits := uint64(0)
	if n := len(m.Have); n > 0 {
		bits = uint64(m.Have[n-1].First) + uint64(m.Have[n-1].Count)
	}
	if len(m.Have) <= MaxRegisterRanges || bits > MaxRegisterBitmap {
		have := largestRuns(m.Have, MaxRegisterRanges)
		b, err = m.appendKeys(b, fl)
		b = binary.BigEndian.AppendUint16(b, uint16(len(have)))
		return appendRanges(b, have), err
	}
	b, err = m.appendKeys(b, fl|registerBitmap)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, uint32(bits))
	bm := make([]byte, (bits+7)/8)
	for _, rg := range m.Have {
		for c := rg.First; c < rg.First+rg.Count; c++ {
			bm[c/8] |= 0x80 >> (c % 8)
		}
	}
	return append(b, bm...), nil
}

// appendKeys appends the flags, the signing time, the keys and (in an
// acknowledgement) the wrapped content key and the grant.
func (m *Register) appendKeys(b []byte, fl byte) ([]byte, error) {
	b = append(b, fl)
	b = binary.BigEndian.AppendUint64(b, uint64(m.SignedAt))
	b = append(b, m.HostKey[:]...)
	b = append(b, m.Ephemeral[:]...)
	b = append(b, m.WrappedKey...)
	if m.Grant == nil {
		return b, nil
	}
	return appendGrant(b, m.Grant)
}

// largestRuns returns rs when it has at most max ranges, else its max
// largest runs, in chunk order.
func largestRuns(rs []Range, max int) []Range {
	if len(rs) <= max {
		return rs
	}
	rs = slices.Clone(rs)
	slices.SortStableFunc(rs, func(a, b Range) int { return cmp.Compare(b.Count, a.Count) })
	rs = rs[:max]
	slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.First, b.First) })
	return rs
}

func parseRegister(b []byte) (*Register, error) {
	s := cryptobyte.String(b)
	m := &Register{}
	if err := readStr8(&s, b, "host id", MaxHostID, &m.Host); err != nil {
		return nil, err
	}
	fl, err := m.readKeys(&s, b)
	if err != nil {
		return nil, err
	}
	if fl&registerBitmap != 0 {
		err = m.readBitmap(&s, b)
	} else {
		err = m.readRanges(&s, b)
	}
	if err != nil {
		return nil, err
	}
	if m.Grant != nil && len(m.Have) > 0 {
		return nil, malformed("register with a grant and held chunks")
	}
	return m, done(s)
}

// readKeys reads the flags, the signing time, the keys and (in an
// acknowledgement) the wrapped content key; it returns the flags.
func (m *Register) readKeys(s *cryptobyte.String, b []byte) (uint8, error) {
	var fl uint8
	if !s.ReadUint8(&fl) {
		return 0, short(b, *s, "register flags")
	}
	if fl&^(registerNeedManifest|registerHasBase|registerBitmap|registerKey|registerRelay|registerGrant) != 0 {
		return 0, malformed("register flags %#x", fl)
	}
	m.NeedManifest, m.HasBase, m.Relay = fl&registerNeedManifest != 0, fl&registerHasBase != 0, fl&registerRelay != 0
	var at uint64
	if !s.ReadUint64(&at) || !s.CopyBytes(m.HostKey[:]) || !s.CopyBytes(m.Ephemeral[:]) {
		return 0, short(b, *s, "register keys")
	}
	m.SignedAt = int64(at)
	if fl&registerKey != 0 {
		var k []byte
		if !s.ReadBytes(&k, WrappedKeyLen) {
			return 0, short(b, *s, "register wrapped key")
		}
		m.WrappedKey = bytes.Clone(k)
	}
	if fl&registerGrant != 0 {
		var err error
		if m.Grant, err = readGrant(s, b); err != nil {
			return 0, err
		}
	}
	return fl, nil
}

// readBitmap reads held chunks sent as a bitmap, which must be the
// canonical encoding: a set that fits as ranges goes as ranges.
func (m *Register) readBitmap(s *cryptobyte.String, b []byte) error {
	var bits uint32
	if !s.ReadUint32(&bits) {
		return short(b, *s, "register bitmap")
	}
	if bits > MaxRegisterBitmap {
		return malformed("register bitmap of %d chunks, more than %d", bits, MaxRegisterBitmap)
	}
	var bm []byte
	if !s.ReadBytes(&bm, int(bits+7)/8) {
		return short(b, *s, "register bitmap")
	}
	if m.Have = bitmapRanges(bm, bits); len(m.Have) <= MaxRegisterRanges {
		return malformed("register bitmap of %d runs, which fit as ranges", len(m.Have))
	}
	return nil
}

// readRanges reads held chunks sent as ranges, ascending and disjoint.
func (m *Register) readRanges(s *cryptobyte.String, b []byte) error {
	var n uint16
	if !s.ReadUint16(&n) {
		return short(b, *s, "register range count")
	}
	if n > MaxRegisterRanges {
		return malformed("%d ranges in register, more than %d", n, MaxRegisterRanges)
	}
	var err error
	if m.Have, err = readRanges(s, b, int(n)); err != nil {
		return err
	}
	if !disjoint(m.Have) {
		return malformed("register ranges not ascending and disjoint")
	}
	return nil
}

// bitmapRanges turns a REGISTER bitmap of bits chunks into ranges.
func bitmapRanges(bm []byte, bits uint32) []Range {
	var rs []Range
	for c := uint32(0); c < bits && int(c/8) < len(bm); c++ {
		if bm[c/8]&(0x80>>(c%8)) != 0 {
			rs = AppendChunk(rs, c)
		}
	}
	return rs
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

// AppendChunk adds chunk c to rs, extending the last range when c follows
// it (chunks are added in ascending order).
func AppendChunk(rs []Range, c uint32) []Range {
	if n := len(rs); n > 0 && rs[n-1].First+rs[n-1].Count == c {
		rs[n-1].Count++
		return rs
	}
	return append(rs, Range{First: c, Count: 1})
}

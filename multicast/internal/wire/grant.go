package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/loopcast/loopcast/image"
)

// grantMagic starts a grant's bytes, and so the bytes its signature
// covers: a grant's signature can be mistaken for no other signed object
// (ANNOUNCE starts "LCMC", control packets "LCCP", manifests their own).
var grantMagic = [4]byte{'L', 'C', 'R', 'G'}

// Grant flags.
const (
	grantSealed = 1 // the session's frames are sealed
	grantBase   = 2 // a base release id follows the flags
)

// Bounds on a grant.
const (
	// GrantSigLen is the grant's signature (ed25519) length.
	GrantSigLen = SigLen
	// MaxGrantLen bounds an encoded grant: 70 fixed bytes, a base id, two
	// times, a maximal relay id, three keys and the signature make 319.
	MaxGrantLen = 70 + 8 + 16 + 1 + MaxHostID + 3*32 + GrantSigLen
)

// RelayGrant is the sender's leave for one host to relay one session on
// its own subnet (multicast's relay.go): signed by the release key, it
// names the session, the release and the layout the relay must announce,
// the relay's host key (which signs the relayed ANNOUNCE) and how long it
// holds. Hosts behind a relay check it before they follow the relay.
//
//	 0 magic "LCRG"        4 version u8           5 session u32
//	 9 release id [8]     17 manifest SHA-256 [32] 49 manifest size u32
//	53 image size u64     61 chunk size u32       65 symbol size u16
//	67 block symbols u16  69 flags u8 (1: sealed, 2: base)
//	70 then, with flag 2: base release id [8]
//	   then issued (unix ms) u64 | expires (unix ms) u64 | relay host id str8
//	   | relay host key [32] | upstream session X25519 key [32]
//	   | release key [32] | signature [64] over every byte before it
type RelayGrant struct {
	Session        uint32
	ReleaseID      image.ID
	ManifestDigest [32]byte
	ManifestSize   uint32
	ImageSize      uint64
	ChunkSize      uint32
	SymbolSize     uint16
	BlockSymbols   uint16
	Sealed         bool
	BaseID         image.ID // zero: none
	Issued         int64    // unix ms
	Expires        int64    // unix ms, after Issued
	RelayHost      string
	RelayKey       [32]byte // the relay's host key: it signs the relayed ANNOUNCE
	UpstreamDH     [32]byte // the upstream session's X25519 key: the grant is for that session's instance
	ReleaseKey     [32]byte // the key the signature is by
	Sig            [GrantSigLen]byte
}

// AppendSigned appends the bytes the grant's signature covers: its whole
// encoding but the signature.
func (g *RelayGrant) AppendSigned(b []byte) ([]byte, error) {
	if g.Expires <= g.Issued {
		return b, fmt.Errorf("%w: grant expires at %d, issued at %d", ErrMalformed, g.Expires, g.Issued)
	}
	b = append(b, grantMagic[:]...)
	b = append(b, Version)
	b = binary.BigEndian.AppendUint32(b, g.Session)
	b = append(b, g.ReleaseID[:]...)
	b = append(b, g.ManifestDigest[:]...)
	b = binary.BigEndian.AppendUint32(b, g.ManifestSize)
	b = binary.BigEndian.AppendUint64(b, g.ImageSize)
	b = binary.BigEndian.AppendUint32(b, g.ChunkSize)
	b = binary.BigEndian.AppendUint16(b, g.SymbolSize)
	b = binary.BigEndian.AppendUint16(b, g.BlockSymbols)
	b = append(b, g.flags())
	if !g.BaseID.IsZero() {
		b = append(b, g.BaseID[:]...)
	}
	b = binary.BigEndian.AppendUint64(b, uint64(g.Issued))
	b = binary.BigEndian.AppendUint64(b, uint64(g.Expires))
	b, err := appendStr8(b, "relay host id", g.RelayHost, MaxHostID)
	b = append(b, g.RelayKey[:]...)
	b = append(b, g.UpstreamDH[:]...)
	return append(b, g.ReleaseKey[:]...), err
}

func (g *RelayGrant) flags() byte {
	var fl byte
	if g.Sealed {
		fl |= grantSealed
	}
	if !g.BaseID.IsZero() {
		fl |= grantBase
	}
	return fl
}

// AppendBinary appends the whole grant, signature included.
func (g *RelayGrant) AppendBinary(b []byte) ([]byte, error) {
	b, err := g.AppendSigned(b)
	return append(b, g.Sig[:]...), err
}

// ParseGrant reads a whole grant (the caller checks its signature).
func ParseGrant(b []byte) (*RelayGrant, error) {
	if len(b) > MaxGrantLen {
		return nil, malformed("grant of %d bytes, more than %d", len(b), MaxGrantLen)
	}
	s := cryptobyte.String(b)
	g := &RelayGrant{}
	fl, err := g.readFixed(&s, b)
	if err != nil {
		return nil, err
	}
	if err := g.readRest(&s, b, fl); err != nil {
		return nil, err
	}
	return g, done(s)
}

// readFixed reads the grant up to its flags; it returns the flags.
func (g *RelayGrant) readFixed(s *cryptobyte.String, b []byte) (uint8, error) {
	var m [4]byte
	var v, fl uint8
	if !s.CopyBytes(m[:]) || !s.ReadUint8(&v) {
		return 0, short(b, *s, "grant magic")
	}
	if m != grantMagic || v != Version {
		return 0, malformed("grant magic %q version %d", m[:], v)
	}
	if !s.ReadUint32(&g.Session) || !s.CopyBytes(g.ReleaseID[:]) || !s.CopyBytes(g.ManifestDigest[:]) ||
		!s.ReadUint32(&g.ManifestSize) || !s.ReadUint64(&g.ImageSize) || !s.ReadUint32(&g.ChunkSize) ||
		!s.ReadUint16(&g.SymbolSize) || !s.ReadUint16(&g.BlockSymbols) || !s.ReadUint8(&fl) {
		return 0, short(b, *s, "grant")
	}
	if fl&^(grantSealed|grantBase) != 0 {
		return 0, malformed("grant flags %#x", fl)
	}
	g.Sealed = fl&grantSealed != 0
	return fl, nil
}

// readRest reads the base id, the times, the relay and the keys.
func (g *RelayGrant) readRest(s *cryptobyte.String, b []byte, fl uint8) error {
	if fl&grantBase != 0 {
		if !s.CopyBytes(g.BaseID[:]) {
			return short(b, *s, "grant base release id")
		}
		if g.BaseID.IsZero() {
			return malformed("grant base release id all zero")
		}
	}
	var issued, expires uint64
	if !s.ReadUint64(&issued) || !s.ReadUint64(&expires) {
		return short(b, *s, "grant times")
	}
	if g.Issued, g.Expires = int64(issued), int64(expires); g.Expires <= g.Issued {
		return malformed("grant expires at %d, issued at %d", g.Expires, g.Issued)
	}
	if err := readStr8(s, b, "relay host id", MaxHostID, &g.RelayHost); err != nil {
		return err
	}
	if !s.CopyBytes(g.RelayKey[:]) || !s.CopyBytes(g.UpstreamDH[:]) || !s.CopyBytes(g.ReleaseKey[:]) || !s.CopyBytes(g.Sig[:]) {
		return short(b, *s, "grant keys")
	}
	return nil
}

// readGrant reads a u16 length and a grant of that length.
func readGrant(s *cryptobyte.String, b []byte) (*RelayGrant, error) {
	var gb cryptobyte.String
	if !s.ReadUint16LengthPrefixed(&gb) {
		return nil, short(b, *s, "grant")
	}
	return ParseGrant(gb)
}

// appendGrant appends a u16 length and the grant.
func appendGrant(b []byte, g *RelayGrant) ([]byte, error) {
	start := len(b)
	b = append(b, 0, 0)
	b, err := g.AppendBinary(b)
	binary.BigEndian.PutUint16(b[start:], uint16(len(b)-start-2))
	return b, err
}

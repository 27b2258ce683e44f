package wire

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/crypto/cryptobyte"

	"github.com/loopcast/loopcast/image"
)

// Announce flags.
const (
	announceClosed = 1  // closed group: only the listed hosts are waited for
	announceBase   = 2  // a base release id follows the host list
	announceSealed = 4  // chunk frames are sealed (an encrypted session)
	announceFetch  = 8  // a TCP fetch port follows: hosts that hear no multicast run the session over it
	announceRelay  = 16 // a relay's: its grant follows, and the relay's host key signs the packet
)

// Announce opens a session; the sender multicasts it repeatedly. The host
// list is paged: each ANNOUNCE carries hosts [First, First+len(Hosts)) of
// HostsTotal, and the sender cycles through the pages.
//
//	 0 release id [8]        8 manifest SHA-256 [32]  40 manifest size u32
//	44 image size u64       52 chunk size u32        56 chunk count u32
//	60 symbol size u16      62 block symbols u16     64 flags u8
//	65 rate bit/s u64       73 hosts total u16       75 first host u16
//	77 host count u8        78 hosts: len u8 + id, repeated
//	   then, with flag 2: base release id [8]
//	   then, with flag 8: fetch port u16 (the sender's TCP port for hosts
//	   that hear no multicast)
//	   then, with flag 16: grant length u16, grant (RelayGrant)
//	   then signed at (unix ms) u64, release key [32], session key [32],
//	   session X25519 key [32]; the packet is signed by the release key,
//	   or, with flag 16, by the relay's host key the grant names
//
// Every field a receiver sizes state by (manifest size, symbol size, block
// layout) is covered by the release key's signature, and the signing time
// bounds a replay (MaxClockSkew).
type Announce struct {
	ReleaseID      image.ID
	ManifestDigest [32]byte
	ManifestSize   uint32
	ImageSize      uint64
	ChunkSize      uint32
	ChunkCount     uint32
	SymbolSize     uint16 // payload bytes of every DATA/REPAIR symbol
	BlockSymbols   uint16 // data symbols per full FEC block
	Closed         bool
	Rate           uint64 // sending rate in bit/s, for information
	HostsTotal     uint16
	HostsFirst     uint16
	Hosts          []string
	// BaseID is the release chunks may be sent as deltas against (the
	// hosts' previous image); all zero: none.
	BaseID image.ID
	// SignedAt is when the sender signed this ANNOUNCE (unix ms).
	SignedAt int64
	// ReleaseKey is the key that signs the ANNOUNCE (and the manifest): a
	// host that does not trust it can say which key it saw.
	ReleaseKey [32]byte
	// SessionKey signs the session's STATUS and ABORT.
	SessionKey [32]byte
	// SessionDH is the session's X25519 key, for each host's MAC keys.
	SessionDH [32]byte
	// Encrypted: every chunk frame is sealed under a content key each
	// host gets in the acknowledgement of its REGISTER (multicast's seal.go).
	Encrypted bool
	// FetchPort is the sender's TCP port for the unicast path (0: none):
	// a host that hears no multicast runs the session over one TCP
	// connection to the announcing address at this port (multicast's stream.go).
	FetchPort uint16
	// Grant, in a relay's ANNOUNCE of the session on its own subnet, is
	// the sender's leave for it (signed by the release key): the packet is
	// signed by the relay's host key it names, and names no hosts.
	Grant *RelayGrant
}

func (*Announce) Type() Type { return TypeAnnounce }

func (a *Announce) AppendBinary(b []byte) ([]byte, error) {
	if err := a.Check(); err != nil {
		return b, err
	}
	b = append(b, a.ReleaseID[:]...)
	b = append(b, a.ManifestDigest[:]...)
	b = binary.BigEndian.AppendUint32(b, a.ManifestSize)
	b = binary.BigEndian.AppendUint64(b, a.ImageSize)
	b = binary.BigEndian.AppendUint32(b, a.ChunkSize)
	b = binary.BigEndian.AppendUint32(b, a.ChunkCount)
	b = binary.BigEndian.AppendUint16(b, a.SymbolSize)
	var fl byte
	if a.Closed {
		fl |= announceClosed
	}
	if !a.BaseID.IsZero() {
		fl |= announceBase
	}
	if a.Encrypted {
		fl |= announceSealed
	}
	if a.FetchPort != 0 {
		fl |= announceFetch
	}
	if a.Grant != nil {
		fl |= announceRelay
	}
	b = binary.BigEndian.AppendUint16(b, a.BlockSymbols)
	b = append(b, fl)
	b = binary.BigEndian.AppendUint64(b, a.Rate)
	b = binary.BigEndian.AppendUint16(b, a.HostsTotal)
	b = binary.BigEndian.AppendUint16(b, a.HostsFirst)
	b = append(b, byte(len(a.Hosts)))
	var err error
	for _, h := range a.Hosts {
		if b, err = appendStr8(b, "host id", h, MaxHostID); err != nil {
			return b, err
		}
	}
	if fl&announceBase != 0 {
		b = append(b, a.BaseID[:]...)
	}
	if fl&announceFetch != 0 {
		b = binary.BigEndian.AppendUint16(b, a.FetchPort)
	}
	if a.Grant != nil {
		if b, err = appendGrant(b, a.Grant); err != nil {
			return b, err
		}
	}
	b = binary.BigEndian.AppendUint64(b, uint64(a.SignedAt))
	b = append(b, a.ReleaseKey[:]...)
	b = append(b, a.SessionKey[:]...)
	return append(b, a.SessionDH[:]...), nil
}

// Check validates the fields a receiver relies on.
func (a *Announce) Check() error {
	switch {
	case a.ManifestSize == 0 || a.ManifestSize > MaxManifestSize:
		return fmt.Errorf("%w: manifest size %d", ErrMalformed, a.ManifestSize)
	case a.ChunkSize < image.MinChunkSize || a.ChunkSize > image.MaxChunkSize:
		return fmt.Errorf("%w: chunk size %d", ErrMalformed, a.ChunkSize)
	case a.ImageSize == 0 || a.ImageSize > uint64(a.ChunkSize)*image.MaxChunks:
		return fmt.Errorf("%w: image size %d", ErrMalformed, a.ImageSize)
	case int(a.ChunkCount) != image.ChunkCount(int64(a.ImageSize), a.ChunkSize):
		return fmt.Errorf("%w: %d chunks for %d bytes", ErrMalformed, a.ChunkCount, a.ImageSize)
	case a.SymbolSize < MinSymbolSize || a.SymbolSize > MaxSymbolSize:
		return fmt.Errorf("%w: symbol size %d", ErrMalformed, a.SymbolSize)
	case a.BlockSymbols == 0 || a.BlockSymbols > MaxBlockSymbols:
		return fmt.Errorf("%w: %d symbols per block", ErrMalformed, a.BlockSymbols)
	case a.BlockSymbols > GF8MaxData && a.SymbolSize%LeopardAlign != 0:
		return fmt.Errorf("%w: blocks of %d symbols need a symbol size that is a multiple of %d, not %d", ErrMalformed, a.BlockSymbols, LeopardAlign, a.SymbolSize)
	case len(a.Hosts) > MaxAnnounceHosts || int(a.HostsFirst)+len(a.Hosts) > int(a.HostsTotal):
		return fmt.Errorf("%w: hosts %d+%d of %d", ErrMalformed, a.HostsFirst, len(a.Hosts), a.HostsTotal)
	case a.Grant != nil && (a.HostsTotal != 0 || a.Closed):
		return fmt.Errorf("%w: a relayed announce naming %d hosts", ErrMalformed, a.HostsTotal)
	}
	return nil
}

func parseAnnounce(b []byte) (*Announce, error) {
	s := cryptobyte.String(b)
	a := &Announce{}
	fl, err := a.readFixed(&s, b)
	if err != nil {
		return nil, err
	}
	if err := a.readHosts(&s, b); err != nil {
		return nil, err
	}
	if err := a.readOptional(&s, b, fl); err != nil {
		return nil, err
	}
	var at uint64
	if !s.ReadUint64(&at) || !s.CopyBytes(a.ReleaseKey[:]) || !s.CopyBytes(a.SessionKey[:]) || !s.CopyBytes(a.SessionDH[:]) {
		return nil, short(b, s, "announce keys")
	}
	a.SignedAt = int64(at)
	if err := done(s); err != nil {
		return nil, err
	}
	return a, a.Check()
}

// readFixed reads the fields at fixed offsets, up to the first host; it
// returns the flags.
func (a *Announce) readFixed(s *cryptobyte.String, b []byte) (uint8, error) {
	var fl uint8
	if !s.CopyBytes(a.ReleaseID[:]) || !s.CopyBytes(a.ManifestDigest[:]) || !s.ReadUint32(&a.ManifestSize) ||
		!s.ReadUint64(&a.ImageSize) || !s.ReadUint32(&a.ChunkSize) || !s.ReadUint32(&a.ChunkCount) ||
		!s.ReadUint16(&a.SymbolSize) || !s.ReadUint16(&a.BlockSymbols) || !s.ReadUint8(&fl) {
		return 0, short(b, *s, "announce")
	}
	if fl&^(announceClosed|announceBase|announceSealed|announceFetch|announceRelay) != 0 {
		return 0, malformed("announce flags %#x", fl)
	}
	a.Closed, a.Encrypted = fl&announceClosed != 0, fl&announceSealed != 0
	if !s.ReadUint64(&a.Rate) || !s.ReadUint16(&a.HostsTotal) || !s.ReadUint16(&a.HostsFirst) {
		return 0, short(b, *s, "announce hosts")
	}
	return fl, nil
}

// readHosts reads the page of host ids.
func (a *Announce) readHosts(s *cryptobyte.String, b []byte) error {
	var n uint8
	if !s.ReadUint8(&n) {
		return short(b, *s, "announce host count")
	}
	if n > MaxAnnounceHosts {
		return malformed("%d hosts in one announce, more than %d", n, MaxAnnounceHosts)
	}
	for range n {
		var h string
		if err := readStr8(s, b, "host id", MaxHostID, &h); err != nil {
			return err
		}
		a.Hosts = append(a.Hosts, h)
	}
	return nil
}

// readOptional reads the base release id, the fetch port and the grant,
// as the flags say they follow.
func (a *Announce) readOptional(s *cryptobyte.String, b []byte, fl uint8) error {
	if fl&announceBase != 0 {
		if !s.CopyBytes(a.BaseID[:]) {
			return short(b, *s, "announce base release id")
		}
		if a.BaseID.IsZero() {
			return malformed("announce base release id all zero")
		}
	}
	if fl&announceFetch != 0 {
		if !s.ReadUint16(&a.FetchPort) {
			return short(b, *s, "announce fetch port")
		}
		if a.FetchPort == 0 {
			return malformed("announce fetch port 0")
		}
	}
	if fl&announceRelay != 0 {
		var err error
		if a.Grant, err = readGrant(s, b); err != nil {
			return err
		}
	}
	return nil
}

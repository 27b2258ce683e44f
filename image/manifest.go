package image

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"

	"github.com/loopcast/loopcast/internal/atomicfile"
)

// ChunkSize is the default size of an image chunk: the unit of hashing,
// transfer and reuse. 1 MiB keeps the manifest small (33 bytes per MiB),
// costs ~4.5% zstd ratio against one stream, and lets chunks be compressed,
// verified and reused independently.
const ChunkSize = 1 << 20

// ManifestVersion is the manifest encoding this package writes and reads.
// Version 2 names the image by a digest over its chunk digests (version 1
// carried the SHA-256 of the whole file, which every host had to compute
// again), so a host that verified each chunk on arrival has verified the
// image.
const ManifestVersion = 2

// Bounds applied when decoding a manifest, which may come from the network.
const (
	// MaxChunks caps the chunk count: 4 Mi chunks of 1 MiB is a 4 TiB image.
	MaxChunks = 1 << 22
	// MaxLabel caps the source label length.
	MaxLabel = 1024
	// MinChunkSize and MaxChunkSize bound the chunk size a manifest may name.
	MinChunkSize = 4096
	MaxChunkSize = 64 << 20
)

var manifestMagic = [4]byte{'L', 'C', 'M', 'F'}

const (
	headerLen     = 74 // magic..label length; see AppendBody
	chunkEntryLen = 33 // SHA-256 + flags
	chunkZero     = 1  // chunk flag: every byte is zero; not sent
	schemeNone    = 0  // trailer: unsigned
	schemeEd25519 = 1  // trailer: ed25519 public key + signature
)

// Errors returned by ParseManifest and Verify.
var (
	ErrMalformed     = errors.New("image: malformed manifest")
	ErrVersion       = errors.New("image: unsupported manifest version")
	ErrUnsigned      = errors.New("image: manifest is not signed")
	ErrBadSignature  = errors.New("image: manifest signature does not verify")
	ErrUntrustedKey  = errors.New("image: manifest signed by an untrusted key")
	ErrChunkMismatch = errors.New("image: chunk does not match manifest")
	ErrDigest        = errors.New("image: image digest does not match the chunk digests")
)

// Chunk describes one chunk of the image.
type Chunk struct {
	Hash [sha256.Size]byte // SHA-256 of the chunk's bytes
	Zero bool              // every byte is zero: receivers leave a hole
}

// Manifest describes an image: its size, chunking, hashes and provenance.
// It is the unit that is signed; the release id is derived from it.
type Manifest struct {
	ImageSize int64
	ChunkSize uint32
	Chunks    []Chunk
	// ImageDigest names the image's bytes: SHA-256 over the image size,
	// chunk size and every chunk's SHA-256 (see ComputeDigest). It is in
	// the signed body; ParseManifest refuses a manifest whose digest does
	// not match its chunk list.
	ImageDigest [sha256.Size]byte
	FileCount   uint64 // entries (files, dirs, links) in the source tree
	Created     int64  // build timestamp (Unix seconds), from the tree or --epoch
	Label       string // source label, e.g. a VCS revision or path

	PublicKey ed25519.PublicKey // nil when unsigned
	Signature []byte
}

// ChunkCount returns the number of chunks an image of size bytes has.
func ChunkCount(size int64, chunkSize uint32) int {
	return int((size + int64(chunkSize) - 1) / int64(chunkSize))
}

// ChunkRange returns the offset and length of chunk i.
func (m *Manifest) ChunkRange(i int) (off int64, n int) {
	off = int64(i) * int64(m.ChunkSize)
	n = int(min(int64(m.ChunkSize), m.ImageSize-off))
	return off, n
}

// digestMagic starts the image digest's input, so it cannot be confused
// with the SHA-256 of any other loopcast structure.
const digestMagic = "loopcast image digest v2\x00"

// ComputeDigest returns the image digest of the manifest's chunk list:
//
//	SHA-256("loopcast image digest v2\0" | image size u64 | chunk size u32
//	        | chunk count u32 | every chunk's SHA-256, in order)
//
// A file whose every chunk matches its SHA-256 has this digest.
func (m *Manifest) ComputeDigest() [sha256.Size]byte {
	h := sha256.New()
	b := make([]byte, 0, len(digestMagic)+16)
	b = append(b, digestMagic...)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ImageSize))
	b = binary.BigEndian.AppendUint32(b, m.ChunkSize)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	h.Write(b)
	for i := range m.Chunks {
		h.Write(m.Chunks[i].Hash[:])
	}
	return [sha256.Size]byte(h.Sum(nil))
}

// Digest is the SHA-256 of the whole encoded manifest, signature included.
func (m *Manifest) Digest() ([sha256.Size]byte, error) {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return [sha256.Size]byte{}, err
	}
	return sha256.Sum256(b), nil
}

// AppendBody appends the signed part of the encoding:
//
//	0  magic "LCMF"      4   version u16       6  flags u16 (0)
//	8  image size u64   16   chunk size u32   20  chunk count u32
//	24 file count u64   32   created i64      40  image digest [32]
//	72 label length u16 74   label, then per chunk: SHA-256 [32] + flags u8
func (m *Manifest) AppendBody(b []byte) []byte {
	b = append(b, manifestMagic[:]...)
	b = binary.BigEndian.AppendUint16(b, ManifestVersion)
	b = binary.BigEndian.AppendUint16(b, 0)
	b = binary.BigEndian.AppendUint64(b, uint64(m.ImageSize))
	b = binary.BigEndian.AppendUint32(b, m.ChunkSize)
	b = binary.BigEndian.AppendUint32(b, uint32(len(m.Chunks)))
	b = binary.BigEndian.AppendUint64(b, m.FileCount)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Created))
	b = append(b, m.ImageDigest[:]...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Label)))
	b = append(b, m.Label...)
	for _, c := range m.Chunks {
		b = append(b, c.Hash[:]...)
		var fl byte
		if c.Zero {
			fl |= chunkZero
		}
		b = append(b, fl)
	}
	return b
}

// AppendBinary appends the full encoding: the body, then a trailer of
// scheme u8 and, for ed25519, public key [32] and signature [64].
func (m *Manifest) AppendBinary(b []byte) ([]byte, error) {
	if err := m.check(); err != nil {
		return b, err
	}
	b = m.AppendBody(b)
	if m.PublicKey == nil {
		return append(b, schemeNone), nil
	}
	if len(m.PublicKey) != ed25519.PublicKeySize || len(m.Signature) != ed25519.SignatureSize {
		return b, fmt.Errorf("%w: bad key or signature length", ErrMalformed)
	}
	b = append(b, schemeEd25519)
	b = append(b, m.PublicKey...)
	return append(b, m.Signature...), nil
}

// checkChunkSize reports whether cs is a chunk size a manifest may name:
// in [MinChunkSize, MaxChunkSize].
func checkChunkSize(cs uint32) error {
	if cs < MinChunkSize || cs > MaxChunkSize {
		return fmt.Errorf("chunk size %d out of range [%d, %d]", cs, MinChunkSize, MaxChunkSize)
	}
	return nil
}

func (m *Manifest) check() error {
	if err := checkChunkSize(m.ChunkSize); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	switch {
	case m.ImageSize <= 0:
		return fmt.Errorf("%w: image size %d", ErrMalformed, m.ImageSize)
	case len(m.Chunks) > MaxChunks:
		return fmt.Errorf("%w: %d chunks, more than %d", ErrMalformed, len(m.Chunks), MaxChunks)
	case len(m.Chunks) != ChunkCount(m.ImageSize, m.ChunkSize):
		return fmt.Errorf("%w: %d chunks for %d bytes", ErrMalformed, len(m.Chunks), m.ImageSize)
	case len(m.Label) > MaxLabel:
		return fmt.Errorf("%w: label of %d bytes, more than %d", ErrMalformed, len(m.Label), MaxLabel)
	}
	return nil
}

// ParseManifest decodes an encoded manifest. It checks structure and bounds
// only; call Verify to check the signature.
func ParseManifest(b []byte) (*Manifest, error) {
	if len(b) < headerLen+1 {
		return nil, fmt.Errorf("%w: %d bytes, too short", ErrMalformed, len(b))
	}
	if !bytes.Equal(b[:4], manifestMagic[:]) {
		return nil, fmt.Errorf("%w: bad magic %q", ErrMalformed, b[:4])
	}
	if v := binary.BigEndian.Uint16(b[4:]); v != ManifestVersion {
		return nil, versionError(v)
	}
	if fl := binary.BigEndian.Uint16(b[6:]); fl != 0 {
		return nil, fmt.Errorf("%w: unknown flags %#x", ErrMalformed, fl)
	}
	m := &Manifest{
		ImageSize: int64(binary.BigEndian.Uint64(b[8:])),
		ChunkSize: binary.BigEndian.Uint32(b[16:]),
		FileCount: binary.BigEndian.Uint64(b[24:]),
		Created:   int64(binary.BigEndian.Uint64(b[32:])),
	}
	count := binary.BigEndian.Uint32(b[20:])
	copy(m.ImageDigest[:], b[40:72])
	labelLen := int(binary.BigEndian.Uint16(b[72:]))
	if count > MaxChunks || labelLen > MaxLabel {
		return nil, fmt.Errorf("%w: %d chunks, label %d bytes", ErrMalformed, count, labelLen)
	}
	bodyLen := headerLen + labelLen + int(count)*chunkEntryLen
	if len(b) < bodyLen+1 {
		return nil, fmt.Errorf("%w: %d bytes, body needs %d", ErrMalformed, len(b), bodyLen+1)
	}
	m.Label = string(b[headerLen : headerLen+labelLen])
	m.Chunks = make([]Chunk, count)
	p := b[headerLen+labelLen : bodyLen]
	for i := range m.Chunks {
		e := p[i*chunkEntryLen:]
		copy(m.Chunks[i].Hash[:], e[:32])
		switch e[32] {
		case 0:
		case chunkZero:
			m.Chunks[i].Zero = true
		default:
			return nil, fmt.Errorf("%w: chunk %d has unknown flags %#x", ErrMalformed, i, e[32])
		}
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if m.ComputeDigest() != m.ImageDigest {
		return nil, fmt.Errorf("%w: %w", ErrMalformed, ErrDigest)
	}
	return m, m.parseTrailer(b[bodyLen:])
}

// versionError says which manifest version b is and what reads it.
func versionError(v uint16) error {
	if v < ManifestVersion {
		return fmt.Errorf("%w: version %d, from an older loopcast; this one reads version %d: build the image again with it",
			ErrVersion, v, ManifestVersion)
	}
	return fmt.Errorf("%w: version %d, from a newer loopcast; this one reads version %d: upgrade it to read this manifest",
		ErrVersion, v, ManifestVersion)
}

func (m *Manifest) parseTrailer(t []byte) error {
	switch {
	case t[0] == schemeNone && len(t) == 1:
		return nil
	case t[0] == schemeEd25519 && len(t) == 1+ed25519.PublicKeySize+ed25519.SignatureSize:
		m.PublicKey = ed25519.PublicKey(bytes.Clone(t[1 : 1+ed25519.PublicKeySize]))
		m.Signature = bytes.Clone(t[1+ed25519.PublicKeySize:])
		return nil
	}
	return fmt.Errorf("%w: bad signature trailer (scheme %d, %d bytes)", ErrMalformed, t[0], len(t))
}

// Sign signs the manifest body with key.
func (m *Manifest) Sign(key ed25519.PrivateKey) {
	m.PublicKey = key.Public().(ed25519.PublicKey)
	m.Signature = ed25519.Sign(key, m.AppendBody(nil))
}

// Verify checks that the manifest is signed by one of the trusted keys.
func (m *Manifest) Verify(trusted []ed25519.PublicKey) error {
	if m.PublicKey == nil {
		return ErrUnsigned
	}
	if !ed25519.Verify(m.PublicKey, m.AppendBody(nil), m.Signature) {
		return ErrBadSignature
	}
	for _, k := range trusted {
		if k.Equal(m.PublicKey) {
			return nil
		}
	}
	return fmt.Errorf("%w (key %s)", ErrUntrustedKey, KeyID(m.PublicKey))
}

// VerifyChunk checks data against chunk i of the manifest.
func (m *Manifest) VerifyChunk(i int, data []byte) error {
	if i < 0 || i >= len(m.Chunks) {
		return fmt.Errorf("%w: chunk %d of %d", ErrChunkMismatch, i, len(m.Chunks))
	}
	if _, n := m.ChunkRange(i); len(data) != n {
		return fmt.Errorf("%w: chunk %d has %d bytes, want %d", ErrChunkMismatch, i, len(data), n)
	}
	if sha256.Sum256(data) != m.Chunks[i].Hash {
		return fmt.Errorf("%w: chunk %d hash", ErrChunkMismatch, i)
	}
	return nil
}

// ReadManifestFile reads and parses a manifest file (not verified).
func ReadManifestFile(path string) (*Manifest, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	m, err := ParseManifest(b)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return m, nil
}

// WriteManifestFile writes the manifest to path atomically.
func WriteManifestFile(path string, m *Manifest) error {
	b, err := m.AppendBinary(nil)
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(path, b, 0o644)
}

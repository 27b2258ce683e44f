package image

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// ID is a release id: the first 8 bytes of the SHA-256 of the unsigned
// manifest body. It is written as 16 lowercase hex digits (String), and
// the wire carries its 8 bytes.
type ID [8]byte

// String returns the id as 16 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero id, which names no release.
func (id ID) IsZero() bool { return id == ID{} }

// ParseID reads a release id written by String.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return id, fmt.Errorf("image: release id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("image: release id %q: %w", s, err)
	}
	if id.String() != s {
		return id, fmt.Errorf("image: release id %q: want lowercase hex digits", s)
	}
	return id, nil
}

// ID returns the manifest's release id.
func (m *Manifest) ID() ID {
	sum := sha256.Sum256(m.AppendBody(nil))
	return ID(sum[:8])
}

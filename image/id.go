package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// ID is a release id: the first 8 bytes of the SHA-256 of the unsigned
// manifest body. It is the one type every package names a release by. It
// is written as 16 lowercase hex digits (String, ParseID; MarshalText for
// JSON and file names); the multicast wire carries its 8 bytes, the
// control and peer wires its 16 digits. The zero ID names no release.
type ID [8]byte

// String returns the id as 16 lowercase hex digits.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// IsZero reports whether id is the zero id, which names no release.
func (id ID) IsZero() bool { return id == ID{} }

// Compare orders ids as their texts sort: -1, 0 or +1.
func (id ID) Compare(other ID) int { return bytes.Compare(id[:], other[:]) }

// ParseID reads a release id written by String. On error it returns the
// zero id, never a partly decoded one.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*len(id) {
		return ID{}, fmt.Errorf("image: release id %q: want %d hex digits", s, 2*len(id))
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, fmt.Errorf("image: release id %q: %w", s, err)
	}
	if id.String() != s {
		return ID{}, fmt.Errorf("image: release id %q: want lowercase hex digits", s)
	}
	return id, nil
}

// ParseRelease is ParseID for text that must name a release: the zero
// id, which names none, is refused.
func ParseRelease(s string) (ID, error) {
	id, err := ParseID(s)
	if err == nil && id.IsZero() {
		return ID{}, errors.New("the zero id names no release")
	}
	return id, err
}

// Text is the id's digits, or "" for the zero id, which names no release:
// what messages and the sender's tables print.
func (id ID) Text() string {
	if id.IsZero() {
		return ""
	}
	return id.String()
}

// MarshalText writes the id as String does, and the zero id, which names
// no release, as the empty text: a JSON field that held no release reads
// "" as before ids were typed, and a field tagged `omitzero` is left out.
func (id ID) MarshalText() ([]byte, error) { return []byte(id.Text()), nil }

// UnmarshalText reads what MarshalText writes: 16 lowercase hex digits, or
// the empty text for the zero id.
func (id *ID) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*id = ID{}
		return nil
	}
	v, err := ParseID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// ID returns the manifest's release id. It hashes the manifest body:
// callers take it once and keep it beside the manifest.
func (m *Manifest) ID() ID {
	sum := sha256.Sum256(m.AppendBody(nil))
	return ID(sum[:8])
}

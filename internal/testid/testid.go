// Package testid gives tests release ids: real ones (image.ID) derived
// from a label, so a fixture can say "v1" and still name a release the
// way every package does.
package testid

import (
	"crypto/sha256"

	"github.com/loopcast/loopcast/image"
)

// Of returns the release id of label: the first 8 bytes of its SHA-256,
// never the zero id for the labels tests use.
func Of(label string) image.ID {
	sum := sha256.Sum256([]byte(label))
	return image.ID(sum[:8])
}

// Parse returns the id written s (16 lowercase hex digits) and panics
// when s is not one: for literals in tests.
func Parse(s string) image.ID {
	id, err := image.ParseID(s)
	if err != nil {
		panic(err)
	}
	return id
}

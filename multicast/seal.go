package multicast

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Encrypted sessions (SendOptions.Encrypt). The sender draws a content
// key for the session and seals every chunk's frame with AES-256-GCM
// before it is cut into symbols, so DATA and REPAIR carry only ciphertext;
// parity is computed over the sealed frame. Each host gets the content key
// in the sender's acknowledgement of its REGISTER, sealed under a key of
// its own X25519 agreement with the session (so only a host whose signed
// REGISTER the sender accepted, with a pinned key, can read it). A
// listener that is not a recipient learns the manifest (chunk hashes,
// sizes, label) and nothing of the tree's bytes.
//
// The nonce is the chunk index and the frame's kind (plain or delta),
// unique under a key drawn per session; the additional data is the
// release id, so a frame cannot be moved to another chunk or release.
const sealOverhead = 16 // the GCM tag

// contentKeyLen is the content key's length (AES-256).
const contentKeyLen = 32

// wire sizes the sealed content key a REGISTER acknowledgement carries:
// this fails to compile unless it is a content key and its tag.
const _ = uint(wire.WrappedKeyLen-(contentKeyLen+sealOverhead)) + uint(contentKeyLen+sealOverhead-wire.WrappedKeyLen)

type contentCipher struct{ aead cipher.AEAD }

func newContentCipher(key []byte) (*contentCipher, error) {
	if len(key) != contentKeyLen {
		return nil, fmt.Errorf("multicast: content key of %d bytes", len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	a, err := cipher.NewGCM(b)
	if err != nil {
		return nil, err
	}
	return &contentCipher{aead: a}, nil
}

// newContentKey draws a session's content key.
func newContentKey() []byte {
	k := make([]byte, contentKeyLen)
	rand.Read(k)
	return k
}

func frameNonce(chunk uint32, delta bool) []byte {
	n := make([]byte, 12)
	copy(n, "LCfr")
	binary.BigEndian.PutUint32(n[4:], chunk)
	if delta {
		n[8] = 1
	}
	return n
}

func (c *contentCipher) seal(frame []byte, chunk uint32, delta bool, release image.ID) []byte {
	return c.aead.Seal(make([]byte, 0, len(frame)+sealOverhead), frameNonce(chunk, delta), frame, release[:])
}

var errOpen = errors.New("multicast: sealed frame does not open (corrupt, forged, or another session's key)")

func (c *contentCipher) open(dst, sealed []byte, chunk uint32, delta bool, release image.ID) ([]byte, error) {
	out, err := c.aead.Open(dst, frameNonce(chunk, delta), sealed, release[:])
	if err != nil {
		return nil, errOpen
	}
	return out, nil
}

// wrapKey seals the content key for one host under its wrap key; the
// nonce is fixed, as that key seals this one message in the session.
func wrapKey(content []byte, k *macKey) []byte {
	c, err := newContentCipher(k[:])
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	return c.aead.Seal(nil, make([]byte, 12), content, []byte("loopcast/3 content key"))
}

func unwrapKey(wrapped []byte, k *macKey) ([]byte, error) {
	c, err := newContentCipher(k[:])
	if err != nil {
		return nil, err
	}
	key, err := c.aead.Open(nil, make([]byte, 12), wrapped, []byte("loopcast/3 content key"))
	if err != nil || len(key) != contentKeyLen {
		return nil, errors.New("multicast: the content key does not unwrap")
	}
	return key, nil
}

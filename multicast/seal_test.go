package multicast

import (
	"bytes"
	"testing"
)

// A frame sealed for one chunk, kind or release does not open as another,
// nor with another key, nor with a bit flipped.
func TestSealBinds(t *testing.T) {
	c, _ := newContentCipher(newContentKey())
	other, _ := newContentCipher(newContentKey())
	frame := []byte("a zstd frame")
	rel := [8]byte{1}
	sealed := c.seal(frame, 7, false, rel)
	if got, err := c.open(nil, sealed, 7, false, rel); err != nil || !bytes.Equal(got, frame) {
		t.Fatalf("open: %q, %v", got, err)
	}
	flipped := bytes.Clone(sealed)
	flipped[0] ^= 1
	for name, try := range map[string]func() error{
		"chunk":   func() error { _, err := c.open(nil, sealed, 8, false, rel); return err },
		"kind":    func() error { _, err := c.open(nil, sealed, 7, true, rel); return err },
		"release": func() error { _, err := c.open(nil, sealed, 7, false, [8]byte{2}); return err },
		"key":     func() error { _, err := other.open(nil, sealed, 7, false, rel); return err },
		"flipped": func() error { _, err := c.open(nil, flipped, 7, false, rel); return err },
	} {
		if try() == nil {
			t.Errorf("a frame opened with another %s", name)
		}
	}
	k := macKey{9}
	key := newContentKey()
	w := wrapKey(key, &k)
	if got, err := unwrapKey(w, &k); err != nil || !bytes.Equal(got, key) {
		t.Errorf("unwrap: %v", err)
	}
	if _, err := unwrapKey(w, &macKey{8}); err == nil {
		t.Error("a content key unwrapped under another host's key")
	}
}

// BenchmarkSeal is the sender's cost per chunk frame (1 MiB) of Encrypt,
// and a receiver's to open it.
func BenchmarkSeal(b *testing.B) {
	c, _ := newContentCipher(newContentKey())
	frame := make([]byte, 1<<20)
	b.Run("seal", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			c.seal(frame, 1, false, [8]byte{})
		}
	})
	sealed := c.seal(frame, 1, false, [8]byte{})
	buf := make([]byte, 0, len(frame))
	b.Run("open", func(b *testing.B) {
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			if _, err := c.open(buf[:0], sealed, 1, false, [8]byte{}); err != nil {
				b.Fatal(err)
			}
		}
	})
}

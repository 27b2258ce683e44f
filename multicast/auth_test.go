package multicast

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// testReleaseKey is the key testImage signs with.
func testReleaseKey() ed25519.PrivateKey {
	return ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
}

// testHostKey is host id's key in tests: the same id, the same key.
func testHostKey(id string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("test host key " + id))
	return ed25519.NewKeyFromSeed(seed[:])
}

// BenchmarkAuth measures what authentication costs per packet: a
// signature (ANNOUNCE, STATUS, ABORT, REGISTER, REFUSE) to make and to
// check, and a MAC (NACK, COMPLETE, acknowledgements). DATA, REPAIR and
// MANIFEST carry none.
func BenchmarkAuth(b *testing.B) {
	key := testHostKey("bench")
	n := &wire.Nack{Host: "web-0001", Round: 7, Parts: 1, Blocks: make([]wire.BlockNeed, wire.MaxNackBlocks)}
	for i := range n.Blocks {
		n.Blocks[i] = wire.BlockNeed{Chunk: uint32(i), Missing: 1}
	}
	st := &wire.Status{Round: 9}
	h := wire.Header{Session: 1, Seq: 1}
	mk := macKey{7}
	signed, _ := appendSigned(nil, h, st, key)
	macd, _ := appendMAC(nil, h, n, &mk)
	b.Run("sign", func(b *testing.B) {
		for b.Loop() {
			appendSigned(nil, h, st, key)
		}
	})
	b.Run("verify", func(b *testing.B) {
		ph, _, _ := wire.Parse(signed)
		pub := key.Public().(ed25519.PublicKey)
		for b.Loop() {
			if !signedBy(&ph, pub) {
				b.Fatal("bad signature")
			}
		}
	})
	b.Run("mac-nack", func(b *testing.B) {
		b.SetBytes(int64(len(macd)))
		for b.Loop() {
			appendMAC(nil, h, n, &mk)
		}
	})
	b.Run("mac-check", func(b *testing.B) {
		ph, _, _ := wire.Parse(macd)
		for b.Loop() {
			if !macBy(&ph, &mk) {
				b.Fatal("bad mac")
			}
		}
	})
	b.Run("agree", func(b *testing.B) {
		peer := pub32(newDH().PublicKey().Bytes())
		dh := newDH()
		for b.Loop() {
			agree(dh, peer, 1, "web-0001")
		}
	})
}

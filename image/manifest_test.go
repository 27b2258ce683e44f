package image

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// testKey is a fixed key so encodings are stable: ed25519 signatures are
// deterministic.
var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func sampleManifest() *Manifest {
	m := &Manifest{
		ImageSize: 2*MinChunkSize + 100,
		ChunkSize: MinChunkSize,
		FileCount: 3,
		Created:   1_700_000_000,
		Label:     "v1",
		Chunks:    make([]Chunk, 3),
	}
	m.Chunks[0].Hash = sha256.Sum256([]byte("c0"))
	m.Chunks[1] = Chunk{Hash: sha256.Sum256(make([]byte, MinChunkSize)), Zero: true}
	m.Chunks[2].Hash = sha256.Sum256([]byte("c2"))
	m.ImageDigest = m.ComputeDigest()
	return m
}

func mustEncode(t testing.TB, m *Manifest) []byte {
	t.Helper()
	b, err := m.AppendBinary(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifestGolden pins the encoding: values are on the wire.
func TestManifestGolden(t *testing.T) {
	unsigned := sampleManifest()
	signed := sampleManifest()
	signed.Sign(testKey)
	for _, tc := range []struct {
		name   string
		m      *Manifest
		prefix string // hex of the first bytes
		length int
	}{
		// magic "LCMF", version 2, flags 0, size 8292, chunk 4096, 3 chunks,
		// 3 files, created 1700000000
		{"unsigned", unsigned, "4c434d4600020000000000000000206400001000000000030000000000000003000000006553f100", 74 + 2 + 3*33 + 1},
		{"signed", signed, "4c434d4600020000000000000000206400001000000000030000000000000003000000006553f100", 74 + 2 + 3*33 + 1 + 32 + 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := mustEncode(t, tc.m)
			if got := hex.EncodeToString(b[:40]); got != tc.prefix {
				t.Errorf("prefix\n got %s\nwant %s", got, tc.prefix)
			}
			if len(b) != tc.length {
				t.Errorf("length %d, want %d", len(b), tc.length)
			}
			m, err := ParseManifest(b)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.m, m); diff != "" {
				t.Errorf("round trip (-want +got):\n%s", diff)
			}
		})
	}
	if unsigned.ID() != signed.ID() {
		t.Error("release id depends on the signature")
	}
	if got, want := unsigned.ID().String(), "2547cb3ae6d78b76"; got != want {
		t.Errorf("release id %s, want %s", got, want)
	}
}

func TestManifestTruncationsFail(t *testing.T) {
	m := sampleManifest()
	m.Sign(testKey)
	b := mustEncode(t, m)
	for n := range len(b) {
		if _, err := ParseManifest(b[:n]); err == nil {
			t.Fatalf("ParseManifest of %d of %d bytes succeeded", n, len(b))
		}
	}
	if _, err := ParseManifest(append(bytes.Clone(b), 0)); err == nil {
		t.Error("ParseManifest with a trailing byte succeeded")
	}
}

func TestManifestRejectsBadFields(t *testing.T) {
	good := mustEncode(t, sampleManifest())
	for _, tc := range []struct {
		name string
		edit func(b []byte)
		want error
	}{
		{"magic", func(b []byte) { b[0] = 'X' }, ErrMalformed},
		{"older version", func(b []byte) { b[5] = 1 }, ErrVersion},
		{"newer version", func(b []byte) { b[5] = 9 }, ErrVersion},
		{"image digest", func(b []byte) { b[41] ^= 1 }, ErrDigest},
		{"flags", func(b []byte) { b[7] = 1 }, ErrMalformed},
		{"chunk count", func(b []byte) { b[23] = 4 }, ErrMalformed},
		{"huge chunk count", func(b []byte) { b[20] = 0xff }, ErrMalformed},
		{"chunk size", func(b []byte) { b[18] = 0 }, ErrMalformed},
		{"chunk flag", func(b []byte) { b[74+2+32] = 0x80 }, ErrMalformed},
		{"scheme", func(b []byte) { b[len(b)-1] = 9 }, ErrMalformed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := bytes.Clone(good)
			tc.edit(b)
			if _, err := ParseManifest(b); !errors.Is(err, tc.want) {
				t.Errorf("got %v, want %v", err, tc.want)
			}
		})
	}
}

// TestManifestVersionError: a manifest of another version is refused with
// an error that says which version it is and what reads it.
func TestManifestVersionError(t *testing.T) {
	b := mustEncode(t, sampleManifest())
	for v, want := range map[byte]string{1: "version 1, from an older loopcast; this one reads version 2", 3: "version 3, from a newer loopcast"} {
		c := bytes.Clone(b)
		c[5] = v
		if _, err := ParseManifest(c); !errors.Is(err, ErrVersion) || !strings.Contains(err.Error(), want) {
			t.Errorf("manifest version %d: %v, want ErrVersion saying %q", v, err, want)
		}
	}
}

func TestManifestVerify(t *testing.T) {
	other := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize))
	trusted := []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}

	m := sampleManifest()
	if err := m.Verify(trusted); !errors.Is(err, ErrUnsigned) {
		t.Errorf("unsigned: got %v, want ErrUnsigned", err)
	}
	m.Sign(testKey)
	if err := m.Verify(trusted); err != nil {
		t.Errorf("good signature: %v", err)
	}
	if err := m.Verify(nil); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("no trusted keys: got %v, want ErrUntrustedKey", err)
	}
	m2 := sampleManifest()
	m2.Sign(other)
	if err := m2.Verify(trusted); !errors.Is(err, ErrUntrustedKey) {
		t.Errorf("other key: got %v, want ErrUntrustedKey", err)
	}
	// every single-bit change of the body breaks the signature
	b := mustEncode(t, m)
	body := len(m.AppendBody(nil))
	for i := 0; i < body; i++ {
		c := bytes.Clone(b)
		c[i] ^= 0x01
		p, err := ParseManifest(c)
		if err != nil {
			continue // structurally invalid is refused too
		}
		if err := p.Verify(trusted); !errors.Is(err, ErrBadSignature) {
			t.Fatalf("byte %d flipped: Verify = %v, want ErrBadSignature", i, err)
		}
	}
	// a signature swapped in from another manifest does not verify
	m3 := sampleManifest()
	m3.Label = "v2"
	m3.PublicKey, m3.Signature = m.PublicKey, m.Signature
	if err := m3.Verify(trusted); !errors.Is(err, ErrBadSignature) {
		t.Errorf("swapped signature: got %v", err)
	}
}

func TestVerifyChunk(t *testing.T) {
	data := bytes.Repeat([]byte("z"), 3*MinChunkSize-5)
	p := filepath.Join(t.TempDir(), "img")
	os.WriteFile(p, data, 0o644)
	m, err := HashFile(t.Context(), p, MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if m.ImageDigest != m.ComputeDigest() {
		t.Error("HashFile's image digest is not the digest over its chunks")
	}
	if err := VerifyFile(t.Context(), p, m); err != nil {
		t.Errorf("VerifyFile of the hashed file: %v", err)
	}
	altered := bytes.Clone(data)
	altered[MinChunkSize+7] ^= 1
	altered[2*MinChunkSize] ^= 1
	os.WriteFile(p, altered, 0o644)
	var ce *ChunkError
	if err := VerifyFile(t.Context(), p, m); !errors.As(err, &ce) || !slices.Equal(ce.Chunks, []int{1, 2}) || !strings.Contains(err.Error(), p) {
		t.Errorf("VerifyFile of a file with chunks 1 and 2 altered: %v, want a ChunkError naming %s and [1 2]", err, p)
	}
	for i := range m.Chunks {
		off, n := m.ChunkRange(i)
		if err := m.VerifyChunk(i, data[off:off+int64(n)]); err != nil {
			t.Errorf("chunk %d: %v", i, err)
		}
	}
	bad := bytes.Clone(data[:MinChunkSize])
	bad[10] ^= 1
	if err := m.VerifyChunk(0, bad); !errors.Is(err, ErrChunkMismatch) {
		t.Errorf("altered chunk: got %v", err)
	}
	if err := m.VerifyChunk(2, data[:MinChunkSize]); !errors.Is(err, ErrChunkMismatch) {
		t.Errorf("wrong length: got %v", err)
	}
	if err := m.VerifyChunk(3, nil); !errors.Is(err, ErrChunkMismatch) {
		t.Errorf("out of range: got %v", err)
	}
}

func TestHashFileZeroChunks(t *testing.T) {
	p := filepath.Join(t.TempDir(), "img")
	f, _ := os.Create(p)
	f.Truncate(5 * MinChunkSize)
	f.WriteAt([]byte("data"), 2*MinChunkSize+7)
	f.WriteAt(make([]byte, MinChunkSize), 4*MinChunkSize) // written zeros
	f.Close()
	m, err := HashFile(t.Context(), p, MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	var zero []bool
	for _, c := range m.Chunks {
		zero = append(zero, c.Zero)
	}
	if diff := cmp.Diff([]bool{true, true, false, true, true}, zero); diff != "" {
		t.Errorf("zero flags (-want +got):\n%s", diff)
	}
	if m.Chunks[0].Hash != sha256.Sum256(make([]byte, MinChunkSize)) {
		t.Error("zero chunk hash is not the SHA-256 of zeros")
	}
}

func TestKeyFiles(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	pubPath, err := GenerateKeyFiles(key)
	if err != nil {
		t.Fatal(err)
	}
	if pubPath != filepath.Join(dir, "release.pub") {
		t.Errorf("public key at %s", pubPath)
	}
	if fi, _ := os.Stat(key); fi.Mode().Perm() != 0o600 {
		t.Errorf("private key mode %v, want 0600", fi.Mode().Perm())
	}
	priv, err := ReadPrivateKeyFile(key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ReadPublicKeyFile(pubPath)
	if err != nil {
		t.Fatal(err)
	}
	if !pub.Equal(priv.Public()) {
		t.Error("public key does not match the private key")
	}
	if _, err := GenerateKeyFiles(key); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Errorf("second keygen: %v, want a refusal", err)
	}
	if _, err := ReadPublicKeyFile(key); err == nil {
		t.Error("reading a private key as public succeeded")
	}
}

func FuzzParseManifest(f *testing.F) {
	m := sampleManifest()
	f.Add(mustEncode(f, m))
	m.Sign(testKey)
	f.Add(mustEncode(f, m))
	f.Add([]byte("LCMF"))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParseManifest(b)
		if err != nil {
			return
		}
		enc, err := m.AppendBinary(nil)
		if err != nil {
			t.Fatalf("parsed manifest does not encode: %v", err)
		}
		if !bytes.Equal(enc, b) {
			t.Fatalf("re-encoding differs:\n%x\n%x", enc, b)
		}
		m2, err := ParseManifest(enc)
		if err != nil || !cmp.Equal(m, m2) {
			t.Fatalf("parse of re-encoding: %v", err)
		}
	})
}

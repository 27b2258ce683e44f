package multicast

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"
	"github.com/loopcast/loopcast/image"
)

// deltaDictID names the raw dictionary (the base chunk) in a delta
// chunk's zstd frame; any non-zero value would do, it never leaves the
// session's two ends.
const deltaDictID = 0x4c43_4d44 // "LCMD"

// deltaWindow is the zstd window of a delta chunk: the base chunk (the
// dictionary) and the chunk itself must both be in reach, so twice the
// chunk size, rounded up to the power of two zstd requires. Receivers cap
// their decoders' window at the same value.
func deltaWindow(chunkSize uint32) int {
	w := zstd.MinWindowSize
	for w < 2*int(chunkSize) {
		w <<= 1
	}
	return w
}

// deltaBase is the hosts' previous image as the sender sees it: its
// manifest and bytes. Read-only, so the prefetcher may share it.
type deltaBase struct {
	m   *image.Manifest
	img io.ReaderAt
}

// newDeltaBase returns the base if it can serve as one for m: given, and
// chunked the same way.
func newDeltaBase(m, base *image.Manifest, img io.ReaderAt) *deltaBase {
	if base == nil || img == nil || base.ChunkSize != m.ChunkSize || base.ReleaseID() == m.ReleaseID() {
		return nil
	}
	return &deltaBase{m: base, img: img}
}

// covers reports whether chunk i exists, non-zero, in the base image.
func (b *deltaBase) covers(i uint32) bool {
	return b != nil && int(i) < len(b.m.Chunks) && !b.m.Chunks[i].Zero
}

// chunk reads base chunk i into buf and checks it against the base
// manifest: a base image that does not match costs plain sending, never a
// dictionary the hosts do not hold.
func (b *deltaBase) chunk(i uint32, buf []byte) ([]byte, bool) {
	off, n := b.m.ChunkRange(int(i))
	buf = buf[:n]
	if _, err := b.img.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, false
	}
	return buf, b.m.VerifyChunk(int(i), buf) == nil
}

// encodeDelta compresses raw with dict as zstd raw dictionary. The
// encoder is built per chunk (its dictionary is the chunk's own base), so
// nothing grows with the image.
func encodeDelta(raw, dict []byte, chunkSize uint32) ([]byte, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedBetterCompression), zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(deltaWindow(chunkSize)), zstd.WithEncoderDictRaw(deltaDictID, dict))
	if err != nil {
		return nil, fmt.Errorf("multicast: zstd delta encoder: %w", err)
	}
	defer enc.Close()
	return enc.EncodeAll(raw, nil), nil
}

// baseFile is a receiver's copy of the announced base image.
type baseFile struct {
	f    *os.File
	size int64
}

// openBase opens the base image a receiver's BaseImage names, or returns
// nil when it has none.
func openBase(lookup func(string) (string, bool), id string) *baseFile {
	if lookup == nil {
		return nil
	}
	path, ok := lookup(id)
	if !ok {
		return nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil
	}
	return &baseFile{f: f, size: fi.Size()}
}

func (b *baseFile) close() {
	if b != nil {
		b.f.Close()
	}
}

// chunk reads the base's chunk i (shorter at the base's end) into buf.
func (b *baseFile) chunk(i int, chunkSize uint32, buf []byte) ([]byte, error) {
	off := int64(i) * int64(chunkSize)
	if off >= b.size {
		return nil, fmt.Errorf("base image of %d bytes has no chunk %d", b.size, i)
	}
	buf = buf[:min(int64(chunkSize), b.size-off)]
	if _, err := b.f.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read base chunk %d: %w", i, err)
	}
	return buf, nil
}

// decodeDelta decompresses a delta chunk against its base chunk, with the
// same bounds as plain chunks: output at most one chunk, window at most
// deltaWindow.
func decodeDelta(comp, dict, dst []byte, chunkSize uint32) ([]byte, error) {
	zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(chunkSize)),
		zstd.WithDecoderMaxWindow(uint64(deltaWindow(chunkSize))), zstd.WithDecoderDictRaw(deltaDictID, dict))
	if err != nil {
		return nil, fmt.Errorf("zstd delta decoder: %w", err)
	}
	defer zd.Close()
	return zd.DecodeAll(comp, dst)
}

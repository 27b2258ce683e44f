package multicast

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/klauspost/compress/zstd"

	"github.com/loopcast/loopcast/image"
)

// deltaWindow is the zstd window of a delta chunk (see image.DeltaWindow):
// receivers cap their decoders' window at this value.
func deltaWindow(chunkSize uint32) int { return image.DeltaWindow(chunkSize) }

// baseFile is a receiver's copy of the announced base image.
type baseFile struct {
	f    *os.File
	size int64
}

// openBase opens the base image a receiver's BaseImage names, or returns
// nil when it has none.
func openBase(lookup func(image.ID) (string, bool), id image.ID) *baseFile {
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
		zstd.WithDecoderMaxWindow(uint64(deltaWindow(chunkSize))), zstd.WithDecoderDictRaw(image.DeltaDictID, dict))
	if err != nil {
		return nil, fmt.Errorf("zstd delta decoder: %w", err)
	}
	defer zd.Close()
	return zd.DecodeAll(comp, dst)
}

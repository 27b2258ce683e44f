package multicast

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/loopcast/loopcast/image"
)

// sourceCache is how many compressed chunks the sender keeps: repair jobs
// come in chunk order, so a few cover a round's jobs for one chunk while
// the sender's memory stays bounded whatever the image size.
const sourceCache = 8

// source reads and compresses the image's chunks for the sender. A chunk
// compresses to the same bytes every time (EncodeAll is deterministic for
// one encoder configuration), so evicted chunks are simply recompressed.
type source struct {
	img   io.ReaderAt
	m     *image.Manifest
	enc   *zstd.Encoder
	clen  []uint32 // compressed length per chunk, 0 until first compressed
	cache map[uint32][]byte
	order []uint32 // cache keys, oldest first
	raw   []byte
}

func newEncoder() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1))
	if err != nil {
		return nil, fmt.Errorf("multicast: zstd encoder: %w", err)
	}
	return enc, nil
}

func newSource(img io.ReaderAt, m *image.Manifest) (*source, error) {
	enc, err := newEncoder()
	if err != nil {
		return nil, err
	}
	return &source{img: img, m: m, enc: enc, clen: make([]uint32, len(m.Chunks)), cache: map[uint32][]byte{}, raw: make([]byte, m.ChunkSize)}, nil
}

// compressChunk reads chunk i into raw, checks it against the manifest and
// compresses it.
func compressChunk(img io.ReaderAt, m *image.Manifest, enc *zstd.Encoder, raw []byte, i uint32) ([]byte, error) {
	off, n := m.ChunkRange(int(i))
	raw = raw[:n]
	if _, err := img.ReadAt(raw, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("multicast: read chunk %d: %w", i, err)
	}
	if err := m.VerifyChunk(int(i), raw); err != nil {
		return nil, fmt.Errorf("multicast: image does not match its manifest: %w", err)
	}
	return enc.EncodeAll(raw, nil), nil
}

// chunk returns chunk i compressed.
func (s *source) chunk(i uint32) ([]byte, error) {
	if b, ok := s.cache[i]; ok {
		return b, nil
	}
	b, err := compressChunk(s.img, s.m, s.enc, s.raw, i)
	if err != nil {
		return nil, err
	}
	s.put(i, b)
	return b, nil
}

// put caches compressed chunk i, evicting the oldest.
func (s *source) put(i uint32, b []byte) {
	s.clen[i] = uint32(len(b))
	if len(s.order) == sourceCache {
		delete(s.cache, s.order[0])
		s.order = s.order[1:]
	}
	s.cache[i] = b
	s.order = append(s.order, i)
}

// prefetchDepth is how many compressed chunks the first pass keeps ready:
// enough to hide compression behind sending, few enough to bound memory.
const prefetchDepth = 4

// compressed is a chunk compressed ahead of the send loop.
type compressed struct {
	chunk uint32
	data  []byte
	err   error
}

// prefetch compresses chunks in order on its own goroutine (its own
// encoder and buffer; the image is read with ReadAt) so the first pass
// overlaps compression with sending. It stops at the first error.
func prefetch(ctx context.Context, img io.ReaderAt, m *image.Manifest, chunks []uint32, out chan<- compressed) {
	defer close(out)
	enc, err := newEncoder()
	raw := make([]byte, m.ChunkSize)
	for _, i := range chunks {
		c := compressed{chunk: i, err: err}
		if err == nil {
			c.data, c.err = compressChunk(img, m, enc, raw, i)
		}
		select {
		case out <- c:
		case <-ctx.Done():
			return
		}
		if c.err != nil {
			return
		}
	}
}

// symbols cuts compressed chunk data into symbolSize shards for block b
// of layout l, zero-padding the last.
func symbols(data []byte, l layout, b, symbolSize int) [][]byte {
	start, k := l.block(b)
	out := make([][]byte, k)
	for i := range out {
		sh := make([]byte, symbolSize)
		if off := (start + i) * symbolSize; off < len(data) {
			copy(sh, data[off:])
		}
		out[i] = sh
	}
	return out
}

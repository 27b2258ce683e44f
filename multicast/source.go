package multicast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

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
// With a base, a chunk the base holds is compressed against it (a delta)
// unless forced plain.
type source struct {
	img   io.ReaderAt
	m     *image.Manifest
	enc   *zstd.Encoder
	base  *deltaBase // nil: every chunk plain
	plain chunkSet   // chunks sent plain from now on though the base holds them
	clen  []uint32   // compressed length per chunk (current encoding), 0 until first compressed
	cache map[uint32]encoded
	order []uint32 // cache keys, oldest first
	raw   []byte
	dict  []byte // base chunk buffer
}

// encoded is a compressed chunk and how it was compressed.
type encoded struct {
	data  []byte
	delta bool
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
	return &source{img: img, m: m, enc: enc, clen: make([]uint32, len(m.Chunks)), cache: map[uint32]encoded{},
		plain: make(chunkSet, (len(m.Chunks)+63)/64), raw: make([]byte, m.ChunkSize), dict: make([]byte, m.ChunkSize)}, nil
}

// compressChunk reads chunk i into raw, checks it against the manifest and
// compresses it: against its base chunk (read into dict) when base covers
// it and that chunk matches the base manifest, plain otherwise.
func compressChunk(img io.ReaderAt, m *image.Manifest, enc *zstd.Encoder, raw []byte, i uint32, base *deltaBase, dict []byte) (encoded, error) {
	off, n := m.ChunkRange(int(i))
	raw = raw[:n]
	if _, err := img.ReadAt(raw, off); err != nil && !errors.Is(err, io.EOF) {
		return encoded{}, fmt.Errorf("multicast: read chunk %d: %w", i, err)
	}
	if err := m.VerifyChunk(int(i), raw); err != nil {
		return encoded{}, fmt.Errorf("multicast: image does not match its manifest: %w", err)
	}
	if base.covers(i) {
		if d, ok := base.chunk(i, dict); ok {
			b, err := encodeDelta(raw, d, m.ChunkSize)
			return encoded{data: b, delta: true}, err
		}
	}
	return encoded{data: enc.EncodeAll(raw, nil)}, nil
}

// chunk returns chunk i compressed.
func (s *source) chunk(i uint32) (encoded, error) {
	if e, ok := s.cache[i]; ok {
		return e, nil
	}
	base := s.base
	if s.plain.has(i) {
		base = nil
	}
	e, err := compressChunk(s.img, s.m, s.enc, s.raw, i, base, s.dict)
	if err != nil {
		return encoded{}, err
	}
	s.put(i, e)
	return e, nil
}

// isDelta reports whether chunk i is (or would be) sent as a delta.
func (s *source) isDelta(i uint32) bool { return s.base.covers(i) && !s.plain.has(i) }

// forcePlain makes chunk i go plain from now on: a host asked for it whole
// after the first pass, because it lost it all, could not decode it
// against its base (a corrupt base chunk), or joined without the base.
func (s *source) forcePlain(i uint32) {
	s.plain.addRange(i, i+1)
	if _, ok := s.cache[i]; ok {
		delete(s.cache, i)
		s.order = slices.DeleteFunc(s.order, func(c uint32) bool { return c == i })
	}
}

// put caches compressed chunk i, evicting the oldest.
func (s *source) put(i uint32, e encoded) {
	s.clen[i] = uint32(len(e.data))
	if len(s.order) == sourceCache {
		delete(s.cache, s.order[0])
		s.order = s.order[1:]
	}
	s.cache[i] = e
	s.order = append(s.order, i)
}

// prefetchDepth is how many compressed chunks the first pass keeps ready:
// enough to hide compression behind sending, few enough to bound memory.
const prefetchDepth = 4

// compressed is a chunk compressed ahead of the send loop.
type compressed struct {
	chunk uint32
	encoded
	err error
}

// prefetch compresses chunks in order on its own goroutine (its own
// encoder and buffer; the image is read with ReadAt) so the first pass
// overlaps compression with sending. It stops at the first error.
func prefetch(ctx context.Context, img io.ReaderAt, m *image.Manifest, base *deltaBase, chunks []uint32, out chan<- compressed) {
	defer close(out)
	enc, err := newEncoder()
	raw, dict := make([]byte, m.ChunkSize), make([]byte, m.ChunkSize)
	for _, i := range chunks {
		c := compressed{chunk: i, err: err}
		if err == nil {
			c.encoded, c.err = compressChunk(img, m, enc, raw, i, base, dict)
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

package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sync/errgroup"
)

// minDeltaChunk is the smallest chunk size that gets delta frames: on
// chunks of a few blocks a delta saves too little to be worth a frame.
const minDeltaChunk = 64 << 10

// buildBase is what a build on a base reads of the previous build besides
// its layout: its image, manifest and pack, each optional. A chunk whose
// bytes equal the base image's chunk at the same index takes the base's
// hash and plain frame: it is neither hashed nor compressed again.
type buildBase struct {
	img  *os.File
	m    *Manifest
	pack *Pack
	id   ID // the base's release id, hashed once
}

// openBuildBase opens the image, manifest and pack of the base build at
// base (an image, manifest or layout path). What is missing or does not
// fit (another chunk size) is left out: the build then hashes and
// compresses those chunks itself.
func openBuildBase(base string, chunkSize uint32) *buildBase {
	img := strings.TrimSuffix(strings.TrimSuffix(base, LayoutSuffix), ".manifest")
	m, err := ReadManifestFile(img + ".manifest")
	if err != nil || m.ChunkSize != chunkSize {
		return nil
	}
	f, err := os.Open(img)
	if err != nil {
		return nil
	}
	bb := &buildBase{img: f, m: m, id: m.ID()}
	if p, err := OpenPack(img+PackSuffix, m); err == nil {
		bb.pack = p
	}
	return bb
}

func (bb *buildBase) close() {
	if bb == nil {
		return
	}
	bb.img.Close()
	if bb.pack != nil {
		bb.pack.Close()
	}
}

// chunk reads base chunk i into buf; ok is false when the base has no such
// non-zero chunk.
func (bb *buildBase) chunk(i int, buf []byte) ([]byte, bool) {
	if bb == nil || i >= len(bb.m.Chunks) || bb.m.Chunks[i].Zero {
		return nil, false
	}
	off, n := bb.m.ChunkRange(i)
	buf = buf[:n]
	if _, err := bb.img.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
		return nil, false
	}
	return buf, true
}

// processor turns the image's chunks into the manifest's hashes and the
// pack's frames, on all cores, as soon as the writer reports each chunk
// final, and the rest at the end.
type processor struct {
	f      *os.File
	m      *Manifest
	base   *buildBase
	pack   *packWriter
	work   chan int
	g      *errgroup.Group
	ctx    context.Context
	sent   []bool // submitted; touched by the submitting goroutine only
	closed bool
	stats  ProcessStats
	// same[i]: chunk i equals the base's (set by the workers, read after wait)
	same []bool
	// clean, when set, says chunk i of an image cloned from the base was
	// not written: it is the base's chunk, taken without reading it. It
	// is asked only once the chunk is final.
	clean func(i int) bool
	// frames recycles plain-frame buffers from the collector to the
	// workers: zstd grew a frame from an empty slice by doubling, 0.7 of
	// a full build's 13 CPU-s in growslice
	frames sync.Pool
}

// frameBuf returns an empty buffer that holds a chunk's plain frame
// without growing (zstd adds a few bytes to an incompressible chunk).
func (p *processor) frameBuf() []byte {
	if b, ok := p.frames.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, int(p.m.ChunkSize)+int(p.m.ChunkSize)/64+512)
}

// recycle hands a frame written to the pack back to the workers.
func (p *processor) recycle(b []byte) {
	if cap(b) > int(p.m.ChunkSize) {
		p.frames.Put(&b)
	}
}

// ProcessStats says what the build did per chunk.
type ProcessStats struct {
	Same   int   // equal to the base's chunk: hash and frame taken from it
	Packed int   // hashed and compressed
	Deltas int   // of those, with a delta frame against the base
	Zero   int   // all zeros
	Plain  int64 // bytes of plain frames written
	Delta  int64 // bytes of delta frames written
}

func startProcessor(ctx context.Context, f *os.File, m *Manifest, base *buildBase, pack *packWriter, workers int) *processor {
	g, ctx := errgroup.WithContext(ctx)
	p := &processor{f: f, m: m, base: base, pack: pack, work: make(chan int, workers), g: g, ctx: ctx,
		sent: make([]bool, len(m.Chunks)), same: make([]bool, len(m.Chunks))}
	results := make(chan chunkResult, workers)
	var wg errgroup.Group
	for range workers {
		wg.Go(func() error { return p.worker(results) })
	}
	g.Go(func() error { defer close(results); return wg.Wait() })
	g.Go(func() error { return p.collect(results) })
	return p
}

// chunkResult is a worker's output for one chunk.
type chunkResult struct {
	i            int
	same         bool
	plain, delta []byte
	zero         bool
}

// submit queues chunk i, which will not change any more.
func (p *processor) submit(i int) {
	if p.sent[i] {
		return
	}
	p.sent[i] = true
	select {
	case p.work <- i:
	case <-p.ctx.Done():
	}
}

// wait processes every chunk not yet submitted, stops the workers and
// returns the first error.
func (p *processor) wait() error {
	if !p.closed {
		for i := range p.m.Chunks {
			p.submit(i)
		}
	}
	return p.stop()
}

// stop ends the workers (without processing what is left) and waits.
func (p *processor) stop() error {
	if !p.closed {
		p.closed = true
		close(p.work)
	}
	return p.g.Wait()
}

func (p *processor) worker(out chan<- chunkResult) error {
	enc, err := newFrameEncoder()
	if err != nil {
		return err
	}
	defer enc.Close()
	de := NewDeltaEncoder()
	defer de.Close()
	raw, dict := make([]byte, p.m.ChunkSize), make([]byte, p.m.ChunkSize)
	for i := range p.work {
		r, err := p.chunk(i, enc, de, raw, dict)
		if err != nil {
			return err
		}
		select {
		case out <- r:
		case <-p.ctx.Done():
			return p.ctx.Err()
		}
	}
	return nil
}

// chunk reads chunk i and either finds it equal to the base's chunk (a
// byte comparison, far cheaper than SHA-256 and zstd) or hashes and
// compresses it, plain and, when the base has that chunk, as a delta. A
// chunk equal to the base's takes the base's frame, or, when the base has
// no pack (none, or one of an older version), is compressed here too.
func (p *processor) chunk(i int, enc *zstd.Encoder, de *DeltaEncoder, raw, dict []byte) (chunkResult, error) {
	off, n := p.m.ChunkRange(i)
	c := &p.m.Chunks[i]
	read := func() error {
		raw = raw[:n]
		if _, err := p.f.ReadAt(raw, off); err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("image: read chunk %d: %w", i, err)
		}
		return nil
	}
	same := func() (chunkResult, error) {
		c.Hash = p.base.m.Chunks[i].Hash
		if p.base.pack != nil {
			return chunkResult{i: i, same: true}, nil
		}
		return chunkResult{i: i, same: true, plain: enc.EncodeAll(raw, p.frameBuf())}, nil
	}
	if p.clean != nil && p.base != nil && i < len(p.base.m.Chunks) && p.clean(i) {
		if bc := p.base.m.Chunks[i]; bc.Zero {
			c.Zero, c.Hash = true, zeroHash(n)
			return chunkResult{i: i, zero: true}, nil
		}
		if p.base.pack == nil { // taken unread, but it has no frame to take: compress it
			if err := read(); err != nil {
				return chunkResult{}, err
			}
		}
		return same()
	}
	if isHole(p.f, off, n) {
		c.Zero, c.Hash = true, zeroHash(n)
		return chunkResult{i: i, zero: true}, nil
	}
	if err := read(); err != nil {
		return chunkResult{}, err
	}
	if IsZero(raw) {
		c.Zero, c.Hash = true, zeroHash(n)
		return chunkResult{i: i, zero: true}, nil
	}
	d, hasBase := p.base.chunk(i, dict)
	if hasBase && len(d) == n && bytes.Equal(d, raw) {
		return same()
	}
	c.Hash = sha256.Sum256(raw)
	r := chunkResult{i: i, plain: enc.EncodeAll(raw, p.frameBuf())}
	if hasBase && p.m.ChunkSize >= minDeltaChunk {
		delta, err := de.Encode(nil, raw, d, p.m.ChunkSize)
		if err != nil {
			return chunkResult{}, err
		}
		if len(delta) > 0 && len(delta) < len(r.plain) {
			r.delta = delta
		}
	}
	return r, nil
}

// collect writes the workers' frames into the pack, one at a time.
func (p *processor) collect(results <-chan chunkResult) error {
	for r := range results {
		switch {
		case r.zero:
			p.stats.Zero++
		case r.same && p.base.pack != nil:
			p.same[r.i] = true
			p.stats.Same++
			p.pack.reuse(r.i, p.base.pack, r.i)
		default:
			if r.same { // equal to the base, but the base has no pack: compressed by the worker
				p.same[r.i] = true
				p.stats.Same++
			} else {
				p.stats.Packed++
			}
			if r.delta != nil {
				p.stats.Deltas++
				p.stats.Delta += int64(len(r.delta))
			}
			p.stats.Plain += int64(len(r.plain))
			p.pack.put(r.i, r.plain, r.delta)
			p.recycle(r.plain)
		}
	}
	return nil
}

// newFrameEncoder makes the encoder of plain frames: the fastest level
// (the build compresses every chunk on every core; a stronger level costs
// more build time than it saves on a LAN) and no frame checksum (every
// decoded chunk is checked against its SHA-256 in the manifest, and the
// pack's xxh64 covers the frame on the sender's disk: a third hash would
// only cost the receivers time).
func newFrameEncoder() (*zstd.Encoder, error) {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(1),
		zstd.WithEncoderCRC(false))
	if err != nil {
		return nil, fmt.Errorf("image: zstd encoder: %w", err)
	}
	return enc, nil
}

// MakePack writes the pack of the image at img (described by m) beside
// it, compressing every chunk on all cores: for an image built elsewhere,
// or before packs existed. With base (a previous image with its manifest,
// and its pack if any, beside it) chunks equal to the base's take its
// frames and changed chunks get delta frames, as in a build. It checks
// every chunk against m on the way, so a pack is never made of the wrong
// image.
func MakePack(ctx context.Context, img string, m *Manifest, base string) (*ProcessStats, error) {
	f, err := os.Open(img)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != m.ImageSize {
		return nil, fmt.Errorf("%w: %s is not the image of release %s (size)", ErrChunkMismatch, img, m.ID())
	}
	pw, err := newPackWriter(img+PackSuffix, len(m.Chunks))
	if err != nil {
		return nil, err
	}
	defer pw.abort()
	var prev *buildBase
	if base != "" {
		prev = openBuildBase(base, m.ChunkSize)
		defer prev.close()
	}
	got := &Manifest{ImageSize: m.ImageSize, ChunkSize: m.ChunkSize, Chunks: make([]Chunk, len(m.Chunks))}
	proc := startProcessor(ctx, f, got, prev, pw, runtime.GOMAXPROCS(0))
	if err := proc.wait(); err != nil {
		return nil, fmt.Errorf("image: pack %s: %w", img, err)
	}
	var bad []int
	for i := range m.Chunks {
		if got.Chunks[i].Hash != m.Chunks[i].Hash {
			bad = append(bad, i)
		}
	}
	if len(bad) > 0 {
		return nil, &ChunkError{Path: img, Chunks: bad}
	}
	var baseID ID
	if prev != nil {
		baseID = prev.id
	}
	if err := pw.finish(m, m.ID(), baseID); err != nil {
		return nil, err
	}
	return &proc.stats, nil
}

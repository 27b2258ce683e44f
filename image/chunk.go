package image

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"runtime"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// zeroBuf is read-only zeros for hashing holes, written repeatedly.
var zeroBuf = make([]byte, 64<<10)

// writeZeros feeds n zero bytes to h.
func writeZeros(h hash.Hash, n int) {
	for n > 0 {
		k := min(n, len(zeroBuf))
		h.Write(zeroBuf[:k])
		n -= k
	}
}

// zeroHash returns the SHA-256 of n zero bytes.
func zeroHash(n int) (sum [sha256.Size]byte) {
	h := sha256.New()
	writeZeros(h, n)
	copy(sum[:], h.Sum(nil))
	return sum
}

// IsZero reports whether every byte of b is zero.
func IsZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// HashFile reads an image file and returns a manifest (unsigned, without
// FileCount, Created or Label) with per-chunk hashes and the whole-image
// hash. Chunks are hashed on all cores while one goroutine feeds the
// whole-image hash in order; holes (SEEK_DATA) are not read.
func HashFile(ctx context.Context, path string, chunkSize uint32) (*Manifest, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	m := &Manifest{ImageSize: fi.Size(), ChunkSize: chunkSize}
	if err := checkChunkSize(chunkSize); err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	if m.ImageSize == 0 {
		return nil, fmt.Errorf("image: %s is empty", path)
	}
	m.Chunks = make([]Chunk, ChunkCount(m.ImageSize, chunkSize))
	whole := sha256.New()
	if err := hashChunks(ctx, f, m, whole, nil); err != nil {
		return nil, fmt.Errorf("image: hash %s: %w", path, err)
	}
	copy(m.ImageHash[:], whole.Sum(nil))
	return m, nil
}

type chunkJob struct {
	i    int
	data []byte // nil: a hole, all zeros
	done chan struct{}
}

// hashChunks runs a reader, a pool of chunk hashers, and the in-order
// whole-image hasher; the window of chunks in flight bounds memory. Chunks
// marked in have are already hashed and only feed the whole-image hash.
func hashChunks(ctx context.Context, f *os.File, m *Manifest, whole hash.Hash, have []bool) error {
	zeroSum := zeroHash(int(m.ChunkSize))
	workers := runtime.GOMAXPROCS(0)
	window := 2 * workers
	free := make(chan []byte, window)
	for range window {
		free <- make([]byte, m.ChunkSize)
	}
	work := make(chan *chunkJob, window)
	order := make(chan *chunkJob, window)
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error { return readChunks(ctx, f, m, free, work, order) })
	for range workers {
		g.Go(func() error {
			for j := range work {
				if have != nil && have[j.i] {
					close(j.done)
					continue
				}
				if j.data == nil || IsZero(j.data) {
					m.Chunks[j.i].Zero = true
					m.Chunks[j.i].Hash = zeroSum
					if _, n := m.ChunkRange(j.i); n != int(m.ChunkSize) {
						m.Chunks[j.i].Hash = zeroHash(n)
					}
				} else {
					m.Chunks[j.i].Hash = sha256.Sum256(j.data)
				}
				close(j.done)
			}
			return nil
		})
	}
	g.Go(func() error {
		for j := range order {
			select {
			case <-j.done:
			case <-ctx.Done():
				return ctx.Err()
			}
			_, n := m.ChunkRange(j.i)
			if j.data == nil {
				writeZeros(whole, n)
				continue
			}
			whole.Write(j.data)
			free <- j.data[:cap(j.data)]
		}
		return nil
	})
	return g.Wait()
}

func readChunks(ctx context.Context, f *os.File, m *Manifest, free chan []byte, work, order chan *chunkJob) error {
	defer close(work)
	defer close(order)
	for i := range m.Chunks {
		off, n := m.ChunkRange(i)
		j := &chunkJob{i: i, done: make(chan struct{})}
		if !isHole(f, off, n) {
			var buf []byte
			select {
			case buf = <-free:
			case <-ctx.Done():
				return ctx.Err()
			}
			if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
				return err
			}
			j.data = buf[:n]
		}
		for _, ch := range []chan *chunkJob{order, work} {
			select {
			case ch <- j:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

// isHole reports whether [off, off+n) holds no data according to SEEK_DATA.
// On filesystems without SEEK_DATA it reports false and the range is read.
func isHole(f *os.File, off int64, n int) bool {
	next, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
	if errors.Is(err, unix.ENXIO) {
		return true // no data after off
	}
	return err == nil && next >= off+int64(n)
}

// earlyHasher hashes chunks of a file that is still being written, as soon
// as the writer reports them final, on its own goroutines.
type earlyHasher struct {
	f    *os.File
	m    *Manifest
	have []bool // written only by the workers, read after wait
	work chan int
	g    *errgroup.Group
	ctx  context.Context
	err  error
	done bool
}

func startEarlyHasher(ctx context.Context, f *os.File, m *Manifest, workers int) *earlyHasher {
	g, ctx := errgroup.WithContext(ctx)
	h := &earlyHasher{f: f, m: m, have: make([]bool, len(m.Chunks)), work: make(chan int, workers), g: g, ctx: ctx}
	for range workers {
		g.Go(h.worker)
	}
	return h
}

func (h *earlyHasher) worker() error {
	buf := make([]byte, h.m.ChunkSize)
	for i := range h.work {
		off, n := h.m.ChunkRange(i)
		if _, err := h.f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		c := &h.m.Chunks[i]
		c.Zero = IsZero(buf[:n])
		c.Hash = sha256.Sum256(buf[:n])
		h.have[i] = true
	}
	return nil
}

// submit queues chunk i, which will not change any more.
func (h *earlyHasher) submit(i int) {
	select {
	case h.work <- i:
	case <-h.ctx.Done():
	}
}

// wait stops the workers and returns which chunks they hashed. It may be
// called more than once.
func (h *earlyHasher) wait() ([]bool, error) {
	if !h.done {
		h.done = true
		close(h.work)
		h.err = h.g.Wait()
	}
	return h.have, h.err
}

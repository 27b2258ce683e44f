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

// zeroBuf is read-only zeros for hashing holes.
var zeroBuf = make([]byte, MaxChunkSize)

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
	if chunkSize < MinChunkSize || chunkSize > MaxChunkSize {
		return nil, fmt.Errorf("image: chunk size %d out of range [%d, %d]", chunkSize, MinChunkSize, MaxChunkSize)
	}
	if m.ImageSize == 0 {
		return nil, fmt.Errorf("image: %s is empty", path)
	}
	m.Chunks = make([]Chunk, ChunkCount(m.ImageSize, chunkSize))
	whole := sha256.New()
	if err := hashChunks(ctx, f, m, whole); err != nil {
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
// whole-image hasher; the window of chunks in flight bounds memory.
func hashChunks(ctx context.Context, f *os.File, m *Manifest, whole hash.Hash) error {
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
				if j.data == nil || IsZero(j.data) {
					m.Chunks[j.i].Zero = true
					_, n := m.ChunkRange(j.i)
					m.Chunks[j.i].Hash = sha256.Sum256(zeroBuf[:n])
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
				whole.Write(zeroBuf[:n])
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

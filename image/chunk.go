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
	"strings"
	"time"

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
// FileCount, Created or Label) with per-chunk hashes and the image digest.
// Chunks are read and hashed on all cores; holes (SEEK_DATA) are not read.
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
	if err := hashChunks(ctx, f, m); err != nil {
		return nil, fmt.Errorf("image: hash %s: %w", path, err)
	}
	m.ImageDigest = m.ComputeDigest()
	return m, nil
}

// maxReportedChunks bounds the chunks a verification error lists.
const maxReportedChunks = 8

// VerifyOptions tune VerifyFile.
type VerifyOptions struct {
	// BytesPerSec, when positive, bounds the read rate (one core only): a
	// background scrub that leaves the disk and the cores to the web
	// server. Zero reads at full speed on all cores.
	BytesPerSec int64
}

// VerifyFile checks the image file at path against m, every chunk (on all
// cores, unless rate-limited): its size, and each chunk's SHA-256. The
// error (matching ErrChunkMismatch) names the file and the chunks that
// differ.
func VerifyFile(ctx context.Context, path string, m *Manifest, opts ...VerifyOptions) error {
	var o VerifyOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("image: %w", err)
	}
	if fi.Size() != m.ImageSize {
		return fmt.Errorf("%w: %s has %d bytes, the manifest says %d", ErrChunkMismatch, path, fi.Size(), m.ImageSize)
	}
	got := &Manifest{ImageSize: m.ImageSize, ChunkSize: m.ChunkSize, Chunks: make([]Chunk, len(m.Chunks))}
	if err := hashChunksRate(ctx, f, got, o.BytesPerSec); err != nil {
		return fmt.Errorf("image: hash %s: %w", path, err)
	}
	var bad []int
	for i := range m.Chunks {
		if got.Chunks[i].Hash != m.Chunks[i].Hash {
			bad = append(bad, i)
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return &ChunkError{Path: path, Chunks: bad}
}

// ChunkError names the chunks of a file that do not match its manifest.
type ChunkError struct {
	Path   string
	Chunks []int // in order
}

func (e *ChunkError) Error() string {
	list := fmt.Sprint(e.Chunks[:min(len(e.Chunks), maxReportedChunks)])
	if len(e.Chunks) > maxReportedChunks {
		list = strings.TrimSuffix(list, "]") + " ...]"
	}
	return fmt.Sprintf("%v: %s: %d chunks differ: %s", ErrChunkMismatch, e.Path, len(e.Chunks), list)
}

func (e *ChunkError) Unwrap() error { return ErrChunkMismatch }

// hashChunks hashes the chunks of f into m on all cores, each worker
// reading its own chunks.
func hashChunks(ctx context.Context, f *os.File, m *Manifest) error {
	return hashChunksRate(ctx, f, m, 0)
}

// hashChunksRate is hashChunks at most rate bytes per second (on one
// core) when rate is positive.
func hashChunksRate(ctx context.Context, f *os.File, m *Manifest, rate int64) error {
	zeroSum := zeroHash(int(m.ChunkSize))
	if rate > 0 { // in the caller's goroutine (and thread: its I/O priority holds)
		return hashSlowly(ctx, f, m, rate, zeroSum)
	}
	workers := runtime.GOMAXPROCS(0)
	g, ctx := errgroup.WithContext(ctx)
	work := make(chan int)
	g.Go(func() error {
		defer close(work)
		for i := range m.Chunks {
			select {
			case work <- i:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	})
	for range workers {
		g.Go(func() error {
			buf := make([]byte, m.ChunkSize)
			for i := range work {
				off, n := m.ChunkRange(i)
				c := &m.Chunks[i]
				if isHole(f, off, n) {
					c.Zero, c.Hash = true, zeroSum
					if n != int(m.ChunkSize) {
						c.Hash = zeroHash(n)
					}
					continue
				}
				if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
					return err
				}
				c.Zero, c.Hash = IsZero(buf[:n]), sha256.Sum256(buf[:n])
			}
			return nil
		})
	}
	return g.Wait()
}

// hashSlowly hashes f's chunks in order, at most rate bytes per second.
func hashSlowly(ctx context.Context, f *os.File, m *Manifest, rate int64, zeroSum [sha256.Size]byte) error {
	buf := make([]byte, m.ChunkSize)
	start, read := time.Now(), int64(0)
	for i := range m.Chunks {
		if err := pace(ctx, start, read, rate); err != nil {
			return err
		}
		off, n := m.ChunkRange(i)
		c := &m.Chunks[i]
		if isHole(f, off, n) {
			c.Zero, c.Hash = true, zeroSum
			if n != int(m.ChunkSize) {
				c.Hash = zeroHash(n)
			}
			continue
		}
		if _, err := f.ReadAt(buf[:n], off); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		read += int64(n)
		c.Zero, c.Hash = IsZero(buf[:n]), sha256.Sum256(buf[:n])
	}
	return nil
}

// pace sleeps until reading done bytes since start keeps to rate.
func pace(ctx context.Context, start time.Time, done, rate int64) error {
	ahead := time.Until(start.Add(time.Duration(float64(done) / float64(rate) * float64(time.Second))))
	if ahead <= 0 {
		return nil
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(ahead):
		return nil
	}
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

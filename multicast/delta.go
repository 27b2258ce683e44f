package multicast

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
)

// baseFile is a receiver's copy of the announced base image.
type baseFile struct {
	f       *os.File
	size    int64
	advised sync.WaitGroup // willNeed's read-ahead, done before close
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
		b.advised.Wait()
		b.f.Close()
	}
}

// maxBaseAdvice bounds the base image read ahead at a session's start.
const maxBaseAdvice = 256 << 20

// willNeed starts reading the base's chunks at the indexes the image
// still lacks (lacks(i), asked now), in runs, up to maxBaseAdvice bytes:
// each delta chunk decodes against its base chunk, and a base image made
// by reflink has none of its pages in memory, so reading them one by one
// as the deltas arrive held each decoder ~10 ms a chunk. The fadvise
// WILLNEED calls (which can take a second to queue 257 MiB of reads) run
// on a goroutine of their own, so registration does not wait for them. A
// nil base does nothing.
func (b *baseFile) willNeed(m *image.Manifest, lacks func(int) bool) {
	if b == nil {
		return
	}
	var runs [][2]int64
	var start, end, total int64 // the run being gathered
	flush := func() {
		if end > start {
			runs = append(runs, [2]int64{start, end - start})
			total += end - start
		}
	}
	for i, c := range m.Chunks {
		if c.Zero || !lacks(i) {
			continue
		}
		off, n := m.ChunkRange(i)
		if off >= b.size || total+end-start >= maxBaseAdvice {
			break
		}
		if off != end {
			flush()
			start = off
		}
		end = min(off+int64(n), b.size)
	}
	flush()
	fd := int(b.f.Fd())
	b.advised.Go(func() {
		for _, r := range runs {
			_ = unix.Fadvise(fd, r[0], r[1], unix.FADV_WILLNEED)
		}
	})
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

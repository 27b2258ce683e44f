package multicast

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/loopcast/loopcast/image"
	"golang.org/x/sys/unix"
)

// LocalFunc finds a chunk the host already holds by its SHA-256: a file
// and the offset where the chunk's bytes may start. It is a hint only:
// the receiver checks what it copies against the manifest.
type LocalFunc func(hash [32]byte) (path string, off int64, ok bool)

// ChunkIndex maps chunk hashes to where the host holds them, e.g. in the
// images it keeps. Its Lookup is a LocalFunc.
type ChunkIndex map[[32]byte]ChunkLoc

// ChunkLoc is where a chunk's bytes are.
type ChunkLoc struct {
	Path string
	Off  int64
}

// Add indexes every non-zero chunk of the image at path described by m;
// a hash already indexed keeps its first location.
func (x ChunkIndex) Add(path string, m *image.Manifest) {
	for i, c := range m.Chunks {
		if _, dup := x[c.Hash]; c.Zero || dup {
			continue
		}
		off, _ := m.ChunkRange(i)
		x[c.Hash] = ChunkLoc{Path: path, Off: off}
	}
}

// Lookup is the index as a LocalFunc.
func (x ChunkIndex) Lookup(hash [32]byte) (string, int64, bool) {
	l, ok := x[hash]
	return l.Path, l.Off, ok
}

// maxLocalFiles bounds the source files open at once while filling.
const maxLocalFiles = 16

// fillLocal copies into the partial image every chunk it still lacks that
// local names, verifying each against the manifest; a chunk that does not
// verify is left to be received. It returns the chunks it filled.
func (st *store) fillLocal(ctx context.Context, local LocalFunc, logf func(string, ...any)) (int, error) {
	if local == nil {
		return 0, nil
	}
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	buf := make([]byte, st.m.ChunkSize)
	n := 0
	for i, c := range st.m.Chunks {
		if st.chunks[i].done {
			continue
		}
		if err := ctx.Err(); err != nil {
			return n, err
		}
		path, off, ok := local(c.Hash)
		if !ok {
			continue
		}
		src, err := openLocal(files, path)
		if err == nil {
			err = st.copyChunk(src, off, i, buf)
		}
		if err != nil {
			logf("local chunk %d from %s@%d not used: %v", i, path, off, err)
			continue
		}
		st.chunks[i].done = true
		st.remaining--
		n++
	}
	return n, nil
}

func openLocal(files map[string]*os.File, path string) (*os.File, error) {
	if f := files[path]; f != nil {
		return f, nil
	}
	if len(files) >= maxLocalFiles {
		for p, f := range files {
			f.Close()
			delete(files, p)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	files[path] = f
	return f, nil
}

// copyChunk copies chunk i from src at off into the partial image and
// checks it there. copy_file_range lets the kernel share extents (reflink
// on btrfs and XFS) or copy without a trip through user space; where it
// cannot, the chunk is read, checked, and only then written.
func (st *store) copyChunk(src *os.File, off int64, i int, buf []byte) error {
	dst, n := st.m.ChunkRange(i)
	raw := buf[:n]
	if err := copyRange(src, off, st.file, dst, n); err != nil {
		if got, err := src.ReadAt(raw, off); got < n {
			return fmt.Errorf("read %d of %d bytes: %w", got, n, cmp.Or(err, io.ErrUnexpectedEOF))
		}
		if err := st.m.VerifyChunk(i, raw); err != nil {
			return err
		}
		_, err := st.file.WriteAt(raw, dst)
		return err
	}
	if _, err := st.file.ReadAt(raw, dst); err != nil {
		return err
	}
	return st.m.VerifyChunk(i, raw)
}

// copyRange copies n bytes with copy_file_range(2); any failure (old
// kernel, other filesystem, short source) is returned for the caller's
// fallback.
func copyRange(src *os.File, soff int64, dst *os.File, doff int64, n int) error {
	for n > 0 {
		c, err := unix.CopyFileRange(int(src.Fd()), &soff, int(dst.Fd()), &doff, n, 0)
		if err != nil {
			return err
		}
		if c == 0 {
			return fmt.Errorf("copy_file_range: source ends early")
		}
		n -= c
	}
	return nil
}

// held lists the chunks the host holds, for REGISTER: all-zero chunks
// count as held (no host is sent them), which joins runs across them. A
// host holding no non-zero chunk lists nothing; one whose set needs more
// than max ranges lists its largest runs only.
func (st *store) held(max int) []Range {
	var rs []Range
	some := false
	for i := range st.chunks {
		if st.chunks[i].done {
			some = some || !st.m.Chunks[i].Zero
			rs = appendChunk(rs, uint32(i))
		}
	}
	if !some {
		return nil
	}
	if len(rs) > max {
		slices.SortStableFunc(rs, func(a, b Range) int { return cmp.Compare(b.Count, a.Count) })
		rs = rs[:max]
		slices.SortFunc(rs, func(a, b Range) int { return cmp.Compare(a.First, b.First) })
	}
	return rs
}

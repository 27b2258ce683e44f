package multicast

import (
	"context"
	"fmt"
	"os"

	"github.com/loopcast/loopcast/image"
	"golang.org/x/sys/unix"
)

// LocalFunc finds a chunk the host already holds by its SHA-256: a file
// and the offset where the chunk's bytes start. The host vouches for what
// it names: chunks of images it verified against their manifests (an
// agent's kept releases, scrubbed in the background). The receiver copies
// them without reading them back.
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

// fillLocal fills the partial image with every chunk it still lacks that
// local names, in runs of consecutive chunks held consecutively in one
// file: each run is one reflink (FICLONERANGE: XFS, btrfs; the chunks then
// cost no data blocks and no I/O) or, where the filesystem cannot, one
// copy_file_range (the kernel copies, nothing passes through here). The
// chunks are trusted as local vouches for them: not read back, not hashed.
// A run that fails to copy is left to be received. It returns the chunks
// filled.
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
	n := 0
	for _, run := range st.localRuns(local) {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		src, err := openLocal(files, run.path)
		if err == nil {
			err = st.copyRun(src, run)
		}
		if err != nil {
			logf("local chunks %d-%d from %s@%d not used: %v", run.first, run.first+run.count-1, run.path, run.off, err)
			continue
		}
		for i := run.first; i < run.first+run.count; i++ {
			st.chunks[i].done = true
			st.remaining--
		}
		n += run.count
	}
	return n, nil
}

// localRun is count chunks from first on, held from off in path.
type localRun struct {
	path         string
	off          int64
	first, count int
}

// localRuns groups the chunks local holds into runs.
func (st *store) localRuns(local LocalFunc) []localRun {
	var runs []localRun
	for i, c := range st.m.Chunks {
		if st.chunks[i].done {
			continue
		}
		path, off, ok := local(c.Hash)
		if !ok {
			continue
		}
		if k := len(runs) - 1; k >= 0 {
			r := &runs[k]
			if r.path == path && r.first+r.count == i && r.off+int64(r.count)*int64(st.m.ChunkSize) == off {
				r.count++
				continue
			}
		}
		runs = append(runs, localRun{path: path, off: off, first: i, count: 1})
	}
	return runs
}

// copyRun copies a run into the partial image: a reflink when the
// filesystem shares extents, else copy_file_range.
func (st *store) copyRun(src *os.File, run localRun) error {
	dst, _ := st.m.ChunkRange(run.first)
	lastOff, lastN := st.m.ChunkRange(run.first + run.count - 1)
	n := lastOff + int64(lastN) - dst
	err := unix.IoctlFileCloneRange(int(st.file.Fd()), &unix.FileCloneRange{
		Src_fd: int64(src.Fd()), Src_offset: uint64(run.off), Src_length: uint64(n), Dest_offset: uint64(dst)})
	if err == nil {
		st.reflinked += int64(n)
		return nil
	}
	if err := copyRange(src, run.off, st.file, dst, n); err != nil {
		return err
	}
	startWriteback(st.file, dst, n)
	return nil
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

// copyRange copies n bytes with copy_file_range(2), which copies in the
// kernel (and shares extents where the filesystem can).
func copyRange(src *os.File, soff int64, dst *os.File, doff int64, n int64) error {
	for n > 0 {
		c, err := unix.CopyFileRange(int(src.Fd()), &soff, int(dst.Fd()), &doff, int(min(n, 1<<30)), 0)
		if err != nil {
			return fmt.Errorf("copy_file_range: %w", err)
		}
		if c == 0 {
			return fmt.Errorf("copy_file_range: source ends early")
		}
		n -= int64(c)
	}
	return nil
}

// held lists the chunks the host holds, for REGISTER: all-zero chunks
// count as held (no host is sent them), which joins runs across them. A
// host holding no non-zero chunk lists nothing.
func (st *store) held() []Range {
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
	return rs
}

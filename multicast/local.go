package multicast

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
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
// local names (see FillLocal). It returns the chunks filled.
func (st *store) fillLocal(ctx context.Context, local LocalFunc, log *slog.Logger) (int, error) {
	if local == nil {
		return 0, nil
	}
	n := 0
	refl, err := FillLocal(ctx, st.file, st.m, func(i int) bool { return !st.chunks[i].done }, local,
		func(i int) {
			st.chunks[i].done = true
			st.remaining--
			n++
		}, log)
	st.reflinked += refl
	return n, err
}

// FillLocal copies into dst, an image file described by m, every chunk
// that want(i) asks for and local names, in runs of consecutive chunks
// held consecutively in one file: each run is one reflink (FICLONERANGE:
// XFS, btrfs; the chunks then cost no data blocks and no I/O) or, where
// the filesystem cannot, one copy_file_range (the kernel copies, nothing
// passes through here). The chunks are trusted as local vouches for them:
// not read back, not hashed. A run that fails to copy is logged and left
// out (at Debug, to log; nil discards). done(i) hears of each chunk
// copied; it returns the bytes reflinked.
func FillLocal(ctx context.Context, dst *os.File, m *image.Manifest, want func(int) bool, local LocalFunc,
	done func(int), log *slog.Logger) (int64, error) {
	log = orDiscard(log)
	files := map[string]*os.File{}
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	var reflinked int64
	for _, run := range localRuns(m, want, local) {
		if err := ctx.Err(); err != nil {
			return reflinked, err
		}
		src, err := openLocal(files, run.path)
		var refl bool
		if err == nil {
			refl, err = copyRun(dst, m, src, run)
		}
		if err != nil {
			log.Debug("multicast: local chunks not used", "first", run.first, "last", run.first+run.count-1, "path", run.path, "offset", run.off, "err", err)
			continue
		}
		for i := run.first; i < run.first+run.count; i++ {
			done(i)
		}
		if refl {
			reflinked += run.bytes(m)
		}
	}
	return reflinked, nil
}

// prefillBase shares with the base image, by reflink and in runs, every
// non-zero chunk the image still lacks that the base covers at the same
// offset, and marks them prefilled (not done: what the session sends
// still replaces them, and only what is verified counts). A hotfix's
// changed chunks come as deltas against exactly those bytes, so a decoded
// delta then writes only its changed blocks: one FICLONERANGE per run at
// registration instead of one per delta chunk while the deltas arrive,
// each taking both files' locks and waiting for their writeback (on one
// XFS shared by three hosts, 30–200 ms a call). Filesystems without
// reflink (ext4) refuse the first run; nothing is prefilled then.
func (st *store) prefillBase() {
	b := st.base
	if b == nil {
		return
	}
	var start, end int64 // the run being gathered
	var first, count int
	flush := func() bool {
		if count == 0 {
			return true
		}
		if err := cloneRange(b.f, start, st.file, start, end-start); err != nil {
			return false
		}
		for i := first; i < first+count; i++ {
			st.chunks[i].prefilled = true
		}
		return true
	}
	for i, c := range st.m.Chunks {
		off, n := st.m.ChunkRange(i)
		if c.Zero || st.chunks[i].done || off+int64(n) > b.size || off%image.DeltaBlock != 0 || int64(n)%image.DeltaBlock != 0 {
			continue
		}
		if count > 0 && off == end {
			end, count = off+int64(n), count+1
			continue
		}
		if !flush() {
			return
		}
		start, end, first, count = off, off+int64(n), i, 1
	}
	flush()
}

// localRun is count chunks from first on, held from off in path.
type localRun struct {
	path         string
	off          int64
	first, count int
}

// bytes is the run's length in the image.
func (r localRun) bytes(m *image.Manifest) int64 {
	dst, _ := m.ChunkRange(r.first)
	lastOff, lastN := m.ChunkRange(r.first + r.count - 1)
	return lastOff + int64(lastN) - dst
}

// localRuns groups the wanted chunks local holds into runs.
func localRuns(m *image.Manifest, want func(int) bool, local LocalFunc) []localRun {
	var runs []localRun
	for i, c := range m.Chunks {
		if c.Zero || !want(i) {
			continue
		}
		path, off, ok := local(c.Hash)
		if !ok {
			continue
		}
		if k := len(runs) - 1; k >= 0 {
			r := &runs[k]
			if r.path == path && r.first+r.count == i && r.off+int64(r.count)*int64(m.ChunkSize) == off {
				r.count++
				continue
			}
		}
		runs = append(runs, localRun{path: path, off: off, first: i, count: 1})
	}
	return runs
}

// copyRun copies a run into dst: a reflink when the filesystem shares
// extents (it reports true), else copy_file_range.
func copyRun(dst *os.File, m *image.Manifest, src *os.File, run localRun) (bool, error) {
	doff, _ := m.ChunkRange(run.first)
	n := run.bytes(m)
	if cloneRange(src, run.off, dst, doff, n) == nil {
		return true, nil
	}
	if err := copyRange(src, run.off, dst, doff, n); err != nil {
		return false, err
	}
	startWriteback(dst, doff, n)
	return false, nil
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

// cloneRange shares n bytes of src from soff into dst at doff
// (FICLONERANGE: XFS, btrfs); other filesystems refuse it.
func cloneRange(src *os.File, soff int64, dst *os.File, doff, n int64) error {
	return unix.IoctlFileCloneRange(int(dst.Fd()), &unix.FileCloneRange{
		Src_fd: int64(src.Fd()), Src_offset: uint64(soff), Src_length: uint64(n), Dest_offset: uint64(doff)})
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
func (st *store) held() []wire.Range {
	var rs []wire.Range
	some := false
	for i := range st.chunks {
		if st.chunks[i].done {
			some = some || !st.m.Chunks[i].Zero
			rs = wire.AppendChunk(rs, uint32(i))
		}
	}
	if !some {
		return nil
	}
	return rs
}

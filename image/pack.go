package image

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"

	"github.com/cespare/xxhash/v2"
	"github.com/loopcast/loopcast/internal/atomicfile"
	"golang.org/x/sys/unix"
)

// PackSuffix names an image's pack beside it: app.img.pack.
const PackSuffix = ".pack"

// A pack holds an image's chunks compressed, made once at build on every
// core, so that sending reads symbols and compresses nothing. Each
// non-zero chunk has a plain zstd frame and, when the build had a base,
// may have a delta frame (delta.go: the 4 KiB blocks in which the chunk
// differs from the base image's chunk at the same index). Frames start on 4 KiB boundaries, so a pack
// built on a base shares the unchanged frames with the base's pack by
// reflink where the filesystem can (copy_file_range elsewhere). Layout:
//
//	frames, each padded to 4 KiB
//	index: per chunk  plain off u64, plain len u32, plain xxh64 u64,
//	                  delta off u64, delta len u32, delta xxh64 u64
//	                  (lengths 0: no such frame; all-zero chunks have none)
//	trailer (96 bytes):
//	  0 magic "LCPK"     4 version u16 (2)   6 flags u16 (0)
//	  8 chunk count u32 12 chunk size u32   16 index offset u64
//	 24 release id [8]  32 base release id [8] (zero: no deltas)
//	 40 image digest [32]                   72 index xxh64 u64
//	 80 reserved [16]
//
// A pack is sender-side state, never sent as a file: the xxh64 checksums
// catch a pack corrupted on the sender's disk (the receivers would refuse
// what it decodes to, but the sender would keep sending it), and the
// trailer binds the pack to one manifest.
const (
	packVersion    = 2 // 2: block delta frames (1: zstd with the whole base chunk as dictionary)
	packAlign      = 4096
	packEntryLen   = 40
	packTrailerLen = 96
)

var packMagic = [4]byte{'L', 'C', 'P', 'K'}

// ErrPack: a pack is missing, malformed, corrupt, or not the pack of the
// manifest it is opened with.
var ErrPack = errors.New("image: bad pack")

// frame locates one compressed frame in a pack.
type frame struct {
	off int64
	len uint32
	sum uint64 // xxh64 of the frame
}

// packEntry is one chunk's frames.
type packEntry struct {
	plain, delta frame
}

// Pack reads the compressed chunks of one image. Its methods are safe for
// concurrent use.
type Pack struct {
	f       *os.File
	path    string
	entries []packEntry
	// BaseID is the release the delta frames are against; zero when none.
	BaseID ID
}

// OpenPack opens the pack at path and checks that it is the pack of m: the
// same release id, image digest and chunk count. It reads only the
// trailer and the index.
func OpenPack(path string, m *Manifest) (*Pack, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("image: %w", err)
	}
	p := &Pack{f: f, path: path}
	if err := p.readIndex(m); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w %s: %w", ErrPack, path, err)
	}
	return p, nil
}

func (p *Pack) readIndex(m *Manifest) error {
	fi, err := p.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() < packTrailerLen {
		return fmt.Errorf("%d bytes, too short", fi.Size())
	}
	t := make([]byte, packTrailerLen)
	if _, err := p.f.ReadAt(t, fi.Size()-packTrailerLen); err != nil {
		return err
	}
	if !bytes.Equal(t[:4], packMagic[:]) {
		return fmt.Errorf("bad magic %q", t[:4])
	}
	if v := binary.BigEndian.Uint16(t[4:]); v != packVersion {
		return fmt.Errorf("pack version %d, this loopcast reads %d: build the image again", v, packVersion)
	}
	count, cs := binary.BigEndian.Uint32(t[8:]), binary.BigEndian.Uint32(t[12:])
	idxOff := int64(binary.BigEndian.Uint64(t[16:]))
	id, base := ID(t[24:32]), ID(t[32:40])
	if mid := m.ID(); id != mid || !bytes.Equal(t[40:72], m.ImageDigest[:]) ||
		int(count) != len(m.Chunks) || cs != m.ChunkSize {
		return fmt.Errorf("it is the pack of release %v (%d chunks), not of %s", id, count, mid)
	}
	p.BaseID = base
	idxLen := int64(count) * packEntryLen
	if idxOff < 0 || idxOff+idxLen != fi.Size()-packTrailerLen {
		return fmt.Errorf("index at %d does not fit %d bytes", idxOff, fi.Size())
	}
	idx := make([]byte, idxLen)
	if _, err := p.f.ReadAt(idx, idxOff); err != nil {
		return err
	}
	if xxhash.Sum64(idx) != binary.BigEndian.Uint64(t[72:]) {
		return errors.New("index checksum mismatch")
	}
	p.entries = make([]packEntry, count)
	for i := range p.entries {
		e := idx[i*packEntryLen:]
		p.entries[i] = packEntry{
			plain: frame{int64(binary.BigEndian.Uint64(e)), binary.BigEndian.Uint32(e[8:]), binary.BigEndian.Uint64(e[12:])},
			delta: frame{int64(binary.BigEndian.Uint64(e[20:])), binary.BigEndian.Uint32(e[28:]), binary.BigEndian.Uint64(e[32:])},
		}
		if err := p.checkEntry(i, m, idxOff); err != nil {
			return err
		}
	}
	return nil
}

// checkEntry bounds entry i: frames inside the data area, present exactly
// for non-zero chunks.
func (p *Pack) checkEntry(i int, m *Manifest, dataEnd int64) error {
	e := p.entries[i]
	for _, fr := range []frame{e.plain, e.delta} {
		if fr.len > 0 && (fr.off < 0 || fr.off+int64(fr.len) > dataEnd || fr.off%packAlign != 0) {
			return fmt.Errorf("chunk %d: frame at %d+%d outside the data", i, fr.off, fr.len)
		}
	}
	if (e.plain.len == 0) != m.Chunks[i].Zero {
		return fmt.Errorf("chunk %d: plain frame of %d bytes for a chunk zero=%v", i, e.plain.len, m.Chunks[i].Zero)
	}
	if e.delta.len > 0 && p.BaseID.IsZero() {
		return fmt.Errorf("chunk %d: a delta frame, but no base", i)
	}
	return nil
}

// Plain returns chunk i's plain zstd frame, read into buf when it fits.
func (p *Pack) Plain(i int, buf []byte) ([]byte, error) {
	return p.read(i, p.entries[i].plain, buf)
}

// Delta returns chunk i's delta frame against BaseID, if the pack has one.
func (p *Pack) Delta(i int, buf []byte) ([]byte, bool, error) {
	fr := p.entries[i].delta
	if fr.len == 0 {
		return nil, false, nil
	}
	b, err := p.read(i, fr, buf)
	return b, err == nil, err
}

// WillNeed tells the kernel that chunk i's frame (its delta frame if
// delta) will be read soon (fadvise WILLNEED: the read starts now, in the
// background), so the read finds it in memory: a sender advises the
// frames of the chunks it sends next.
func (p *Pack) WillNeed(i int, delta bool) {
	fr := p.entries[i].plain
	if delta {
		fr = p.entries[i].delta
	}
	if fr.len > 0 {
		_ = unix.Fadvise(int(p.f.Fd()), fr.off, int64(fr.len), unix.FADV_WILLNEED)
	}
}

// HasDelta reports whether chunk i has a delta frame.
func (p *Pack) HasDelta(i int) bool { return p.entries[i].delta.len > 0 }

// FrameLens returns the lengths of chunk i's plain and delta frames (0:
// none).
func (p *Pack) FrameLens(i int) (plain, delta uint32) {
	return p.entries[i].plain.len, p.entries[i].delta.len
}

func (p *Pack) read(i int, fr frame, buf []byte) ([]byte, error) {
	if fr.len == 0 {
		return nil, fmt.Errorf("%w %s: chunk %d is all zeros, it has no frame", ErrPack, p.path, i)
	}
	if cap(buf) < int(fr.len) {
		buf = make([]byte, fr.len)
	}
	buf = buf[:fr.len]
	if _, err := p.f.ReadAt(buf, fr.off); err != nil {
		return nil, fmt.Errorf("%w %s: chunk %d: %w", ErrPack, p.path, i, err)
	}
	if xxhash.Sum64(buf) != fr.sum {
		return nil, fmt.Errorf("%w %s: chunk %d at %d is corrupt (checksum): build the image again", ErrPack, p.path, i, fr.off)
	}
	return buf, nil
}

// Sizes returns the bytes of the plain frames and of the delta frames.
func (p *Pack) Sizes() (plain, delta int64) {
	for _, e := range p.entries {
		plain += int64(e.plain.len)
		delta += int64(e.delta.len)
	}
	return plain, delta
}

// Close closes the pack file.
func (p *Pack) Close() error { return p.f.Close() }

// packWriter writes a pack: frames appended in any order by one goroutine
// at a time (the caller serialises), the index and trailer at the end. It
// keeps the first error.
type packWriter struct {
	mu      sync.Mutex
	f       *atomicfile.File
	off     int64
	entries []packEntry
	err     error
}

func newPackWriter(path string, chunks int) (*packWriter, error) {
	f, err := atomicfile.Create(path, 0o644)
	if err != nil {
		return nil, err
	}
	return &packWriter{f: f, entries: make([]packEntry, chunks)}, nil
}

// put appends chunk i's frames (delta may be nil).
func (w *packWriter) put(i int, plain, delta []byte) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.entries[i].plain = w.append(plain)
	if delta != nil {
		w.entries[i].delta = w.append(delta)
	}
}

func (w *packWriter) append(b []byte) frame {
	if w.err != nil || len(b) == 0 {
		return frame{}
	}
	fr := frame{off: w.off, len: uint32(len(b)), sum: xxhash.Sum64(b)}
	if _, err := w.f.WriteAt(b, w.off); err != nil {
		w.err = fmt.Errorf("image: write pack: %w", err)
	}
	w.off = alignUp(w.off + int64(len(b)))
	return fr
}

// reuse copies chunk i's plain frame from src's chunk j (the same bytes
// in the base image), in the kernel: a reflink where the filesystem
// shares extents, else copy_file_range. Its checksum comes along.
func (w *packWriter) reuse(i int, src *Pack, j int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	fr := src.entries[j].plain
	if w.err != nil || fr.len == 0 {
		return
	}
	if err := copyFrame(src.f, fr.off, w.f.File, w.off, int(fr.len)); err != nil {
		w.err = fmt.Errorf("image: copy chunk %d from %s: %w", j, src.path, err)
		return
	}
	w.entries[i].plain = frame{off: w.off, len: fr.len, sum: fr.sum}
	w.off = alignUp(w.off + int64(fr.len))
}

// copyFrame copies n bytes with copy_file_range, falling back to a read
// and a write.
func copyFrame(src *os.File, soff int64, dst *os.File, doff int64, n int) error {
	for n > 0 {
		c, err := unix.CopyFileRange(int(src.Fd()), &soff, int(dst.Fd()), &doff, n, 0)
		if err != nil || c == 0 {
			buf := make([]byte, n)
			if _, rerr := src.ReadAt(buf, soff); rerr != nil && !errors.Is(rerr, io.EOF) {
				return rerr
			}
			_, werr := dst.WriteAt(buf, doff)
			return werr
		}
		n -= c
	}
	return nil
}

// finish writes the index and trailer and publishes the pack, for m (its
// digest final; id is its release id) and deltas against release base
// (the zero id: none).
func (w *packWriter) finish(m *Manifest, id, base ID) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	idx := make([]byte, 0, len(w.entries)*packEntryLen)
	for _, e := range w.entries {
		for _, fr := range []frame{e.plain, e.delta} {
			idx = binary.BigEndian.AppendUint64(idx, uint64(fr.off))
			idx = binary.BigEndian.AppendUint32(idx, fr.len)
			idx = binary.BigEndian.AppendUint64(idx, fr.sum)
		}
	}
	t := make([]byte, 0, packTrailerLen)
	t = append(t, packMagic[:]...)
	t = binary.BigEndian.AppendUint16(t, packVersion)
	t = binary.BigEndian.AppendUint16(t, 0)
	t = binary.BigEndian.AppendUint32(t, uint32(len(w.entries)))
	t = binary.BigEndian.AppendUint32(t, m.ChunkSize)
	t = binary.BigEndian.AppendUint64(t, uint64(w.off))
	t = append(t, id[:]...)
	t = append(t, base[:]...)
	t = append(t, m.ImageDigest[:]...)
	t = binary.BigEndian.AppendUint64(t, xxhash.Sum64(idx))
	t = append(t, make([]byte, packTrailerLen-len(t))...)
	if _, err := w.f.WriteAt(append(idx, t...), w.off); err != nil {
		return fmt.Errorf("image: write pack: %w", err)
	}
	return w.f.Commit()
}

// abort removes a pack not finished.
func (w *packWriter) abort() { w.f.Abort() }

func alignUp(n int64) int64 { return (n + packAlign - 1) &^ (packAlign - 1) }

// OpenOrMakePack opens the pack beside img for m, first making it
// (MakePack, plain frames only) when there is none or it is not m's, e.g.
// for an image built by an older loopcast or another tool. made reports
// that it did.
func OpenOrMakePack(ctx context.Context, img string, m *Manifest) (p *Pack, made bool, err error) {
	p, err = OpenPack(img+PackSuffix, m)
	if err == nil {
		return p, false, nil
	}
	if _, err := MakePack(ctx, img, m, ""); err != nil {
		return nil, false, err
	}
	p, err = OpenPack(img+PackSuffix, m)
	return p, true, err
}

// Check reads every frame and checks its checksum; it returns how many
// frames it checked.
func (p *Pack) Check() (int, error) {
	n := 0
	var buf []byte
	for i, e := range p.entries {
		for _, fr := range []frame{e.plain, e.delta} {
			if fr.len == 0 {
				continue
			}
			b, err := p.read(i, fr, buf)
			if err != nil {
				return n, err
			}
			buf = b
			n++
		}
	}
	return n, nil
}

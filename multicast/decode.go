package multicast

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// maxDecoders caps the goroutines decoding chunks: each holds about three
// chunks of buffers (compressed, decoded, one block), and once deltas
// arrive three more (the base chunk, the delta's dictionary and changed
// blocks) and a delta decoder's window of two chunks, so four keep a
// receiver well inside its memory budget while using the cores a web
// server can spare.
const maxDecoders = 4

// decodeJob is a chunk whose every block holds enough symbols.
type decodeJob struct {
	chunk  int
	clen   uint32
	delta  bool         // decode against the base image's chunk at this index
	blocks []blockState // read-only while the chunk is pending
	mem    []byte       // its symbols, when in memory (read-only while pending); nil: in the spool
	// cipher opens the frame of an encrypted session (nil: plain)
	cipher  *contentCipher
	release image.ID
	// frames, a relay's, keeps the verified plain frame; frameOnly: the
	// chunk is held already, only its frame is wanted
	frames    *frameStore
	frameOnly bool
	prefilled bool // the image holds the base's chunk here already (store.prefillBase)
}

// decodeResult is a decoder's verdict on one chunk.
type decodeResult struct {
	chunk  int
	err    error
	framed bool // its frame went to the frame store
}

// decoder turns a chunk's spooled symbols into verified image bytes. It
// touches only its own buffers and the two files (positional I/O), so
// several run beside the session loop, which keeps answering the sender.
type decoder struct {
	m          *image.Manifest
	symSize, k int
	slots      int64
	file       *os.File
	spool      *os.File
	coder      coder
	zd         *zstd.Decoder
	comp, raw  []byte
	opened     []byte // an encrypted session's frame, opened
	base       *baseFile
	dict       []byte              // base chunk buffer, allocated at the first delta
	dd         *image.DeltaDecoder // made at the first delta
	wb         *writeback
}

func newDecoder(st *store, wb *writeback) (*decoder, error) {
	zd, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxMemory(uint64(st.m.ChunkSize)),
		zstd.WithDecoderMaxWindow(max(zstd.MinWindowSize, uint64(st.m.ChunkSize))))
	if err != nil {
		return nil, fmt.Errorf("multicast: zstd decoder: %w", err)
	}
	return &decoder{m: st.m, symSize: st.symSize, k: st.k, slots: st.slots, file: st.file, spool: st.spool, zd: zd,
		raw: make([]byte, 0, st.m.ChunkSize), base: st.base, wb: wb}, nil
}

// decoders returns how many decoders to run.
func decoders() int { return min(maxDecoders, runtime.GOMAXPROCS(0)) }

// run decodes jobs until the channel closes or ctx ends.
func (d *decoder) run(ctx context.Context, jobs <-chan decodeJob, results chan<- decodeResult) error {
	defer d.zd.Close()
	defer func() {
		if d.dd != nil {
			d.dd.Close()
		}
	}()
	for j := range jobs {
		r := decodeResult{chunk: j.chunk, err: d.chunk(j)}
		r.framed = r.err == nil && j.frames != nil && !j.delta
		select {
		case results <- r:
		case <-ctx.Done():
			return nil
		}
	}
	return nil
}

// chunk decodes, decompresses and verifies a chunk and only then writes it
// into the image; it frees the chunk's spool range either way.
func (d *decoder) chunk(j decodeJob) error {
	if j.mem == nil {
		defer d.punch(j.chunk)
	}
	raw, changed, err := d.decode(j)
	if err == nil {
		err = d.m.VerifyChunk(j.chunk, raw)
	}
	if err != nil {
		return fmt.Errorf("%w: chunk %d: %w", errChunkRetry, j.chunk, err)
	}
	if j.frames != nil && !j.delta {
		if err := j.frames.put(j.chunk, d.comp[:j.clen]); err != nil {
			return err
		}
	}
	if j.frameOnly {
		return nil
	}
	off, _ := d.m.ChunkRange(j.chunk)
	if changed != nil && j.prefilled && d.writeChanged(raw, changed, off) {
		return nil
	}
	if _, err := d.file.WriteAt(raw, off); err != nil {
		return fmt.Errorf("multicast: write chunk %d: %w", j.chunk, err)
	}
	d.wb.add(off, int64(len(raw)))
	return nil
}

// writeChanged writes a delta chunk over its base chunk, which prefillBase
// shared into the image by reflink at registration: only the blocks the
// frame's map says differ (image.DeltaMap), in runs, so a hotfix that
// changes a few files of a chunk writes a few blocks, not the chunk. It
// reports false on a failed write: the caller then writes the chunk whole.
// The bytes of the image are raw's either way (raw is verified, and its
// unchanged blocks are the base's, which the image holds there).
func (d *decoder) writeChanged(raw, changed []byte, off int64) bool {
	set := func(b int) bool { return changed[b/8]&(1<<(b%8)) != 0 }
	nb := (len(raw) + image.DeltaBlock - 1) / image.DeltaBlock
	for b := 0; b < nb; {
		if !set(b) {
			b++
			continue
		}
		e := b + 1 // a run of changed blocks: one write
		for e < nb && set(e) {
			e++
		}
		s, end := b*image.DeltaBlock, min(e*image.DeltaBlock, len(raw))
		if _, err := d.file.WriteAt(raw[s:end], off+int64(s)); err != nil {
			return false // the caller writes the chunk whole, and reports what fails
		}
		d.wb.add(off+int64(s), int64(end-s))
		b = e
	}
	return true
}

// decode reassembles the compressed bytes from the spool, rebuilding lost
// data symbols from parity, and decompresses them; for a delta it also
// returns the frame's changed-block map.
func (d *decoder) decode(j decodeJob) (raw, changed []byte, err error) {
	l := newLayout(int(j.clen), d.symSize, d.k)
	d.comp = d.comp[:0]
	for b := range j.blocks {
		shards, err := d.readBlock(j, l, b)
		if err != nil {
			return nil, nil, err
		}
		for _, sh := range shards {
			d.comp = append(d.comp, sh...)
		}
	}
	raw, changed, err = d.decompress(j)
	if err != nil {
		return nil, nil, fmt.Errorf("decompress: %w", err)
	}
	return raw, changed, nil
}

// decompress inflates a chunk's compressed bytes, a delta against the
// base image's chunk at its index. Either way the caller checks the
// result against the manifest: the base is never trusted. For a delta it
// also returns the frame's changed-block map.
func (d *decoder) decompress(j decodeJob) (raw, changed []byte, err error) {
	frame := d.comp[:j.clen]
	if j.cipher != nil {
		if frame, err = j.cipher.open(d.opened[:0], frame, uint32(j.chunk), j.delta, j.release); err != nil {
			return nil, nil, err
		}
		d.opened = frame
	}
	if !j.delta {
		raw, err = d.zd.DecodeAll(frame, d.raw[:0])
		return raw, nil, err
	}
	if d.base == nil {
		return nil, nil, errors.New("delta chunk without a base image")
	}
	if d.dict == nil {
		if d.dd, err = image.NewDeltaDecoder(d.m.ChunkSize); err != nil {
			return nil, nil, err
		}
		d.dict = make([]byte, d.m.ChunkSize)
	}
	base, err := d.base.chunk(j.chunk, d.m.ChunkSize, d.dict)
	if err != nil {
		return nil, nil, err
	}
	if raw, err = d.dd.Decode(frame, base, d.raw[:0]); err != nil {
		return nil, nil, err
	}
	return raw, image.DeltaMap(frame), nil
}

// readBlock returns block b's k data shards.
func (d *decoder) readBlock(j decodeJob, l layout, b int) ([][]byte, error) {
	start, k := l.block(b)
	var buf []byte
	if j.mem != nil {
		buf = j.mem[start*d.symSize : (start+k)*d.symSize]
	} else {
		buf = make([]byte, k*d.symSize)
		off := (int64(j.chunk)*d.slots + int64(start)) * int64(d.symSize)
		if _, err := d.spool.ReadAt(buf, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("read spool: %w", err)
		}
	}
	shards := make([][]byte, wire.Shards(k))
	needRS := false
	for slot, idx := range j.blocks[b].slots {
		shards[idx] = buf[slot*d.symSize : (slot+1)*d.symSize]
		needRS = needRS || int(idx) >= k
	}
	if needRS {
		if err := d.coder.reconstruct(k, shards); err != nil {
			return nil, fmt.Errorf("block %d: %w", b, err)
		}
	}
	return shards[:k], nil
}

// startWriteback starts writing a range of f to disk without waiting
// (sync_file_range WRITE), so the fsync before the image is renamed into
// place has little left to flush: staging after the last chunk stays short
// however large the image. Errors are for the fsync to report.
func startWriteback(f *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(f.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}

// writeback starts the disk writes of what the decoders wrote, off their
// path: sync_file_range WRITE blocks while the device's queue is full or
// the filesystem allocates (17 ms a chunk on XFS over a loop device: a
// hotfix's 257 delta chunks held each decoder ~4 s in it), and nothing
// needs to wait for it, the fsync before the image is published does.
type writeback struct {
	ranges chan [2]int64
	done   chan struct{}
}

// writebackQueue bounds the ranges waiting: when it is full the range is
// left to the fsync.
const writebackQueue = 256

func startWritebacks(f *os.File) *writeback {
	w := &writeback{ranges: make(chan [2]int64, writebackQueue), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		for r := range w.ranges {
			startWriteback(f, r[0], r[1])
		}
	}()
	return w
}

// add asks for the range's writeback, without waiting.
func (w *writeback) add(off, n int64) {
	select {
	case w.ranges <- [2]int64{off, n}:
	default:
	}
}

// stop ends the writeback goroutine once it has asked for every range
// queued.
func (w *writeback) stop() {
	close(w.ranges)
	<-w.done
}

// punch frees chunk i's spool slots.
func (d *decoder) punch(i int) {
	n := d.slots * int64(d.symSize)
	_ = unix.Fallocate(int(d.spool.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(i)*n, n)
}

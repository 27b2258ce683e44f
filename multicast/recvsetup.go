package multicast

import (
	"crypto/sha256"
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// manifestBuf assembles the manifest from fragments, in memory bounded by
// the announced size (itself at most MaxManifestSize).
type manifestBuf struct {
	b    []byte
	have []uint64 // bitmap of received bytes
	got  int
}

// add stores a fragment; it reports whether the manifest is whole.
func (mb *manifestBuf) add(total uint32, f *wire.ManifestFrag) bool {
	if mb.b == nil {
		mb.b = make([]byte, total)
		mb.have = make([]uint64, (total+63)/64)
	}
	if f.Total != uint32(len(mb.b)) {
		return false
	}
	for i := range f.Data {
		p := int(f.Offset) + i
		if mb.have[p/64]&(1<<(p%64)) == 0 {
			mb.have[p/64] |= 1 << (p % 64)
			mb.b[p] = f.Data[i]
			mb.got++
		}
	}
	return mb.got == len(mb.b)
}

func (r *receiver) onManifest(f *wire.ManifestFrag, now time.Time) error {
	if r.phase != recvFetching || f.Total != r.ann.ManifestSize {
		return nil
	}
	got := r.man.got
	whole := r.man.add(r.ann.ManifestSize, f)
	if r.man.got > got {
		r.join.progress = now
	}
	if !whole {
		return nil
	}
	m, err := r.checkManifest(r.man.b)
	if err != nil {
		r.refuse(err)
		return nil
	}
	if err := r.relayJoin(r.man.b); err != nil {
		return err
	}
	if err := r.open(m, now); err != nil {
		return err
	}
	r.register(now)
	return nil
}

// checkManifest verifies the assembled manifest against the announce and
// the trusted keys; a receiver joins only a session it trusts.
func (r *receiver) checkManifest(b []byte) (*image.Manifest, error) {
	if sha256.Sum256(b) != r.ann.ManifestDigest {
		return nil, fmt.Errorf("%w: session %08x: descriptor does not match its announced digest", ErrUntrusted, r.res.Session)
	}
	mb, lens, err := wire.ParseDescriptor(b)
	if err != nil {
		return nil, fmt.Errorf("%w: session %08x: %w", ErrUntrusted, r.res.Session, err)
	}
	m, err := image.ParseManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("%w: session %08x: %w", ErrUntrusted, r.res.Session, err)
	}
	if r.lens, err = lens(m); err != nil {
		return nil, fmt.Errorf("%w: session %08x: %w", ErrUntrusted, r.res.Session, err)
	}
	id := m.ID() // hashes the manifest body: once
	if err := m.Verify(r.opts.Trusted); err != nil {
		if !r.opts.Insecure {
			return nil, fmt.Errorf("%w: session %08x release %s: %w", ErrUntrusted, r.res.Session, id, err)
		}
		r.log.Debug("multicast: insecure: accepting a release", sessionAttr(r.res.Session), "release", id, "err", err)
	}
	a := r.ann
	if id != a.ReleaseID || uint64(m.ImageSize) != a.ImageSize || m.ChunkSize != a.ChunkSize {
		return nil, fmt.Errorf("%w: session %08x: announce does not match manifest %s", ErrUntrusted, r.res.Session, a.ReleaseID)
	}
	if r.opts.Accept != nil {
		if err := r.opts.Accept(m); err != nil {
			return nil, fmt.Errorf("%w: session %08x release %s not wanted: %w", ErrUntrusted, r.res.Session, a.ReleaseID, err)
		}
	}
	if r.opts.Room != nil {
		if err := r.opts.Room(m.ImageSize + r.spoolBound() + r.relayBound()); err != nil {
			return nil, fmt.Errorf("%w: session %08x release %s: %w", ErrUntrusted, r.res.Session, a.ReleaseID, err)
		}
	}
	return m, nil
}

// spoolBound is the most disk the spool can take in a session: every
// chunk's symbols at its longest frame, were all of them to wait there at
// once. The signed descriptor gives the lengths, so a forged DATA flood
// cannot make it larger.
func (r *receiver) spoolBound() int64 {
	var n int64
	for _, l := range r.lens {
		if f := max(l[0], l[1]); f > 0 {
			n += int64(newLayout(int(f), int(r.ann.SymbolSize), int(r.ann.BlockSymbols)).symbols) * int64(r.ann.SymbolSize)
		}
	}
	return n
}

// open prepares the partial image (resuming one left by a killed
// receiver) and a fresh spool beside the output.
func (r *receiver) open(m *image.Manifest, now time.Time) error {
	r.partial = fmt.Sprintf("%s.%s.partial", r.opts.Out, r.ann.ReleaseID)
	f, err := os.OpenFile(r.partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("multicast: %w", err)
	}
	spool, err := os.OpenFile(r.opts.Out+".spool", os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		f.Close()
		return fmt.Errorf("multicast: %w", err)
	}
	r.st = newStore(m, r.ann, f, spool)
	r.on(evManifest, now)
	r.st.releaseID = r.ann.ReleaseID
	r.st.lens = r.lens
	r.progressAt = now
	switch {
	case r.relaying(): // relayed frames are plain: a relay takes no delta
		r.st.frames, r.st.want = r.opts.relay.frames, make(chunkSet, (len(m.Chunks)+63)/64)
	case !r.ann.BaseID.IsZero():
		r.st.base = openBase(r.opts.BaseImage, r.ann.BaseID)
	}
	r.res.Manifest, r.res.ReleaseID = m, r.ann.ReleaseID // checked equal to m.ID() on acceptance
	if err := r.prepare(m); err != nil {
		return err
	}
	r.st.base.willNeed(m, func(i int) bool { return !r.st.chunks[i].done })
	if r.st.remaining == 0 { // all resumed, or all zero
		return r.finish(time.Now())
	}
	return r.startDecoders()
}

// prepare sizes the partial file, allocating blocks for the chunks that
// will be written and leaving all-zero chunks as holes.
func (r *receiver) prepare(m *image.Manifest) error {
	fi, err := r.st.file.Stat()
	if err != nil {
		return fmt.Errorf("multicast: %w", err)
	}
	if fi.Size() == m.ImageSize {
		r.res.Resumed = r.st.resume()
		r.log.Debug("multicast: resuming a partial image", sessionAttr(r.res.Session), "path", r.partial, "verified_chunks", r.res.Resumed)
	}
	if err := r.st.file.Truncate(m.ImageSize); err != nil {
		return fmt.Errorf("multicast: size %s: %w", r.partial, err)
	}
	if r.res.Reused, err = r.st.fillLocal(r.ctx, r.opts.Local, r.log); err != nil {
		return err
	}
	r.res.Reflinked = r.st.reflinked
	if r.opts.Local != nil {
		r.log.Debug("multicast: chunks reused from local images", sessionAttr(r.res.Session), "chunks", r.res.Reused)
	}
	r.have = r.st.held()
	r.st.prefillBase()
	r.heard = time.Now() // a long local fill is not the sender's silence
	fd := int(r.st.file.Fd())
	for i, c := range m.Chunks {
		off, n := m.ChunkRange(i)
		switch {
		case c.Zero: // a resumed file may hold zeros here: make it a hole
			unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, int64(n))
		case !r.st.chunks[i].done && !r.st.chunks[i].prefilled:
			unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, off, int64(n))
		}
	}
	return nil
}

func (r *receiver) closeFiles() {
	if r.st == nil {
		return
	}
	r.st.file.Close()
	r.st.spool.Close()
	r.st.base.close()
	os.Remove(r.opts.Out + ".spool")
}

// discard removes the partial image after a failure.
func (r *receiver) discard() {
	if r.partial != "" && !r.phase.inPlace() {
		os.Remove(r.partial)
	}
}

// seqStats estimates loss from gaps in the sender's sequence numbers.
// Only the sender's signed packets mark where its counter stood (see
// seqMark): a span between two marks is what the sender sent, the packets
// seen with numbers in it what got through. DATA, REPAIR and MANIFEST
// carry no tag, so their numbers are only counted, never taken as marks:
// a forged symbol with a sequence number far ahead adds no loss (at most
// it hides some, as a flood could).
type seqStats struct {
	mark uint32 // the last mark (0: none yet)
	got  uint32 // packets seen since the mark, numbered after it
	// the spans closed since the last read, and the packets seen in them
	// (a packet numbered before the mark that arrives after it, such as
	// one sent behind an ANNOUNCE that jumped the queue, counts here)
	span, spanGot uint32
}

// markKind is what a packet's sequence number tells seqStats.
type markKind uint8

const (
	seqCounts markKind = iota // a packet, counted
	seqStarts                 // the first mark, if there is none yet
	seqMarks                  // a mark
)

// saw counts a packet of the session.
func (q *seqStats) saw(seq uint32, k markKind) {
	switch {
	case seq == 0:
		return // unicast replies are not sequenced
	case q.mark != 0 && int32(seq-q.mark) <= 0:
		q.spanGot++ // of a closed span (or a copy of the mark)
	case k == seqCounts || k == seqStarts && q.mark != 0:
		q.got++
	default:
		if q.mark != 0 {
			q.span += seq - q.mark
			q.spanGot += q.got + 1
		}
		q.mark, q.got = seq, 0
	}
}

// lossPermille returns the loss in the spans closed since the last call
// and starts afresh (the current mark stays).
func (q *seqStats) lossPermille() uint16 {
	l := q.peekPermille()
	q.span, q.spanGot = 0, 0
	return l
}

// peekPermille returns the loss since the last lossPermille.
func (q *seqStats) peekPermille() uint16 {
	if q.span == 0 || q.spanGot >= q.span {
		return 0
	}
	return uint16(1000 - uint64(q.spanGot)*1000/uint64(q.span))
}

// nacks packs what the host lacks into at most MaxNackParts packets.
func (r *receiver) nacks(round uint32) []*wire.Nack {
	chunks, blocks := r.st.needs()
	loss := r.seq.lossPermille()
	var out []*wire.Nack
	for len(out) < wire.MaxNackParts && (len(out) == 0 || len(chunks) > 0 || len(blocks) > 0) {
		n := &wire.Nack{Host: r.opts.HostID, Round: round, Loss: loss}
		nc, nb := min(len(chunks), wire.MaxNackRanges), min(len(blocks), wire.MaxNackBlocks)
		n.Chunks, n.Blocks = chunks[:nc], blocks[:nb]
		chunks, blocks = chunks[nc:], blocks[nb:]
		out = append(out, n)
	}
	for i, n := range out {
		n.Part, n.Parts = uint8(i), uint8(len(out))
	}
	return out
}

package multicast

import (
	"fmt"
	"os"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// frameStore keeps a relay's copy of each chunk's plain frame as the
// sender sent it, in a sparse file of one slot per chunk (the most a
// frame can take), written once by the decoder that verified the chunk
// and read by the relay's own session on its subnet. Positional I/O
// only: both sides use it at once.
type frameStore struct {
	f    *os.File
	slot int64
	lens [][2]uint32 // per chunk: plain and delta frame lengths, from the signed descriptor
}

// openFrames makes an empty frame store at path for a descriptor's frame
// lengths.
func openFrames(path string, chunkSize uint32, lens [][2]uint32) (*frameStore, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("multicast: frame store: %w", err)
	}
	return &frameStore{f: f, slot: int64(wire.MaxCompressed(chunkSize)), lens: lens}, nil
}

// put keeps chunk i's verified plain frame.
func (fs *frameStore) put(i int, frame []byte) error {
	if len(frame) != int(fs.lens[i][0]) {
		return fmt.Errorf("multicast: frame store: chunk %d frame of %d bytes, the descriptor says %d", i, len(frame), fs.lens[i][0])
	}
	if _, err := fs.f.WriteAt(frame, int64(i)*fs.slot); err != nil {
		return fmt.Errorf("multicast: frame store: chunk %d: %w", i, err)
	}
	return nil
}

// read returns chunk i's frame, in buf if it is large enough.
func (fs *frameStore) read(i int, buf []byte) ([]byte, error) {
	n := int(fs.lens[i][0])
	if cap(buf) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := fs.f.ReadAt(buf, int64(i)*fs.slot); err != nil {
		return nil, fmt.Errorf("multicast: frame store: chunk %d: %w", i, err)
	}
	return buf, nil
}

// framesBound is the most disk a frame store can take: every plain
// frame of the descriptor's lengths.
func framesBound(lens [][2]uint32) int64 {
	var n int64
	for _, l := range lens {
		n += int64(l[0])
	}
	return n
}

// close closes and removes the store.
func (fs *frameStore) close() {
	if fs == nil {
		return
	}
	fs.f.Close()
	os.Remove(fs.f.Name())
}

// relayFrames serves a relay's session from its frame store: the
// sender's plain frames, no deltas.
type relayFrames struct{ fs *frameStore }

func (r *relayFrames) Plain(i int, buf []byte) ([]byte, error) { return r.fs.read(i, buf) }
func (r *relayFrames) Delta(int, []byte) ([]byte, bool, error) { return nil, false, nil }
func (r *relayFrames) HasDelta(int) bool                       { return false }
func (r *relayFrames) FrameLens(i int) (plain, delta uint32)   { return r.fs.lens[i][0], 0 }

package multicast

import (
	"fmt"
	"slices"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// sourceCache is how many compressed chunks the sender keeps: repair jobs
// come in chunk order, so a few cover a round's jobs for one chunk while
// the sender's memory stays bounded whatever the image size.
const sourceCache = 8

// ChunkSource is where the sender takes each chunk's compressed bytes: an
// [image.Pack], made once at build on every core, so sending compresses
// and hashes nothing. Plain returns chunk i's plain zstd frame; Delta its
// frame against the source's base image (ok false when it has none).
type ChunkSource interface {
	Plain(i int, buf []byte) ([]byte, error)
	Delta(i int, buf []byte) ([]byte, bool, error)
	HasDelta(i int) bool
	wire.FrameLens
}

var _ ChunkSource = (*image.Pack)(nil)

// source serves the session's chunks from its ChunkSource, as delta frames
// when every host holds the base (deltas set) and the chunk has one and
// was not forced plain.
type source struct {
	pack    ChunkSource
	m       *image.Manifest
	deltas  bool
	plain   chunkSet // chunks sent plain from now on though they have a delta
	clen    []uint32 // compressed length per chunk (current encoding), 0 until first read
	cache   map[uint32]encoded
	order   []uint32       // cache keys, oldest first
	cipher  *contentCipher // an encrypted session's: frames are sealed as they are read
	release image.ID
	advised chunkSet // chunks whose frames were advised (readAhead)
}

// frameAdviser is a ChunkSource that can be told which frames are read
// next (an [image.Pack]: fadvise WILLNEED).
type frameAdviser interface {
	WillNeed(i int, delta bool)
}

// readAheadJobs is how many first-pass jobs ahead of the one being sent
// have their frames advised to the source: the reads then overlap the
// sending instead of stalling the session loop one by one (a pack on a
// disk busy with the hosts' writes took 5–10 ms a frame: 257 delta
// frames of a few KB held the first pass of a hotfix for 1.3–1.5 s).
const readAheadJobs = 32

// readAhead advises the frames of the whole-chunk jobs among the next
// readAheadJobs, once each.
func (s *source) readAhead(jobs []repairJob) {
	a, ok := s.pack.(frameAdviser)
	if !ok {
		return
	}
	for _, j := range jobs[:min(len(jobs), readAheadJobs)] {
		if !j.whole || s.advised.has(j.chunk) {
			continue
		}
		s.advised.addRange(j.chunk, j.chunk+1)
		if _, cached := s.cache[j.chunk]; !cached {
			a.WillNeed(int(j.chunk), s.isDelta(j.chunk))
		}
	}
}

// encoded is a compressed chunk and how it was compressed.
type encoded struct {
	data  []byte
	delta bool
}

func newSource(pack ChunkSource, m *image.Manifest) *source {
	return &source{pack: pack, m: m, clen: make([]uint32, len(m.Chunks)), cache: map[uint32]encoded{},
		plain: make(chunkSet, (len(m.Chunks)+63)/64), advised: make(chunkSet, (len(m.Chunks)+63)/64)}
}

// chunk returns chunk i compressed.
func (s *source) chunk(i uint32) (encoded, error) {
	if e, ok := s.cache[i]; ok {
		return e, nil
	}
	if int(i) >= len(s.m.Chunks) || s.m.Chunks[i].Zero {
		return encoded{}, fmt.Errorf("multicast: chunk %d is not a chunk to send", i)
	}
	var e encoded
	var err error
	if s.isDelta(i) {
		e.data, e.delta, err = s.pack.Delta(int(i), nil)
	} else {
		e.data, err = s.pack.Plain(int(i), nil)
	}
	if err != nil {
		return encoded{}, fmt.Errorf("multicast: %w", err)
	}
	if s.cipher != nil && len(e.data) > 0 {
		e.data = s.cipher.seal(e.data, i, e.delta, s.release)
	}
	if len(e.data) == 0 || len(e.data) > wire.MaxCompressed(s.m.ChunkSize) {
		return encoded{}, fmt.Errorf("multicast: chunk %d: a frame of %d bytes", i, len(e.data))
	}
	s.put(i, e)
	return e, nil
}

// isDelta reports whether chunk i is (or would be) sent as a delta.
func (s *source) isDelta(i uint32) bool {
	return s.deltas && s.pack.HasDelta(int(i)) && !s.plain.has(i)
}

// forcePlain makes chunk i go plain from now on: a host asked for it whole
// after the first pass, because it lost it all, could not decode it
// against its base (a corrupt base chunk), or joined without the base.
func (s *source) forcePlain(i uint32) {
	s.plain.addRange(i, i+1)
	if _, ok := s.cache[i]; ok {
		delete(s.cache, i)
		s.order = slices.DeleteFunc(s.order, func(c uint32) bool { return c == i })
	}
}

// put caches compressed chunk i, evicting the oldest.
func (s *source) put(i uint32, e encoded) {
	s.clen[i] = uint32(len(e.data))
	if len(s.order) == sourceCache {
		delete(s.cache, s.order[0])
		s.order = s.order[1:]
	}
	s.cache[i] = e
	s.order = append(s.order, i)
}

// symbols cuts compressed chunk data into symbolSize shards for block b
// of layout l: views of data (read-only, as data is), but for the last,
// which is zero-padded into a copy. Copying every shard was a chunk's
// worth of allocation per block sent (the benchmark's largest after the
// packets themselves).
func symbols(data []byte, l layout, b, symbolSize int) [][]byte {
	start, k := l.block(b)
	out := make([][]byte, k)
	for i := range out {
		off := (start + i) * symbolSize
		if off+symbolSize <= len(data) {
			out[i] = data[off : off+symbolSize : off+symbolSize]
			continue
		}
		sh := make([]byte, symbolSize)
		if off < len(data) {
			copy(sh, data[off:])
		}
		out[i] = sh
	}
	return out
}

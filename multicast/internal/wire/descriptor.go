package wire

import (
	"encoding/binary"
	"fmt"

	"github.com/loopcast/loopcast/image"
)

// The session descriptor is what MANIFEST fragments carry and what the
// signed ANNOUNCE names by size and SHA-256: the signed manifest and the
// length of each chunk's frames, so that a receiver sizes every chunk's
// state from signed data, never from an unsigned DATA packet.
//
//	0 manifest length u32   4 manifest
//	  then per chunk: plain frame length u32, delta frame length u32
//	  (0: none; an all-zero chunk has neither)
const frameLensLen = 8

// FrameLens is the part of ChunkSource a descriptor needs: the length of
// chunk i's plain frame and of its delta frame (0: none).
type FrameLens interface {
	FrameLens(i int) (plain, delta uint32)
}

// AppendDescriptor appends the session descriptor of m, with the frame
// lengths lens gives.
func AppendDescriptor(b []byte, m *image.Manifest, lens FrameLens) ([]byte, error) {
	start := len(b)
	b = binary.BigEndian.AppendUint32(b, 0)
	b, err := m.AppendBinary(b)
	if err != nil {
		return b, fmt.Errorf("multicast: encode manifest: %w", err)
	}
	binary.BigEndian.PutUint32(b[start:], uint32(len(b)-start-4))
	for i := range m.Chunks {
		p, d := lens.FrameLens(i)
		b = binary.BigEndian.AppendUint32(b, p)
		b = binary.BigEndian.AppendUint32(b, d)
	}
	if len(b)-start > MaxManifestSize {
		return b, fmt.Errorf("multicast: session descriptor of %d bytes, more than %d", len(b)-start, MaxManifestSize)
	}
	return b, nil
}

// ParseDescriptor splits a descriptor into the manifest bytes and the
// frame lengths, checked against the manifest's chunk count and size.
func ParseDescriptor(b []byte) (manifest []byte, lens func(m *image.Manifest) ([][2]uint32, error), err error) {
	if len(b) < 4 {
		return nil, nil, fmt.Errorf("%w: session descriptor of %d bytes", ErrMalformed, len(b))
	}
	n := binary.BigEndian.Uint32(b)
	if uint64(n) > uint64(len(b)-4) {
		return nil, nil, fmt.Errorf("%w: descriptor names a manifest of %d bytes in %d", ErrMalformed, n, len(b)-4)
	}
	manifest, table := b[4:4+n], b[4+n:]
	return manifest, func(m *image.Manifest) ([][2]uint32, error) {
		if len(table) != frameLensLen*len(m.Chunks) {
			return nil, fmt.Errorf("%w: descriptor has %d bytes of frame lengths for %d chunks", ErrMalformed, len(table), len(m.Chunks))
		}
		out := make([][2]uint32, len(m.Chunks))
		limit := uint32(MaxCompressed(m.ChunkSize))
		for i := range out {
			p, d := binary.BigEndian.Uint32(table[8*i:]), binary.BigEndian.Uint32(table[8*i+4:])
			if m.Chunks[i].Zero != (p == 0) || p > limit || d > limit || p == 0 && d != 0 {
				return nil, fmt.Errorf("%w: chunk %d frame lengths %d, %d", ErrMalformed, i, p, d)
			}
			out[i] = [2]uint32{p, d}
		}
		return out, nil
	}, nil
}

// MaxCompressed bounds a chunk's compressed size: zstd stores
// incompressible data raw, adding a few bytes per 128 KiB block.
func MaxCompressed(chunkSize uint32) int { return int(chunkSize) + int(chunkSize)/256 + 1024 }

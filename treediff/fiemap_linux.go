package treediff

import (
	"encoding/binary"
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The FS_IOC_FIEMAP ioctl (linux/fiemap.h), which golang.org/x/sys does
// not wrap: a 32-byte header followed by 56-byte extents.
const (
	fsIocFiemap  = 0xC020660B // _IOWR('f', 11, struct fiemap)
	fiemapHdrLen = 32
	fiemapExtLen = 56
	fiemapBatch  = 64 // extents asked for per call
	extentLast   = 0x1
	extentUnsure = 0x2 | 0x4 | 0x8 | 0x100 | 0x200 | 0x400 | 0x800 // unknown, delalloc, encoded, not aligned, inline, tail, unwritten
)

// extent is a run of a file's bytes on the filesystem's device: for a
// loop-mounted image, at the same offsets in the image file.
type extent struct {
	logical, physical, length uint64
}

// extents returns the extents of f's data, or ok false when the
// filesystem does not map them plainly (no FIEMAP, inline or unknown
// placement): then only the bytes can tell.
func extents(f *os.File) (out []extent, ok bool, err error) {
	buf := make([]byte, fiemapHdrLen+fiemapBatch*fiemapExtLen)
	var start uint64
	for {
		clear(buf)
		binary.NativeEndian.PutUint64(buf[0:], start)
		binary.NativeEndian.PutUint64(buf[8:], ^uint64(0)-start)
		binary.NativeEndian.PutUint32(buf[16:], 0)
		binary.NativeEndian.PutUint32(buf[24:], fiemapBatch)
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), fsIocFiemap, uintptr(unsafe.Pointer(&buf[0])))
		if errno == unix.EOPNOTSUPP || errno == unix.ENOTTY {
			return nil, false, nil
		}
		if errno != 0 {
			return nil, false, fmt.Errorf("treediff: FIEMAP %s: %w", f.Name(), errno)
		}
		n := int(binary.NativeEndian.Uint32(buf[20:]))
		if n == 0 {
			return out, true, nil
		}
		last := false
		for i := range n {
			e := buf[fiemapHdrLen+i*fiemapExtLen:]
			x := extent{
				logical:  binary.NativeEndian.Uint64(e[0:]),
				physical: binary.NativeEndian.Uint64(e[8:]),
				length:   binary.NativeEndian.Uint64(e[16:]),
			}
			flags := binary.NativeEndian.Uint32(e[40:])
			if flags&extentUnsure != 0 {
				return nil, false, nil
			}
			out = append(out, x)
			start = x.logical + x.length
			last = flags&extentLast != 0
		}
		if last {
			return out, true, nil
		}
	}
}

package synth

import (
	"io/fs"
	"syscall"
	"unsafe"
)

// From <fcntl.h>; the syscall package does not export them on Linux.
const (
	atFDCWD           = -100
	atSymlinkNoFollow = 0x100
)

// lutimes sets the atime and mtime of path without following a symlink:
// utimensat(AT_FDCWD, path, ts, AT_SYMLINK_NOFOLLOW), which the os package
// does not offer.
func lutimes(path string, sec int64) error {
	p, err := syscall.BytePtrFromString(path)
	if err != nil {
		return err
	}
	ts := [2]syscall.Timespec{{Sec: sec}, {Sec: sec}}
	fd := atFDCWD
	_, _, errno := syscall.Syscall6(syscall.SYS_UTIMENSAT, uintptr(fd), uintptr(unsafe.Pointer(p)),
		uintptr(unsafe.Pointer(&ts[0])), atSymlinkNoFollow, 0, 0)
	if errno != 0 {
		return errno
	}
	return nil
}

// linkCount is the number of hard links of fi's inode.
func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

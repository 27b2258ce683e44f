package synth

import (
	"io/fs"
	"syscall"

	"golang.org/x/sys/unix"
)

// lutimes sets the atime and mtime of path to sec without following a
// symlink, which the os package does not offer.
func lutimes(path string, sec int64) error {
	ts := []unix.Timespec{{Sec: sec}, {Sec: sec}}
	return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
}

// linkCount is the number of hard links of fi's inode.
func linkCount(fi fs.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return uint64(st.Nlink)
	}
	return 1
}

package loopmount

import (
	"errors"
	"fmt"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// DefaultFSType is the filesystem loopcast images carry.
const DefaultFSType = "ext2"

// Options tune Mount.
type Options struct {
	FSType string // filesystem type; DefaultFSType when empty
	NoExec bool   // add noexec: nothing in the image may be executed directly
}

// Mount is a read-only loop mount of an image.
type Mount struct {
	Image  string // backing file
	Dir    string // mount point
	Device string // /dev/loopN
}

// mountFlags are always set: an image is content, never devices or setuid
// programs, and is never written.
const mountFlags = unix.MS_RDONLY | unix.MS_NODEV | unix.MS_NOSUID

// MountImage attaches image to a free loop device and mounts it read-only
// at dir. The returned mount is the device's only user, so unmounting it
// frees the device; on error nothing stays attached or mounted.
func MountImage(image, dir string, opts Options) (*Mount, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	d, err := Attach(image)
	if err != nil {
		return nil, err
	}
	// Closing our reference after the mount (or its failure) leaves the
	// mount as the only user; autoclear detaches when that goes.
	defer d.Close()
	fstype := opts.FSType
	if fstype == "" {
		fstype = DefaultFSType
	}
	flags := uintptr(mountFlags)
	if opts.NoExec {
		flags |= unix.MS_NOEXEC
	}
	if err := unix.Mount(d.Path, abs, fstype, flags, ""); err != nil {
		return nil, fmt.Errorf("loopmount: mount %s (%s, %s) at %s: %w", d.Path, d.Backing, fstype, abs, err)
	}
	return &Mount{Image: d.Backing, Dir: abs, Device: d.Path}, nil
}

// ErrBusy: a mount is in use and was left mounted.
var ErrBusy = errors.New("loopmount: mount is in use")

// Unmount unmounts dir unless a process uses it: then it returns an error
// matching ErrBusy and leaves the mount as it was. It never detaches lazily:
// a lazily detached tree keeps the files already open in it readable, but
// every later path lookup into it fails, which breaks a long-running
// script at its next include.
func Unmount(dir string) error {
	err := unix.Unmount(dir, unix.UMOUNT_NOFOLLOW)
	if errors.Is(err, unix.EBUSY) {
		return fmt.Errorf("%w: %s", ErrBusy, dir)
	}
	if err != nil {
		return fmt.Errorf("loopmount: unmount %s: %w", dir, err)
	}
	return nil
}

// Bind mounts the tree mounted at src again at dst, read-only, nodev and
// nosuid (and noexec when asked): a second path to the same filesystem,
// with no loop device of its own. Unmounting either leaves the other.
func Bind(src, dst string, opts Options) error {
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("loopmount: bind %s at %s: %w", src, dst, err)
	}
	// A bind takes its flags from the first call's source only after a
	// remount: say them, so a bind is never writable or less strict.
	flags := uintptr(unix.MS_REMOUNT | unix.MS_BIND | mountFlags)
	if opts.NoExec {
		flags |= unix.MS_NOEXEC
	}
	if err := unix.Mount("", dst, "", flags, ""); err != nil {
		unix.Unmount(dst, 0)
		return fmt.Errorf("loopmount: make the bind at %s read-only: %w", dst, err)
	}
	return nil
}

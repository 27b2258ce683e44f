package loopmount

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

const (
	// loopControl is the kernel's allocator of free loop devices.
	loopControl = "/dev/loop-control"
	// loopMajor is the block major of loop devices, for creating a missing
	// node in a container whose /dev is static.
	loopMajor = 7
	// maxAttachAttempts bounds the retries when another process binds the
	// device LOOP_CTL_GET_FREE returned before we do; each retry asks for a
	// fresh free device, so contention from dozens of attachers still ends.
	maxAttachAttempts = 64
	// loopFlags makes the device read-only and frees it when its last user
	// (the mount) goes away.
	loopFlags = unix.LO_FLAGS_READ_ONLY | unix.LO_FLAGS_AUTOCLEAR
)

// noConfigure is set after the kernel rejects LOOP_CONFIGURE (before 5.8)
// so later attaches go straight to the fallback; tests set it to exercise
// that path.
var noConfigure atomic.Bool

// fallbackBinds counts devices bound through LOOP_SET_FD, so a test can
// tell that the fallback really ran.
var fallbackBinds atomic.Int64

// Device is a loop device bound to a backing file by Attach. While the
// Device is open it holds a reference; Close drops it, and the kernel then
// detaches the device unless something else (a mount) still uses it.
type Device struct {
	Path    string // /dev/loopN
	Number  int
	Backing string // the backing file as given to Attach, made absolute
	f       *os.File
}

// Attach binds the file at image read-only to a free loop device.
func Attach(image string) (*Device, error) {
	abs, err := realPath(image)
	if err != nil {
		return nil, err
	}
	backing, err := os.OpenFile(abs, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	defer backing.Close() // the loop device holds its own reference
	ctl, err := os.OpenFile(loopControl, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	defer ctl.Close()
	for range maxAttachAttempts {
		d, err := tryAttach(ctl, backing, abs)
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.ENXIO) {
			continue // another process bound or removed it first: ask again
		}
		return d, err
	}
	return nil, fmt.Errorf("loopmount: attach %s: no free loop device after %d attempts", abs, maxAttachAttempts)
}

// tryAttach binds backing to the device loop-control reports free.
func tryAttach(ctl, backing *os.File, abs string) (*Device, error) {
	n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
	if err != nil {
		return nil, fmt.Errorf("loopmount: %s: LOOP_CTL_GET_FREE: %w", loopControl, err)
	}
	f, err := openLoop(n)
	if err != nil {
		return nil, err
	}
	if err := bind(f, backing, abs); err != nil {
		f.Close()
		if errors.Is(err, unix.EBUSY) {
			return nil, err
		}
		return nil, fmt.Errorf("loopmount: attach %s to %s: %w", abs, f.Name(), err)
	}
	return &Device{Path: f.Name(), Number: n, Backing: abs, f: f}, nil
}

// openLoop opens /dev/loopN read-only, creating the node if it is missing.
func openLoop(n int) (*os.File, error) {
	path := "/dev/loop" + strconv.Itoa(n)
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		dev := int(unix.Mkdev(loopMajor, uint32(n)))
		if err := unix.Mknod(path, unix.S_IFBLK|0o600, dev); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("loopmount: mknod %s: %w", path, err)
		}
		f, err = os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	}
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	return f, nil
}

// bind configures the loop device: LOOP_CONFIGURE when the kernel has it,
// else LOOP_SET_FD then LOOP_SET_STATUS64. Kernels before 5.8 answer an
// unknown loop ioctl with EINVAL; the fallback gives the same result, so
// any EINVAL from LOOP_CONFIGURE switches to it for good.
func bind(dev, backing *os.File, abs string) error {
	info := unix.LoopInfo64{Flags: loopFlags}
	copy(info.File_name[:len(info.File_name)-1], abs)
	if !noConfigure.Load() {
		cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: info}
		err := unix.IoctlLoopConfigure(int(dev.Fd()), &cfg)
		if !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOTTY) {
			return err
		}
		noConfigure.Store(true)
	}
	if err := unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_SET_FD, int(backing.Fd())); err != nil {
		return err
	}
	fallbackBinds.Add(1)
	if err := unix.IoctlLoopSetStatus64(int(dev.Fd()), &info); err != nil {
		unix.IoctlSetInt(int(dev.Fd()), unix.LOOP_CLR_FD, 0)
		return fmt.Errorf("LOOP_SET_STATUS64: %w", err)
	}
	return nil
}

// Close drops this reference to the device. With autoclear the kernel
// detaches it now unless a mount still uses it.
func (d *Device) Close() error {
	if err := d.f.Close(); err != nil {
		return fmt.Errorf("loopmount: close %s: %w", d.Path, err)
	}
	return nil
}

// Loop describes a bound loop device found in /sys/block.
type Loop struct {
	Device  string // /dev/loopN
	Backing string // as the kernel reports it; " (deleted)" when unlinked
}

// Devices lists the bound loop devices and their backing files.
func Devices() ([]Loop, error) {
	names, err := filepath.Glob("/sys/block/loop*/loop/backing_file")
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	var loops []Loop
	for _, p := range names {
		dev := "/dev/" + filepath.Base(filepath.Dir(filepath.Dir(p)))
		b, err := BackingFile(dev)
		if err != nil {
			continue // detached between the glob and the read
		}
		loops = append(loops, Loop{Device: dev, Backing: b})
	}
	return loops, nil
}

// BackingFile returns the backing file of a bound loop device (/dev/loopN).
func BackingFile(dev string) (string, error) {
	name := filepath.Base(dev)
	b, err := os.ReadFile(filepath.Join("/sys/block", name, "loop", "backing_file"))
	if err != nil {
		return "", fmt.Errorf("loopmount: %s is not bound: %w", dev, err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// BackingFileOfDev returns the backing file of the loop device whose
// device number is dev (st_dev of a file in its mount), read from sysfs,
// which needs no privilege.
func BackingFileOfDev(dev uint64) (string, error) {
	p := fmt.Sprintf("/sys/dev/block/%d:%d/loop/backing_file", unix.Major(dev), unix.Minor(dev))
	b, err := os.ReadFile(p)
	if err != nil {
		return "", fmt.Errorf("loopmount: device %d:%d is not a bound loop device: %w", unix.Major(dev), unix.Minor(dev), err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Package mounttest holds the helpers tests use to see and clean up loop
// mounts and loop devices they made: everything is found by path prefix,
// so a test never touches mounts or devices that are not its own.
package mounttest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testenv"
	"github.com/loopcast/loopcast/loopmount"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

// SettleTimeout bounds the wait for the kernel to free loop devices after
// a lazy unmount (autoclear runs when the last user goes).
const SettleTimeout = 20 * time.Second

// MountsUnder lists the mount points below dir, newest first.
func MountsUnder(t testing.TB, dir string) []string {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir)) // dir and below
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, i := range infos {
		if i.Mountpoint != dir {
			dirs = append([]string{i.Mountpoint}, dirs...)
		}
	}
	return dirs
}

// LoopsUnder counts loop devices backed by files below dir.
func LoopsUnder(t testing.TB, dir string) int {
	t.Helper()
	loops, err := loopmount.Devices()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, l := range loops {
		if strings.HasPrefix(l.Backing, dir+"/") {
			n++
		}
	}
	return n
}

// UnmountUnder lazily unmounts every mount below dir, newest first.
func UnmountUnder(t testing.TB, dir string) {
	t.Helper()
	for _, d := range MountsUnder(t, dir) {
		if err := unix.Unmount(d, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", d, err)
		}
	}
}

// WaitLoops waits until exactly want loop devices are backed by files
// below dir, and reports an error if that does not happen in time.
func WaitLoops(t testing.TB, dir string, want int) {
	t.Helper()
	deadline := time.Now().Add(SettleTimeout)
	for LoopsUnder(t, dir) != want {
		if time.Now().After(deadline) {
			t.Errorf("%d loop devices backed by files under %s, want %d", LoopsUnder(t, dir), dir, want)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cleanup unmounts everything below dir and waits until no loop device is
// backed by a file there.
func Cleanup(t testing.TB, dir string) {
	t.Helper()
	UnmountUnder(t, dir)
	WaitLoops(t, dir, 0)
}

// Dir returns a temporary directory, its symlinks resolved so that it
// matches the paths the kernel reports, whose mounts and loop devices are
// cleaned up (Cleanup) when the test ends, even on failure. It gates on
// root and loop devices.
func Dir(t testing.TB) string {
	t.Helper()
	testenv.RequireLoop(t)
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { Cleanup(t, dir) })
	return dir
}

// LoopMount mounts img with mount(8) -o loop and args (e.g. "-o", "ro",
// "-t", "ext2") on a fresh directory and returns it; it is unmounted when
// the test ends. The caller gates on root and loop devices.
func LoopMount(t testing.TB, img string, args ...string) string {
	t.Helper()
	testenv.RequireTool(t, "mount")
	mnt := t.TempDir()
	args = append(append([]string{"-o", "loop"}, args...), img, mnt)
	if out, err := exec.Command("mount", args...).CombinedOutput(); err != nil {
		t.Fatalf("mount %s: %v\n%s", img, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v\n%s", mnt, err, out)
		}
	})
	return mnt
}

// ScratchFS makes a filesystem with mkfs (and args) on a 512 MiB sparse
// file, loop-mounts it and returns its mount point; it is unmounted when
// the test ends. The caller gates on root, loop devices and mkfs.
func ScratchFS(t testing.TB, mkfs string, args ...string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if f, err := os.Create(img); err != nil || f.Truncate(512<<20) != nil || f.Close() != nil {
		t.Fatalf("scratch file: %v", err)
	}
	if out, err := exec.Command(mkfs, append(args, img)...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", mkfs, err, out)
	}
	return LoopMount(t, img)
}

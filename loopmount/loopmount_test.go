package loopmount_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/testenv"
	"github.com/loopcast/loopcast/loopmount"
)

// makeImage builds an ext2 image holding files (name → content) with mke2fs.
func makeImage(t *testing.T, dir, name string, files map[string]string) string {
	t.Helper()
	testenv.RequireTool(t, "mke2fs")
	src := filepath.Join(dir, name+".src")
	for n, c := range files {
		p := filepath.Join(src, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(dir, name+".img")
	out, err := exec.Command("mke2fs", "-q", "-t", "ext2", "-d", src, img, "4M").CombinedOutput()
	if err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	return img
}

// ownMounts counts loop mounts of images under dir.
func ownMounts(t *testing.T, dir string) int {
	t.Helper()
	ms, err := loopmount.Mounts()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, m := range ms {
		if strings.HasPrefix(m.Image, dir+"/") {
			n++
		}
	}
	return n
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// mountOptions returns the per-mount options of dir from mountinfo.
func mountOptions(t *testing.T, dir string) []string {
	t.Helper()
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range infos {
		return strings.Split(i.Options, ",")
	}
	t.Fatalf("%s is not mounted", dir)
	return nil
}

func hasAll(have []string, want ...string) bool {
	for _, w := range want {
		found := false
		for _, h := range have {
			found = found || h == w
		}
		if !found {
			return false
		}
	}
	return true
}

func TestMountReadOnly(t *testing.T) {
	dir := mounttest.Dir(t)
	img := makeImage(t, dir, "a", map[string]string{"hello.txt": "hello\n", "sub/x": "x"})
	mnt := mkdir(t, filepath.Join(dir, "mnt"))
	m, err := loopmount.MountImage(img, mnt, loopmount.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "hello.txt")); err != nil || string(got) != "hello\n" {
		t.Fatalf("read hello.txt = %q, %v; want %q", got, err, "hello\n")
	}
	if opts := mountOptions(t, mnt); !hasAll(opts, "ro", "nodev", "nosuid") || hasAll(opts, "noexec") {
		t.Errorf("mount options %v, want ro,nodev,nosuid without noexec", opts)
	}
	if err := os.WriteFile(filepath.Join(mnt, "new"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write into mount: %v, want EROFS", err)
	}
	found, err := loopmount.FindMounts(img)
	if err != nil || len(found) != 1 || found[0].Dir != mnt || found[0].Device != m.Device {
		t.Fatalf("FindMounts = %+v, %v; want one mount at %s on %s", found, err, mnt, m.Device)
	}
	if ro, err := os.ReadFile("/sys/block/" + filepath.Base(m.Device) + "/ro"); err != nil || strings.TrimSpace(string(ro)) != "1" {
		t.Errorf("%s ro = %q, %v; want 1", m.Device, ro, err)
	}
	if err := loopmount.Unmount(mnt); err != nil {
		t.Fatalf("Unmount: %v", err)
	}
	if found, _ := loopmount.FindMounts(img); len(found) != 0 {
		t.Errorf("after Unmount FindMounts = %+v, want none", found)
	}
	mounttest.WaitLoops(t, dir, 0)
}

func TestMountNoExec(t *testing.T) {
	dir := mounttest.Dir(t)
	img := makeImage(t, dir, "a", map[string]string{"f": "f"})
	mnt := mkdir(t, filepath.Join(dir, "mnt"))
	if _, err := loopmount.MountImage(img, mnt, loopmount.Options{NoExec: true}); err != nil {
		t.Fatal(err)
	}
	if opts := mountOptions(t, mnt); !hasAll(opts, "ro", "nodev", "nosuid", "noexec") {
		t.Errorf("mount options %v, want ro,nodev,nosuid,noexec", opts)
	}
	if err := loopmount.Unmount(mnt); err != nil {
		t.Fatal(err)
	}
	mounttest.WaitLoops(t, dir, 0)
}

// TestCyclesNoLeak mounts and unmounts many times, through LOOP_CONFIGURE
// and through the LOOP_SET_FD fallback, and checks that no loop device or
// mount is left behind.
func TestCyclesNoLeak(t *testing.T) {
	const cycles = 40 // enough to expose a leak per cycle; ~10 ms each
	for _, fallback := range []bool{false, true} {
		t.Run(fmt.Sprintf("fallback=%v", fallback), func(t *testing.T) {
			dir := mounttest.Dir(t)
			prev := loopmount.NoConfigure.Load()
			loopmount.NoConfigure.Store(fallback)
			t.Cleanup(func() { loopmount.NoConfigure.Store(prev) })
			img := makeImage(t, dir, "a", map[string]string{"f": "content"})
			mnt := mkdir(t, filepath.Join(dir, "mnt"))
			binds := loopmount.FallbackBinds.Load()
			for i := range cycles {
				m, err := loopmount.MountImage(img, mnt, loopmount.Options{})
				if err != nil {
					t.Fatalf("cycle %d: %v", i, err)
				}
				if i == 0 {
					checkLoopFlags(t, m.Device)
				}
				if got, err := os.ReadFile(filepath.Join(mnt, "f")); err != nil || string(got) != "content" {
					t.Fatalf("cycle %d: read = %q, %v", i, got, err)
				}
				if err := loopmount.Unmount(mnt); err != nil {
					t.Fatalf("cycle %d: %v", i, err)
				}
			}
			mounttest.WaitLoops(t, dir, 0)
			if n := ownMounts(t, dir); n != 0 {
				t.Errorf("%d mounts left, want 0", n)
			}
			if n := loopmount.FallbackBinds.Load() - binds; fallback && n < cycles {
				t.Errorf("%d of %d cycles bound through LOOP_SET_FD; the fallback did not run", n, cycles)
			}
		})
	}
}

// checkLoopFlags checks that dev is read-only and autoclears.
func checkLoopFlags(t *testing.T, dev string) {
	t.Helper()
	sys := "/sys/block/" + filepath.Base(dev)
	for _, f := range []string{sys + "/ro", sys + "/loop/autoclear"} {
		if b, err := os.ReadFile(f); err != nil || strings.TrimSpace(string(b)) != "1" {
			t.Errorf("%s = %q, %v; want 1", f, b, err)
		}
	}
}

// TestConcurrentAttach races attachers for free devices: each must get its
// own device (retrying on EBUSY), and all are freed afterwards.
func TestConcurrentAttach(t *testing.T) {
	const workers = 8 // more than the 8 pre-made nodes on a default system
	dir := mounttest.Dir(t)
	img := makeImage(t, dir, "a", map[string]string{"f": "f"})
	mounts := make([]*loopmount.Mount, workers)
	errs := make([]error, workers)
	var wg sync.WaitGroup
	for i := range workers {
		mnt := mkdir(t, filepath.Join(dir, fmt.Sprint("mnt", i)))
		wg.Go(func() { mounts[i], errs[i] = loopmount.MountImage(img, mnt, loopmount.Options{}) })
	}
	wg.Wait()
	devs := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("worker %d: %v", i, err)
		}
		if devs[mounts[i].Device] {
			t.Errorf("device %s given to two mounts", mounts[i].Device)
		}
		devs[mounts[i].Device] = true
	}
	if n := mounttest.LoopsUnder(t, dir); n != workers {
		t.Errorf("%d own loop devices, want %d", n, workers)
	}
	for _, m := range mounts {
		if err := loopmount.Unmount(m.Dir); err != nil {
			t.Error(err)
		}
	}
	mounttest.WaitLoops(t, dir, 0)
}

// TestUnmountBusy: a mount that a process uses (here: an open file) is
// not unmounted, lazily or otherwise: Unmount says ErrBusy, the mount stays
// and paths in it still resolve; once the file is closed it unmounts and
// the device is freed.
func TestUnmountBusy(t *testing.T) {
	dir := mounttest.Dir(t)
	img := makeImage(t, dir, "a", map[string]string{"f": "still here", "g": "later"})
	mnt := mkdir(t, filepath.Join(dir, "mnt"))
	if _, err := loopmount.MountImage(img, mnt, loopmount.Options{}); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(filepath.Join(mnt, "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := loopmount.Unmount(mnt); !errors.Is(err, loopmount.ErrBusy) || !strings.Contains(err.Error(), mnt) {
		t.Fatalf("Unmount of a busy mount = %v, want ErrBusy naming %s", err, mnt)
	}
	if ok, err := loopmount.IsMountPoint(mnt); err != nil || !ok {
		t.Errorf("IsMountPoint after a refused unmount = %v, %v; want true", ok, err)
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "g")); string(b) != "later" {
		t.Errorf("a new path lookup in the busy mount = %q, %v; want %q", b, err, "later")
	}
	f.Close()
	if err := loopmount.Unmount(mnt); err != nil {
		t.Fatalf("Unmount once unused: %v", err)
	}
	mounttest.WaitLoops(t, dir, 0)
}

// TestUsers: Users names each process using a mount and how (working
// directory, open file, executable and its memory map), and none that
// does not; a directory that is not a mount point has no users.
func TestUsers(t *testing.T) {
	dir := mounttest.Dir(t)
	testenv.RequireTool(t, "mke2fs")
	src := mkdir(t, filepath.Join(dir, "src"))
	sleep, err := os.ReadFile("/bin/sleep")
	if err != nil {
		t.Fatalf("a program to run from the image: %v", err)
	}
	if err := os.WriteFile(filepath.Join(src, "sleep"), sleep, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("f"), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "a.img")
	if out, err := exec.Command("mke2fs", "-q", "-t", "ext2", "-d", src, img, "4M").CombinedOutput(); err != nil {
		t.Fatalf("mke2fs: %v\n%s", err, out)
	}
	mnt := mkdir(t, filepath.Join(dir, "mnt"))
	other := mkdir(t, filepath.Join(dir, "other"))
	if _, err := loopmount.MountImage(img, mnt, loopmount.Options{}); err != nil {
		t.Fatal(err)
	}
	cwd := start(t, mnt, "sh", "-c", "echo ready; read x")
	fd := start(t, other, "sh", "-c", "exec 3<"+filepath.Join(mnt, "f")+"; echo ready; read x")
	none := start(t, other, "sh", "-c", "echo ready; read x")
	exe := start(t, other, "sh", "-c", "echo ready; exec "+filepath.Join(mnt, "sleep")+" 600")
	waitFor(t, func() bool { // the last shell has exec'd the image's program
		p, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", exe))
		return p == filepath.Join(mnt, "sleep")
	})
	u, err := loopmount.Users(mnt, other)
	if err != nil {
		t.Fatal(err)
	}
	got := map[int][]string{}
	for _, p := range u.Users[mnt] {
		got[p.PID] = p.Uses
		if p.Command == "" {
			t.Errorf("pid %d listed without its command", p.PID)
		}
	}
	for pid, want := range map[int][]string{cwd: {"cwd"}, fd: {"fd"}, exe: {"exe", "mmap"}} {
		for _, w := range want {
			if !slices.Contains(got[pid], w) {
				t.Errorf("pid %d uses the mount by %v, want %s among them", pid, got[pid], w)
			}
		}
	}
	if uses, ok := got[none]; ok {
		t.Errorf("pid %d (elsewhere) listed as using the mount: %v", none, uses)
	}
	if len(u.Users[other]) != 0 {
		t.Errorf("a plain directory has users %v, want none", u.Users[other])
	}
}

// start runs a command in dir that prints a line when it is set up, then
// waits on its stdin; it is ended when the test is. It returns its pid.
func start(t *testing.T, dir string, args ...string) int {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }) // our own child, by pid
	if _, err := bufio.NewReader(out).ReadString('\n'); err != nil {
		t.Fatalf("%v: %v", args, err)
	}
	return cmd.Process.Pid
}

// waitFor polls cond until it holds or mounttest.SettleTimeout passes.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(mounttest.SettleTimeout); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in time")
		}
	}
}

// TestMountFailureNoLeak: a file that is not ext2 fails to mount and leaves
// no device attached.
func TestMountFailureNoLeak(t *testing.T) {
	dir := mounttest.Dir(t)
	junk := filepath.Join(dir, "junk.img")
	if err := os.WriteFile(junk, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	mnt := mkdir(t, filepath.Join(dir, "mnt"))
	_, err := loopmount.MountImage(junk, mnt, loopmount.Options{})
	if err == nil || !strings.Contains(err.Error(), junk) {
		t.Fatalf("mount of junk = %v, want an error naming %s", err, junk)
	}
	mounttest.WaitLoops(t, dir, 0)
}

// A mount point with a space (mountinfo writes it \040) is found by its
// real name.
func TestMountPointWithSpace(t *testing.T) {
	testenv.RequireRoot(t)
	dir := filepath.Join(t.TempDir(), "a b")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	defer unix.Unmount(dir, unix.MNT_DETACH)
	if mp, err := loopmount.IsMountPoint(dir); err != nil || !mp {
		t.Errorf("IsMountPoint(%q) = %v, %v; want true", dir, mp, err)
	}
	if mp, err := loopmount.IsMountPoint(filepath.Dir(dir)); err != nil || mp {
		t.Errorf("IsMountPoint(parent) = %v, %v; want false", mp, err)
	}
}

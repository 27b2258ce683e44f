package release

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/loopmount"
	"golang.org/x/sys/unix"
)

// Lease holds a release mounted for a process that works in it: an open
// descriptor on the release's mount, which the in-use check sees and which
// makes any unmount of it fail. It takes no lock and needs no privilege, so
// a cron job of the web server's user can take one.
type Lease struct {
	ID  image.ID // the release held
	Dir string   // its real path: <root>/releases/<id>, or the slot it is served from
	f   *os.File
}

// leaseAttempts bounds the retries when `current` moves (or its old target
// is retired) while a lease is being taken; each needs a deploy to land in
// the window between two system calls, so three is plenty.
const leaseAttempts = 3

// LeaseCurrent takes a lease on the release that `current` under root
// points at.
func LeaseCurrent(root string) (*Lease, error) {
	abs, err := filepath.Abs(root)
	if err == nil {
		abs, err = filepath.EvalSymlinks(abs)
	}
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	for try := 1; ; try++ {
		l, err := tryLease(abs)
		if err == nil || !errors.Is(err, errMoved) || try == leaseAttempts {
			return l, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// errMoved: what `current` led to was not a mounted release (it was
// retired while the lease was being taken).
var errMoved = errors.New("release: current moved")

// tryLease opens current (following the symlink) and checks that the
// descriptor it got is the root of a mounted release.
func tryLease(root string) (*Lease, error) {
	link := filepath.Join(root, currentName)
	f, err := os.Open(link)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("release: no current release under %s", root)
	}
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	l, err := checkLease(root, f)
	if err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

func checkLease(root string, f *os.File) (*Lease, error) {
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	dir, name := filepath.Split(real)
	switch d := filepath.Clean(dir); {
	case d == filepath.Join(root, releasesDir) && isID(name):
	case d == filepath.Join(root, slotsDir) && isSlotName(name):
	default:
		return nil, fmt.Errorf("release: %s leads to %s, not to a release under %s", filepath.Join(root, currentName), real, root)
	}
	var in, parent unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &in); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if err := unix.Stat(dir, &parent); err != nil {
		return nil, fmt.Errorf("release: %w", err)
	}
	if in.Dev == parent.Dev { // the bare mount point: not (or no longer) mounted
		return nil, fmt.Errorf("%w: %s is not mounted", errMoved, real)
	}
	// The release is the image behind the mount (a slot is a bind of it):
	// asked of the kernel, not of the state file, which may be mid-update.
	img, err := loopmount.BackingFileOfDev(uint64(in.Dev))
	if err != nil {
		return nil, fmt.Errorf("release: %s: %w", real, err)
	}
	id, ok := imageID(img)
	if !ok || filepath.Dir(img) != filepath.Join(root, imagesDir) {
		return nil, fmt.Errorf("release: %s is mounted from %s, not from an image under %s", real, img, root)
	}
	return &Lease{ID: id, Dir: real, f: f}, nil
}

// Command returns cmd set up to run in the leased release: its working
// directory the release's real path, LOOPCAST_RELEASE and
// LOOPCAST_RELEASE_DIR (and PWD) in its environment.
func (l *Lease) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Dir = l.Dir
	cmd.Env = append(os.Environ(), "LOOPCAST_RELEASE="+l.ID.String(), "LOOPCAST_RELEASE_DIR="+l.Dir, "PWD="+l.Dir)
	return cmd
}

// Close lets the release go: retention may retire it once nothing else
// uses it.
func (l *Lease) Close() error { return l.f.Close() }

package loopmount

import (
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// maxCommand bounds the command line kept per process: enough to tell
// `php artisan queue:work` from `php-fpm: pool www`.
const maxCommand = 160

// Process is a process that uses a mounted filesystem.
type Process struct {
	PID     int      `json:"pid"`
	Command string   `json:"command"` // its command line, shortened
	Uses    []string `json:"uses"`    // how: cwd, root, exe, fd, mmap
}

func (p Process) String() string { return fmt.Sprintf("pid %d (%s)", p.PID, p.Command) }

// Usage is who uses each of a set of mounts, read from /proc.
type Usage struct {
	Users map[string][]Process // mount point -> processes, by pid
	// Hidden counts processes that could not be inspected (another user's,
	// when not run as root): a mount may have users not listed.
	Hidden int
}

// Users finds the processes that use the filesystems mounted at dirs, as
// `fuser -m` does: a working directory, root, executable, open file or
// memory map on the same device. It matches by device number, so it also
// sees processes in other mount namespaces. A dir that is not a mount
// point is skipped (it would match its parent's filesystem).
func Users(dirs ...string) (*Usage, error) {
	devs := map[uint64]string{}
	for _, d := range dirs {
		if mp, err := IsMountPoint(d); err != nil || !mp {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(d, &st); err != nil {
			return nil, fmt.Errorf("loopmount: %w", err)
		}
		devs[st.Dev] = d
	}
	u := &Usage{Users: map[string][]Process{}}
	if len(devs) == 0 {
		return u, nil
	}
	procs, err := procfs.AllProcs()
	if err != nil {
		return nil, fmt.Errorf("loopmount: list processes: %w", err)
	}
	sort.Sort(procs)
	for _, p := range procs {
		uses, hidden := processUses(p, devs)
		if hidden {
			u.Hidden++
		}
		for dir, how := range uses {
			u.Users[dir] = append(u.Users[dir], Process{PID: p.PID, Command: command(p), Uses: how})
		}
	}
	return u, nil
}

// processUses returns which of devs' mounts process p uses, and how; hidden
// reports that p could not be inspected for lack of permission.
func processUses(p procfs.Proc, devs map[uint64]string) (map[string][]string, bool) {
	uses := map[string][]string{}
	hidden := false
	add := func(dev uint64, how string) {
		if dir, ok := devs[dev]; ok && !slices.Contains(uses[dir], how) {
			uses[dir] = append(uses[dir], how)
		}
	}
	base := "/proc/" + strconv.Itoa(p.PID) + "/"
	for _, link := range []string{"cwd", "root", "exe"} {
		dev, err := statDev(base + link)
		hidden = hidden || errors.Is(err, fs.ErrPermission)
		if err == nil {
			add(dev, link)
		}
	}
	fds, err := p.FileDescriptors()
	hidden = hidden || errors.Is(err, fs.ErrPermission)
	for _, fd := range fds {
		if dev, err := statDev(base + "fd/" + strconv.FormatUint(uint64(fd), 10)); err == nil {
			add(dev, "fd")
		}
	}
	maps, err := p.ProcMaps()
	hidden = hidden || errors.Is(err, fs.ErrPermission)
	for _, m := range maps {
		if m.Inode != 0 {
			add(m.Dev, "mmap")
		}
	}
	return uses, hidden
}

// statDev returns the device of the file a /proc link leads to.
func statDev(path string) (uint64, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return 0, err
	}
	return st.Dev, nil
}

// command returns p's command line (its name for kernel threads), cut to
// maxCommand bytes, unprintable characters replaced.
func command(p procfs.Proc) string {
	args, _ := p.CmdLine()
	s := strings.Join(args, " ")
	if s == "" {
		s, _ = p.Comm()
	}
	if len(s) > maxCommand {
		s = s[:maxCommand] + "…"
	}
	// any local user chooses a command line: keep it to one printable line
	return strings.Map(func(r rune) rune {
		if !unicode.IsPrint(r) {
			return '?'
		}
		return r
	}, s)
}

package loopmount

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// mountinfoPath lists the mounts of this process's namespace.
const mountinfoPath = "/proc/self/mountinfo"

// Mounts lists the loop mounts in this mount namespace with their backing
// files, in mount order.
func Mounts() ([]Mount, error) {
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	var ms []Mount
	for line := range bytes.Lines(b) {
		dir, source, ok := parseMountinfo(string(line))
		if !ok || !strings.HasPrefix(source, "/dev/loop") {
			continue
		}
		backing, err := BackingFile(source)
		if err != nil {
			continue // the device went away while we looked
		}
		ms = append(ms, Mount{Image: backing, Dir: dir, Device: source})
	}
	return ms, nil
}

// FindMounts returns the mounts whose loop device is backed by image.
func FindMounts(image string) ([]Mount, error) {
	abs, err := realPath(image)
	if err != nil {
		return nil, err
	}
	all, err := Mounts()
	if err != nil {
		return nil, err
	}
	var ms []Mount
	for _, m := range all {
		if m.Image == abs {
			ms = append(ms, m)
		}
	}
	return ms, nil
}

// IsMountPoint reports whether dir is a mount point in this namespace.
func IsMountPoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, fmt.Errorf("loopmount: %w", err)
	}
	b, err := os.ReadFile(mountinfoPath)
	if err != nil {
		return false, fmt.Errorf("loopmount: %w", err)
	}
	for line := range bytes.Lines(b) {
		if d, _, ok := parseMountinfo(string(line)); ok && d == abs {
			return true, nil
		}
	}
	return false, nil
}

// parseMountinfo returns the mount point and source of one mountinfo line:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//	(1)(2)(3)   (4)   (5)      (6)      (7)   (8) (9)    (10)         (11)
func parseMountinfo(line string) (dir, source string, ok bool) {
	pre, post, found := strings.Cut(strings.TrimSuffix(line, "\n"), " - ")
	if !found {
		return "", "", false
	}
	f, g := strings.Fields(pre), strings.Fields(post)
	if len(f) < 5 || len(g) < 2 {
		return "", "", false
	}
	return unescape(f[4]), unescape(g[1]), true
}

// unescape decodes the octal escapes (\040 for space) mountinfo uses.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// realPath is path made absolute with symlinks resolved, as the kernel
// reports backing files; a path that no longer exists is only made absolute.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("loopmount: %w", err)
	}
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		return r, nil
	}
	return abs, nil
}

package loopmount

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"
)

// Mounts lists the loop mounts in this mount namespace with their backing
// files, in mount order. /proc/self/mountinfo is read by
// github.com/moby/sys/mountinfo, which decodes its escapes.
func Mounts() ([]Mount, error) {
	infos, err := mountinfo.GetMounts(func(i *mountinfo.Info) (skip, stop bool) {
		return !strings.HasPrefix(i.Source, "/dev/loop"), false
	})
	if err != nil {
		return nil, fmt.Errorf("loopmount: %w", err)
	}
	var ms []Mount
	for _, i := range infos {
		backing, err := BackingFile(i.Source)
		if err != nil {
			continue // the device went away while we looked
		}
		ms = append(ms, Mount{Image: backing, Dir: i.Mountpoint, Device: i.Source})
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

// IsMountPoint reports whether dir is a mount point in this namespace; a
// directory that does not exist is not one.
func IsMountPoint(dir string) (bool, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return false, fmt.Errorf("loopmount: %w", err)
	}
	infos, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(abs))
	if err != nil {
		return false, fmt.Errorf("loopmount: %w", err)
	}
	return len(infos) > 0, nil
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

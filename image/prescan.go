package image

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"golang.org/x/sys/unix"
)

// entryStat is what the prescan read of one directory entry.
type entryStat struct {
	st      unix.Stat_t
	statErr error
	target  string // a symlink's target
	linkErr error
}

// listing is one directory as the prescan read it: its names sorted by
// bytes, and each entry's stat. err is why it could not be read.
type listing struct {
	names   []string
	entries []entryStat
	err     error
}

// prescan reads every directory under root, and the stat of every entry,
// with up to workers directories at a time: the scan's system calls (one
// fstatat per entry, a readlink per symlink) on all cores. Directories are
// keyed by the path scanDir builds (filepath.Join of the names from root);
// a directory is read only if its own entry said it is one.
func prescan(root string, workers int) map[string]*listing {
	out := map[string]*listing{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(workers, 1))
	var walk func(path string)
	walk = func(path string) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			l := readListing(path)
			<-sem
			mu.Lock()
			out[path] = l
			mu.Unlock()
			for i, name := range l.names {
				if e := &l.entries[i]; e.statErr == nil && e.st.Mode&unix.S_IFMT == unix.S_IFDIR {
					walk(filepath.Join(path, name))
				}
			}
		}()
	}
	walk(root)
	wg.Wait()
	return out
}

// readListing reads directory path and the stat of each of its entries.
func readListing(path string) *listing {
	d, err := os.Open(path)
	if err != nil {
		return &listing{err: fmt.Errorf("image: %w", err)}
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return &listing{err: fmt.Errorf("image: read directory %s: %w", path, err)}
	}
	slices.Sort(names) // Go strings compare as bytes
	l := &listing{names: names, entries: make([]entryStat, len(names))}
	dirfd := int(d.Fd())
	for i, name := range names {
		e := &l.entries[i]
		if e.statErr = unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); e.statErr != nil {
			continue
		}
		if e.st.Mode&unix.S_IFMT == unix.S_IFLNK {
			e.target, e.linkErr = readlinkat(dirfd, name, e.st.Size)
		}
	}
	return l
}

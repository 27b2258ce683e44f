package image

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

type nodeKind uint8

const (
	kindDir nodeKind = iota + 1
	kindFile
	kindSymlink
)

// node is one name in the source tree. Memory per node is what bounds the
// writer's memory: file data is never held.
type node struct {
	name     string
	parent   int32 // index in tree.nodes; the root is its own parent
	kind     nodeKind
	perm     uint16 // permission bits with setuid, setgid, sticky
	uid, gid uint32
	sec      int64
	nsec     uint32
	size     int64
	sparse   bool   // the source file has holes: SEEK_DATA is worth asking
	target   string // symlink target
	first    int32  // a directory's children are nodes[first : first+count]
	count    int32
	primary  int32  // for a hard link: the node that owns the inode; -1 otherwise
	ino      uint32 // assigned by tree.assignInodes
	links    uint16 // names for the inode (files) or 2 + subdirectories (dirs)
	src      srcStat
}

// srcStat is what the scan saw of a source file beyond its size: a later
// build on this one's layout trusts a file whose size and srcStat are the
// same to hold the same bytes, without reading it (as git's index does).
// The change time moves with every write and cannot be set back by a user.
type srcStat struct {
	mtime, ctime int64 // nanoseconds
	ino, dev     uint64
}

// tree is the scanned source: nodes in a fixed order, root first.
type tree struct {
	src     string
	nodes   []node
	maxTime int64
	inodes  uint32 // highest inode number in use
	entries uint64 // names below the root
	scanned int64  // when the scan started (Unix nanoseconds)
}

type devIno struct{ dev, ino uint64 }

// scanTree reads the metadata of every entry under src, sorted by name
// bytes. It refuses devices, fifos and sockets, and names that do not fit.
func scanTree(src string) (*tree, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return nil, fmt.Errorf("image: source: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("image: source %s is not a directory", src)
	}
	t := &tree{src: src, scanned: time.Now().UnixNano()}
	var st unix.Stat_t
	if err := unix.Stat(src, &st); err != nil {
		return nil, fmt.Errorf("image: stat %s: %w", src, err)
	}
	// the stat of every entry, on all cores; the tree is then put
	// together from it in one fixed order, as before
	pre := prescan(src, runtime.GOMAXPROCS(0))
	n := 1
	for _, l := range pre {
		n += len(l.names)
	}
	// sized once: growing a slice of 163,000 nodes (with pointers) by
	// doubling cost a one-file hotfix build 0.4 CPU-s of copying
	t.nodes = make([]node, 0, n)
	t.nodes = append(t.nodes, nodeFromStat("", 0, &st))
	t.nodes[0].kind = kindDir
	links := map[devIno]int32{}
	if err := t.scanDir(0, src, links, pre); err != nil {
		return nil, err
	}
	return t, nil
}

func (t *tree) scanDir(idx int32, path string, links map[devIno]int32, pre map[string]*listing) error {
	l := pre[path]
	if l == nil {
		return fmt.Errorf("image: %s: the tree changed during the scan", path)
	}
	if l.err != nil {
		return l.err
	}
	first := int32(len(t.nodes))
	t.nodes[idx].first, t.nodes[idx].count = first, int32(len(l.names))
	for i, name := range l.names {
		if err := t.scanEntry(idx, path, name, &l.entries[i], links); err != nil {
			return err
		}
	}
	names := l.names
	for c := first; c < first+int32(len(names)); c++ {
		if t.nodes[c].kind != kindDir {
			continue
		}
		if err := t.scanDir(c, filepath.Join(path, t.nodes[c].name), links, pre); err != nil {
			return err
		}
	}
	return nil
}

func (t *tree) scanEntry(parent int32, dir, name string, e *entryStat, links map[devIno]int32) error {
	path := filepath.Join(dir, name)
	if len(name) > maxNameLen {
		return fmt.Errorf("image: %s: name is %d bytes, ext2 allows %d", path, len(name), maxNameLen)
	}
	if parent == 0 && name == "lost+found" {
		return fmt.Errorf("image: %s: lost+found is reserved at the image root", path)
	}
	if e.statErr != nil {
		return fmt.Errorf("image: stat %s: %w", path, e.statErr)
	}
	st := &e.st
	n := nodeFromStat(name, parent, st)
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFDIR:
		n.kind = kindDir
	case unix.S_IFREG:
		n.kind = kindFile
		n.sparse = st.Blocks*512 < st.Size
		if err := checkFileSize(path, st.Size); err != nil {
			return err
		}
	case unix.S_IFLNK:
		n.kind = kindSymlink
		target, err := e.target, e.linkErr
		if err != nil {
			return fmt.Errorf("image: readlink %s: %w", path, err)
		}
		if len(target) > maxSymlinkLen {
			return fmt.Errorf("image: %s: symlink target of %d bytes, ext2 allows %d", path, len(target), maxSymlinkLen)
		}
		n.target = target
		n.size = int64(len(target))
	default:
		return fmt.Errorf("image: %s: %s is not supported (only files, directories and symlinks)", path, fileTypeName(st.Mode))
	}
	idx := int32(len(t.nodes))
	if n.kind != kindDir && st.Nlink > 1 {
		key := devIno{uint64(st.Dev), st.Ino}
		if p, ok := links[key]; ok {
			n.primary = p
		} else {
			links[key] = idx
		}
	}
	t.nodes = append(t.nodes, n)
	t.entries++
	return nil
}

func nodeFromStat(name string, parent int32, st *unix.Stat_t) node {
	return node{
		name: name, parent: parent, primary: -1,
		perm: uint16(st.Mode & 0o7777), uid: st.Uid, gid: st.Gid,
		sec: st.Mtim.Sec, nsec: uint32(st.Mtim.Nsec), size: st.Size,
		src: srcStat{mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), ino: st.Ino, dev: st.Dev},
	}
}

func checkFileSize(path string, size int64) error {
	if need := fileBlocksUpper(size); need > maxFileBlocks {
		return fmt.Errorf("image: %s: %d bytes is too big for ext2 with 4 KiB blocks (max %d bytes)", path, size, maxFileSize())
	}
	return nil
}

// maxFileSize is the largest regular file the format takes.
func maxFileSize() int64 {
	lo, hi := int64(0), int64(1)<<44
	for lo < hi { // largest size whose blocks fit in maxFileBlocks
		mid := (lo + hi + 1) / 2
		if fileBlocksUpper(mid) <= maxFileBlocks {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

func readlinkat(dirfd int, name string, size int64) (string, error) {
	buf := make([]byte, max(size+1, 64))
	for {
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, 2*len(buf))
	}
}

func fileTypeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	}
	return fmt.Sprintf("file type %#o", mode&unix.S_IFMT)
}

// path returns the source path of node i.
func (t *tree) path(i int32) string {
	var parts []string
	for ; i != 0; i = t.nodes[i].parent {
		parts = append(parts, t.nodes[i].name)
	}
	slices.Reverse(parts)
	return filepath.Join(t.src, strings.Join(parts, "/"))
}

// assignInodes numbers inodes in scan order: the root is 2, lost+found 11,
// then each directory's children consecutively, directory by directory
// (depth first). A hard link takes its primary's inode, which the scan met
// first. It also counts links and the newest timestamp.
func (t *tree) assignInodes() error {
	next := uint32(firstIno + 1)
	t.nodes[0].ino = rootIno
	for i := 1; i < len(t.nodes); i++ {
		if n := &t.nodes[i]; n.primary < 0 {
			n.ino, next = next, next+1
		}
	}
	t.inodes = next - 1
	return t.countLinks()
}

// countLinks gives hard links their primary's inode, counts links and
// finds the newest timestamp, once every primary has its inode.
func (t *tree) countLinks() error {
	root := &t.nodes[0]
	root.links = 3 // ".", its own "..", and lost+found's ".."
	t.maxTime = root.sec
	for i := 1; i < len(t.nodes); i++ {
		n := &t.nodes[i]
		t.maxTime = max(t.maxTime, n.sec)
		switch {
		case n.kind == kindDir:
			n.links = 2
			t.nodes[n.parent].links++
		case n.primary >= 0:
			p := &t.nodes[n.primary]
			n.ino = p.ino
			p.links++
		default:
			n.links = 1
		}
	}
	for i := range t.nodes {
		if t.nodes[i].links > linkMax {
			return fmt.Errorf("image: %s: %d links (names or subdirectories), ext2 allows %d", t.path(int32(i)), t.nodes[i].links, linkMax)
		}
	}
	return nil
}

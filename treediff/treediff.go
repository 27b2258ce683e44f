// Package treediff finds the files that differ between two release trees,
// exactly: what OPcache must forget when a slot's release is replaced.
//
// Both trees are loop mounts of images described by manifests. A regular
// file of the same size in both is unchanged, without reading it, when its
// data lies on the same image blocks in both (FIEMAP) and every chunk
// under those blocks has the same SHA-256 in both manifests: a build on a
// base keeps unchanged files where they were, so a hotfix reads almost
// nothing. Any other file of equal size is compared byte by byte. The
// answer never misses a change; it never names an unchanged file.
package treediff

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/loopcast/loopcast/image"
)

// Result is what Changed found.
type Result struct {
	// Paths are the entries, relative to the trees' roots, that differ:
	// regular files of other content, symlinks with another target,
	// entries of another type, and entries only in one tree (files, links,
	// and directories only in the new tree; what a directory only in the
	// old tree held is named, file by file).
	Paths []string
	// Links is true when a symlink differs (another target, added,
	// removed, or replacing or replaced by another type): a link can
	// redirect a whole subtree, and PHP caches what paths resolve to, so
	// the names in Paths do not say all that changed.
	Links bool
	// Files is how many regular files the new tree holds; Read is how many
	// of them had to be compared byte by byte, ReadBytes how many bytes
	// that read from each tree.
	Files, Read int
	ReadBytes   int64
}

// Tree is one side of a comparison: a mounted tree and, when known, the
// manifest of the image it is mounted from.
type Tree struct {
	Dir      string
	Manifest *image.Manifest // nil: every file of equal size is read
}

type entry struct {
	mode fs.FileMode // type bits only
	size int64
}

// Changed returns the entries that differ between old and new.
func Changed(ctx context.Context, old, new Tree) (*Result, error) {
	oldEntries, err := walk(ctx, old.Dir)
	if err != nil {
		return nil, err
	}
	newEntries, err := walk(ctx, new.Dir)
	if err != nil {
		return nil, err
	}
	chunks := sameChunks(old.Manifest, new.Manifest)
	res := &Result{}
	for rel, n := range newEntries {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		if n.mode.IsRegular() {
			res.Files++
		}
		o, ok := oldEntries[rel]
		switch {
		case !ok || o.mode != n.mode:
			res.Paths = append(res.Paths, rel)
			res.Links = res.Links || n.mode&fs.ModeSymlink != 0 || ok && o.mode&fs.ModeSymlink != 0
		case n.mode&fs.ModeSymlink != 0:
			a, err1 := os.Readlink(filepath.Join(old.Dir, rel))
			b, err2 := os.Readlink(filepath.Join(new.Dir, rel))
			if err := errors.Join(err1, err2); err != nil {
				return nil, fmt.Errorf("treediff: %w", err)
			}
			if a != b {
				res.Paths = append(res.Paths, rel)
				res.Links = true
			}
		case n.mode.IsRegular():
			same, read, err := sameFile(filepath.Join(old.Dir, rel), filepath.Join(new.Dir, rel), o.size, n.size, chunks)
			if err != nil {
				return nil, err
			}
			if read {
				res.Read++
				res.ReadBytes += n.size
			}
			if !same {
				res.Paths = append(res.Paths, rel)
			}
		}
	}
	for rel, o := range oldEntries {
		if _, ok := newEntries[rel]; !ok && !o.mode.IsDir() {
			res.Paths = append(res.Paths, rel)
			res.Links = res.Links || o.mode&fs.ModeSymlink != 0
		}
	}
	slices.Sort(res.Paths)
	return res, nil
}

// walk lists every entry under dir but lost+found, by relative path.
func walk(ctx context.Context, dir string) (map[string]entry, error) {
	out := map[string]entry{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		if rel == "." {
			return nil
		}
		if rel == "lost+found" && d.IsDir() {
			return filepath.SkipDir
		}
		e := entry{mode: d.Type()}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			e.size = fi.Size()
		}
		out[rel] = e
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("treediff: %w", err)
	}
	return out, nil
}

// chunkCheck says whether the image bytes [off, off+n) are the same in
// both images, by their chunks' digests; nil when the manifests cannot
// tell (one is missing, or they chunk differently).
type chunkCheck func(off, n uint64) bool

func sameChunks(a, b *image.Manifest) chunkCheck {
	if a == nil || b == nil || a.ChunkSize != b.ChunkSize || a.ChunkSize == 0 {
		return nil
	}
	cs := uint64(a.ChunkSize)
	return func(off, n uint64) bool {
		if n == 0 {
			return true
		}
		first, last := off/cs, (off+n-1)/cs
		if last >= uint64(len(a.Chunks)) || last >= uint64(len(b.Chunks)) {
			return false
		}
		for i := first; i <= last; i++ {
			if a.Chunks[i] != b.Chunks[i] {
				return false
			}
		}
		return true
	}
}

// sameFile compares two regular files; read says it had to read them.
func sameFile(a, b string, sizeA, sizeB int64, chunks chunkCheck) (same, read bool, err error) {
	if sizeA != sizeB {
		return false, false, nil
	}
	fa, err := os.Open(a)
	if err != nil {
		return false, false, fmt.Errorf("treediff: %w", err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, false, fmt.Errorf("treediff: %w", err)
	}
	defer fb.Close()
	if chunks != nil {
		xa, okA, err := extents(fa)
		if err != nil {
			return false, false, err
		}
		xb, okB, err := extents(fb)
		if err != nil {
			return false, false, err
		}
		if okA && okB && slices.Equal(xa, xb) && allSame(xa, chunks) {
			return true, false, nil
		}
	}
	same, err = sameBytes(fa, fb)
	return same, true, err
}

func allSame(xs []extent, chunks chunkCheck) bool {
	for _, x := range xs {
		if !chunks(x.physical, x.length) {
			return false
		}
	}
	return true
}

// sameBytes compares two readers of equal length.
func sameBytes(a, b io.Reader) (bool, error) {
	const bufSize = 256 << 10
	ba, bb := make([]byte, bufSize), make([]byte, bufSize)
	for {
		na, errA := io.ReadFull(a, ba)
		nb, errB := io.ReadFull(b, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		endA := errA == io.EOF || errA == io.ErrUnexpectedEOF
		endB := errB == io.EOF || errB == io.ErrUnexpectedEOF
		if endA && endB {
			return true, nil
		}
		if err := errors.Join(ignoreEOF(errA), ignoreEOF(errB)); err != nil {
			return false, fmt.Errorf("treediff: %w", err)
		}
		if endA != endB {
			return false, nil
		}
	}
}

func ignoreEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

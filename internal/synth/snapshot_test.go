package synth

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"syscall"
	"testing"
)

// entry describes one path of a tree: everything Generate promises to
// reproduce.
type entry struct {
	kind   byte // 'd', 'f', 'l'
	mode   fs.FileMode
	mtime  int64
	size   int64
	sum    string // sha256 of a file's content, or a symlink's target
	nlink  uint64
	leader string // for files: the lexically first path of the same inode
}

func (e entry) String() string {
	return fmt.Sprintf("%c %v mtime=%d size=%d nlink=%d sum=%.16s leader=%s", e.kind, e.mode, e.mtime, e.size, e.nlink, e.sum, e.leader)
}

// snapshot walks dir (root excluded) and describes every entry.
func snapshot(t testing.TB, dir string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	leaders := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		fi, err := os.Lstat(p)
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		e := entry{mode: fi.Mode(), mtime: st.Mtim.Sec, size: fi.Size(), nlink: uint64(st.Nlink)}
		switch {
		case fi.IsDir():
			e.kind, e.size, e.nlink = 'd', 0, 0 // sizes depend on the file system
		case fi.Mode()&fs.ModeSymlink != 0:
			e.kind = 'l'
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			e.sum = target
		default:
			e.kind = 'f'
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			e.sum = fmt.Sprintf("%x", sha256.Sum256(b))
			if _, ok := leaders[st.Ino]; !ok { // WalkDir is lexical
				leaders[st.Ino] = rel
			}
			e.leader = leaders[st.Ino]
		}
		out[filepath.ToSlash(rel)] = e
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// diffSnapshots returns up to max differences between two snapshots.
func diffSnapshots(a, b map[string]entry, max int) []string {
	var diffs []string
	for _, p := range sortedKeys(a, b) {
		ea, oka := a[p]
		eb, okb := b[p]
		if oka != okb || ea != eb {
			diffs = append(diffs, fmt.Sprintf("%s:\n  got  %v (present %v)\n  want %v (present %v)", p, eb, okb, ea, oka))
			if len(diffs) == max {
				break
			}
		}
	}
	return diffs
}

func sortedKeys(ms ...map[string]entry) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

func generate(t testing.TB, o Options) (string, Stats) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	st, err := Generate(t.Context(), dir, o)
	if err != nil {
		t.Fatalf("Generate(%+v): %v", o, err)
	}
	return dir, st
}

// snapshotDigest hashes a snapshot in path order.
func snapshotDigest(s map[string]entry) string {
	h := sha256.New()
	for _, p := range sortedKeys(s) {
		fmt.Fprintf(h, "%s\x00%v\n", p, s[p])
	}
	return fmt.Sprintf("%x", h.Sum(nil))[:32]
}

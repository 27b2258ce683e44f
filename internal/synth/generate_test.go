package synth

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func smallOptions(t testing.TB, seed uint64) Options {
	o, err := PresetOptions(PresetSmall, seed)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

func TestGenerateDeterministic(t *testing.T) {
	o := smallOptions(t, 7)
	a, _ := generate(t, o)
	b, _ := generate(t, o)
	sa, sb := snapshot(t, a), snapshot(t, b)
	if len(sa) < SmallFiles {
		t.Fatalf("got %d entries, want at least %d", len(sa), SmallFiles)
	}
	for _, d := range diffSnapshots(sa, sb, 10) {
		t.Errorf("same seed, different tree: %s", d)
	}
	for _, root := range []string{a, b} {
		if fi, err := os.Stat(root); err != nil || fi.ModTime().Unix() != mtimeBase+7 {
			t.Errorf("root %s mtime: got %v (%v), want %d", root, fi.ModTime().Unix(), err, mtimeBase+7)
		}
	}
}

func TestGenerateSeedsDiffer(t *testing.T) {
	a, _ := generate(t, smallOptions(t, 1))
	b, _ := generate(t, smallOptions(t, 2))
	sa, sb := snapshot(t, a), snapshot(t, b)
	same := 0
	for p, e := range sa {
		if e.kind == 'f' && e.size > 0 && sb[p] == e {
			same++
		}
	}
	if same > 10 { // the fixed skeleton may coincide, contents may not
		t.Errorf("seeds 1 and 2: %d identical non-empty files, want (almost) none", same)
	}
	if d := diffSnapshots(sa, sb, 1); len(d) == 0 {
		t.Error("seeds 1 and 2 gave the same tree")
	}
}

func TestGenerateStats(t *testing.T) {
	o := smallOptions(t, 3)
	dir, st := generate(t, o)
	var got Stats
	inodes := map[string]int64{} // leader path -> size
	for _, e := range snapshot(t, dir) {
		switch e.kind {
		case 'd':
			got.Dirs++
		case 'l':
			got.Symlinks++
		case 'f':
			inodes[e.leader] = e.size
			got.HardLinks++ // every name; the inodes are subtracted below
		}
	}
	got.Files = len(inodes)
	got.HardLinks -= len(inodes)
	for _, size := range inodes {
		got.Bytes += size
	}
	if got != st {
		t.Errorf("walk found %v, Generate reported %v", got, st)
	}
	if st.Files != o.Files {
		t.Errorf("files: got %d, want %d", st.Files, o.Files)
	}
	if lo, hi := o.Bytes*99/100, o.Bytes*101/100; st.Bytes < lo || st.Bytes > hi {
		t.Errorf("bytes: got %d, want %d ±1%%", st.Bytes, o.Bytes)
	}
}

// TestGenerateSpecials checks the entries an image writer must handle.
func TestGenerateSpecials(t *testing.T) {
	dir, _ := generate(t, smallOptions(t, 4))
	var setuid, setgidDir, stickyDir, exec, empty, hard, fastLink, slowLink, bigFile bool
	for p, e := range snapshot(t, dir) {
		setuid = setuid || e.kind == 'f' && e.mode&fs.ModeSetuid != 0
		setgidDir = setgidDir || e.kind == 'd' && e.mode&fs.ModeSetgid != 0
		stickyDir = stickyDir || e.kind == 'd' && e.mode&fs.ModeSticky != 0
		exec = exec || e.kind == 'f' && e.mode&0o111 != 0 && e.mode&fs.ModeSetuid == 0
		empty = empty || e.kind == 'f' && e.size == 0
		hard = hard || e.kind == 'f' && e.nlink > 1 && e.leader != p
		fastLink = fastLink || e.kind == 'l' && len(e.sum) < 60
		slowLink = slowLink || e.kind == 'l' && len(e.sum) >= 60
		bigFile = bigFile || e.kind == 'f' && e.size >= bigMin
	}
	for name, ok := range map[string]bool{"setuid file": setuid, "setgid dir": setgidDir, "sticky dir": stickyDir,
		"executable": exec, "empty file": empty, "hard link": hard, "symlink < 60 bytes": fastLink,
		"symlink >= 60 bytes": slowLink, "file >= 1 MiB": bigFile} {
		if !ok {
			t.Errorf("small tree has no %s", name)
		}
	}
	// Every relative symlink into the tree resolves, except the dangling ones.
	for p, e := range snapshot(t, dir) {
		if e.kind == 'l' && !strings.HasPrefix(e.sum, "/") && !strings.HasPrefix(e.sum, "missing/") {
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				t.Errorf("symlink %s -> %s does not resolve: %v", p, e.sum, err)
			}
		}
	}
}

func TestGenerateNotEmpty(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Generate(t.Context(), dir, smallOptions(t, 1)); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Errorf("Generate into a non-empty dir: got %v, want a 'not empty' error", err)
	}
}

func TestGenerateCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := Generate(ctx, filepath.Join(t.TempDir(), "t"), smallOptions(t, 1))
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Generate with a canceled context: got %v, want context.Canceled", err)
	}
}

// goldenSmallSeed1 is the digest of the small preset with seed 1 (from
// snapshotDigest). It changes only when the generator changes on purpose —
// which also changes every tree a benchmark or test has cached: update it
// from the failure message then.
const goldenSmallSeed1 = "374544417767d3c0a5bafbbef250a44f"

func TestGenerateGolden(t *testing.T) {
	dir, _ := generate(t, smallOptions(t, 1))
	if got := snapshotDigest(snapshot(t, dir)); got != goldenSmallSeed1 {
		t.Errorf("small preset, seed 1: digest %s, want %s (generator changed?)", got, goldenSmallSeed1)
	}
}

package image

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testenv"
	"golang.org/x/sys/unix"
)

// treeBuilder makes source trees for tests with fixed content and times.
type treeBuilder struct {
	t    testing.TB
	root string
	rng  *rand.Rand
	// times are applied last, deepest first, so directory mtimes stick
	times map[string]time.Time
}

func newTreeBuilder(t testing.TB, root string, seed uint64) *treeBuilder {
	return &treeBuilder{t: t, root: root, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)), times: map[string]time.Time{}}
}

func (b *treeBuilder) path(rel string) string { return filepath.Join(b.root, rel) }

func (b *treeBuilder) stamp(rel string) {
	b.times[rel] = time.Unix(1_700_000_000+b.rng.Int64N(50_000_000), b.rng.Int64N(1e9))
}

func (b *treeBuilder) dir(rel string, perm os.FileMode) {
	if err := os.MkdirAll(b.path(rel), 0o755); err != nil {
		b.t.Fatal(err)
	}
	b.chmod(rel, perm)
	b.stamp(rel)
}

func (b *treeBuilder) file(rel string, data []byte, perm os.FileMode) {
	b.dir(filepath.Dir(rel), 0o755)
	if err := os.WriteFile(b.path(rel), data, 0o644); err != nil {
		b.t.Fatal(err)
	}
	b.chmod(rel, perm)
	b.stamp(rel)
}

func (b *treeBuilder) chmod(rel string, perm os.FileMode) {
	// os.Chmod drops setuid/setgid/sticky unless given as Go mode bits
	if err := unix.Chmod(b.path(rel), uint32(perm)); err != nil {
		b.t.Fatal(err)
	}
}

func (b *treeBuilder) random(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(b.rng.Uint32())
	}
	return p
}

// text returns compressible, source-like bytes.
func (b *treeBuilder) text(n int) []byte {
	words := []string{"<?php", "function", "return", "$this->", "array(", ");", "\n", "class", "public", "static", "echo"}
	var buf bytes.Buffer
	for buf.Len() < n {
		buf.WriteString(words[b.rng.IntN(len(words))])
		buf.WriteByte(' ')
	}
	return buf.Bytes()[:n]
}

func (b *treeBuilder) symlink(rel, target string) {
	b.dir(filepath.Dir(rel), 0o755)
	if err := os.Symlink(target, b.path(rel)); err != nil {
		b.t.Fatal(err)
	}
	b.stamp(rel)
}

func (b *treeBuilder) hardlink(rel, existing string) {
	b.dir(filepath.Dir(rel), 0o755)
	if err := os.Link(b.path(existing), b.path(rel)); err != nil {
		b.t.Fatal(err)
	}
}

// sparse makes a file of size bytes that holds data only at offsets.
func (b *treeBuilder) sparse(rel string, size int64, offsets ...int64) {
	b.file(rel, nil, 0o644)
	f, err := os.OpenFile(b.path(rel), os.O_WRONLY, 0)
	if err != nil {
		b.t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		testenv.Missing(b.t, "filesystem of %s cannot hold a sparse file of %d bytes: %v", b.root, size, err)
	}
	for _, off := range offsets {
		if _, err := f.WriteAt(b.random(5000), off); err != nil {
			b.t.Fatal(err)
		}
	}
}

// finish applies the recorded timestamps, deepest paths first.
func (b *treeBuilder) finish() {
	paths := make([]string, 0, len(b.times))
	for p := range b.times {
		paths = append(paths, p)
	}
	// deeper first, so setting a child's time does not disturb its parent
	slicesSortByDepth(paths)
	for _, rel := range paths {
		ts := unix.NsecToTimespec(b.times[rel].UnixNano())
		err := unix.UtimesNanoAt(unix.AT_FDCWD, b.path(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW)
		if err != nil {
			b.t.Fatal(err)
		}
	}
}

func slicesSortByDepth(p []string) {
	depth := func(s string) int { return strings.Count(s, "/") }
	for i := 1; i < len(p); i++ { // insertion sort: test trees are small
		for j := i; j > 0 && (depth(p[j]) > depth(p[j-1]) || depth(p[j]) == depth(p[j-1]) && p[j] < p[j-1]); j-- {
			p[j], p[j-1] = p[j-1], p[j]
		}
	}
}

const (
	singleIndirectSize = (directBlocks + 10) * blockSize
	doubleIndirectSize = (directBlocks+ptrsPerBlock)*blockSize + 3*ptrsPerBlock*blockSize/2
	tripleStart        = (directBlocks + ptrsPerBlock + ptrsPerBlock*ptrsPerBlock) * blockSize
)

// everyKind builds a tree with every entry kind the writer supports. With
// huge, it adds a sparse file reaching triple indirection (~4 GiB, mostly
// holes).
func everyKind(t testing.TB, root string, huge bool) {
	b := newTreeBuilder(t, root, 1)
	b.dir(".", 0o755)
	b.file("empty", nil, 0o644)
	b.file("index.php", b.text(700), 0o644)
	b.file("direct.bin", b.random(10*blockSize+123), 0o600)
	b.file("single.bin", b.random(singleIndirectSize+77), 0o644)
	b.file("double.bin", b.random(doubleIndirectSize+5), 0o644)
	b.file("zeros.bin", make([]byte, 20*blockSize), 0o644)
	b.file("mixed.bin", append(append(b.random(5000), make([]byte, 3*blockSize)...), b.random(9000)...), 0o644)
	b.file("bin/run.sh", b.text(300), 0o4755)
	b.file("bin/sgid", b.text(30), 0o2711)
	b.file("bin/noperm", b.text(30), 0)
	b.dir("tmp", 0o1777)
	b.dir("shared", 0o2775)
	b.file("deep/a/b/c/d/e/f/g/h/i/j/k/leaf.php", b.text(2000), 0o644)
	b.file(strings.Repeat("n", 255), b.text(10), 0o644)
	b.file("bytes-\xff\xfe-name", b.text(10), 0o644)
	b.file("future.php", b.text(10), 0o644)
	for i := range 3000 {
		name := strings.Repeat("x", i%40) + "-" + string(rune('a'+i%26)) + "-" + itoa(i)
		b.file("many/"+name, b.text(i%50), 0o644)
	}
	b.symlink("fast", "index.php")
	b.symlink("edge59", strings.Repeat("s", fastSymlinkMax))
	b.symlink("edge60", strings.Repeat("s", fastSymlinkMax+1))
	b.symlink("slow", "deep/a/b/c/d/e/f/g/h/i/j/k/../../../../../../../../../../../index.php/"+strings.Repeat("z", 100))
	b.symlink("longest", strings.Repeat("L/", 2000))
	b.symlink("dangling", "does/not/exist")
	b.hardlink("many/hl-index", "index.php")
	b.hardlink("deep/hl-index", "index.php")
	b.hardlink("bin/hl-big", "double.bin")
	if huge {
		b.sparse("sparse/triple.bin", tripleStart+3*blockSize+100, 0, 7*blockSize*ptrsPerBlock, tripleStart-9, tripleStart+3*blockSize)
	}
	b.finish()
	future := time.Unix(1<<32+12345, 678) // past 2106: needs the epoch bits
	if err := os.Chtimes(b.path("future.php"), future, future); err != nil {
		t.Fatal(err)
	}
}

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var s []byte
	for ; i > 0; i /= 10 {
		s = append([]byte{digits[i%10]}, s...)
	}
	return string(s)
}

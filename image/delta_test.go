package image

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/synth"
	"github.com/loopcast/loopcast/internal/testenv"
)

// deltaTree is the base tree of the change-set tests: every entry kind,
// a file of exactly 12 blocks (all direct), a directory one block full,
// and a directory to delete.
func deltaTree(t testing.TB, root string) {
	b := newTreeBuilder(t, root, 5)
	b.dir(".", 0o755)
	b.file("index.php", b.text(5000), 0o644)
	b.file("edge.bin", b.random(directBlocks*blockSize), 0o644)
	b.file("single.bin", b.random(singleIndirectSize+77), 0o644)
	b.file("mixed.bin", append(append(b.random(5000), make([]byte, 3*blockSize)...), b.random(9000)...), 0o644)
	for i := range 120 { // 120 × 32-byte records: one block, nearly full
		b.file(fmt.Sprintf("full/entry-%018d.php", i), b.text(100+i), 0o644)
	}
	for i := range 40 {
		b.file(fmt.Sprintf("src/Lib%03d.php", i), b.text(300*i), 0o644)
		b.file(fmt.Sprintf("gone/sub/Old%03d.php", i), b.text(4000+i), 0o644)
	}
	b.symlink("fast", "index.php")
	b.symlink("slow", string(bytes.Repeat([]byte("s/"), 50)))
	b.hardlink("src/index-link.php", "index.php")
	b.finish()
}

// changeSets edit a copy of deltaTree; each names what it does.
var changeSets = []struct {
	name   string
	change func(t testing.TB, root string)
}{
	{"modify", func(t testing.TB, root string) {
		rewrite(t, root, "index.php", func(p []byte) []byte { p[100] ^= 1; return p })
		rewrite(t, root, "src/Lib007.php", func(p []byte) []byte { return append(p, "// fix\n"...) })
	}},
	{"add", func(t testing.TB, root string) {
		must(t, os.WriteFile(filepath.Join(root, "src", "New.php"), bytes.Repeat([]byte("new "), 3000), 0o644))
		must(t, os.MkdirAll(filepath.Join(root, "brand/new/dir"), 0o755))
		must(t, os.WriteFile(filepath.Join(root, "brand/new/dir/x.php"), []byte("x"), 0o644))
	}},
	{"delete", func(t testing.TB, root string) {
		must(t, os.Remove(filepath.Join(root, "src", "Lib003.php")))
		must(t, os.Remove(filepath.Join(root, "single.bin")))
	}},
	{"grow-indirect", func(t testing.TB, root string) { // 12 direct blocks → 14 blocks and an indirect one
		rewrite(t, root, "edge.bin", func(p []byte) []byte { return append(p, bytes.Repeat([]byte{7}, 2*blockSize)...) })
	}},
	{"grow-dir", func(t testing.TB, root string) {
		for i := range 40 {
			must(t, os.WriteFile(filepath.Join(root, "full", fmt.Sprintf("added-%02d.php", i)), []byte("a"), 0o644))
		}
	}},
	{"delete-dir", func(t testing.TB, root string) { must(t, os.RemoveAll(filepath.Join(root, "gone"))) }},
	{"replace-kind", func(t testing.TB, root string) { // a file becomes a directory, a symlink a file
		must(t, os.Remove(filepath.Join(root, "src", "Lib010.php")))
		must(t, os.MkdirAll(filepath.Join(root, "src", "Lib010.php"), 0o755))
		must(t, os.Remove(filepath.Join(root, "fast")))
		must(t, os.WriteFile(filepath.Join(root, "fast"), []byte("now a file"), 0o644))
	}},
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func rewrite(t testing.TB, root, rel string, f func([]byte) []byte) {
	t.Helper()
	p := filepath.Join(root, rel)
	data, err := os.ReadFile(p)
	must(t, err)
	must(t, os.WriteFile(p, f(data), 0o644))
}

func copyTree(t testing.TB, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "tree")
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	return dst
}

var deltaEpoch = int64(1_700_000_000)

// buildOn builds src on the base image base ("" for none).
func buildOn(t testing.TB, src, base string) (string, *Result) {
	t.Helper()
	return build(t, src, Options{Epoch: &deltaEpoch, HeadroomPct: DefaultHeadroomPct, Base: base})
}

// TestBaseChangeSets builds each change set on the base image, then every
// change set at once, and a second delta on top: each image is clean, keeps
// the base geometry, and every unchanged path keeps its inode and blocks.
func TestBaseChangeSets(t *testing.T) {
	testenv.RequireTool(t, "e2fsck")
	src := t.TempDir()
	deltaTree(t, src)
	a, _ := buildOn(t, src, "")
	fsck(t, a)
	for _, cs := range append(changeSets, struct {
		name   string
		change func(t testing.TB, root string)
	}{"all", func(t testing.TB, root string) {
		for _, cs := range changeSets {
			cs.change(t, root)
		}
	}}) {
		t.Run(cs.name, func(t *testing.T) {
			dst := copyTree(t, src)
			cs.change(t, dst)
			b, res := buildOn(t, dst, a)
			fsck(t, b)
			checkManifest(t, b, res.Manifest)
			if res.Base == nil || !res.Base.Kept {
				t.Fatalf("base not kept: %+v", res.Base)
			}
			t.Logf("%+v", *res.Base)
			if sa, sb := fileSize(t, a), fileSize(t, b); sa != sb {
				t.Errorf("image size %d, base %d: the geometry changed", sb, sa)
			}
			checkKept(t, a, b)
			// a second delta on top of the first
			rewrite(t, dst, "src/Lib020.php", func(p []byte) []byte { return append(p, "// again\n"...) })
			c, _ := buildOn(t, dst, b)
			fsck(t, c)
			checkKept(t, b, c)
		})
	}
}

func fileSize(t testing.TB, p string) int64 {
	fi, err := os.Stat(p)
	must(t, err)
	return fi.Size()
}

// checkKept checks in the layouts of images a and b that every regular file
// of the same content in both has the same inode and blocks, and every
// directory in both the same inode.
func checkKept(t *testing.T, a, b string) {
	t.Helper()
	la, err := readLayoutFile(a + LayoutSuffix)
	must(t, err)
	lb, err := readLayoutFile(b + LayoutSuffix)
	must(t, err)
	pa, pb := layoutPaths(la), layoutPaths(lb)
	kept := 0
	for path, j := range pb {
		i, ok := pa[path]
		if !ok {
			continue
		}
		ea, eb := &la.entries[i], &lb.entries[j]
		if ea.kind != eb.kind || ea.link || eb.link {
			continue
		}
		if ea.kind == kindFile && (ea.size != eb.size || ea.hash != eb.hash) {
			continue // changed
		}
		if ea.ino != eb.ino {
			t.Errorf("%s: inode %d, was %d", path, eb.ino, ea.ino)
		}
		if ea.kind == kindFile && !slices.Equal(la.blocks(ea), lb.blocks(eb)) {
			t.Errorf("%s: unchanged file moved from %v to %v", path, la.blocks(ea), lb.blocks(eb))
		}
		kept++
	}
	if kept == 0 {
		t.Error("no entry kept")
	}
}

func layoutPaths(l *layout) map[string]int {
	paths := make([]string, len(l.entries))
	m := make(map[string]int, len(l.entries))
	for i := 1; i < len(l.entries); i++ {
		e := &l.entries[i]
		paths[i] = paths[e.parent] + "/" + e.name
		m[paths[i]] = i
	}
	return m
}

// TestBaseDeterministic: the same tree on the same base gives the same
// image, also from a copy of the tree (other inode numbers and directory
// order on the source disk).
func TestBaseDeterministic(t *testing.T) {
	src := t.TempDir()
	deltaTree(t, src)
	a, _ := buildOn(t, src, "")
	dst := copyTree(t, src)
	for _, cs := range changeSets {
		cs.change(t, dst)
	}
	b1, _ := buildOn(t, dst, a)
	b2, _ := buildOn(t, dst, a)
	b3, _ := buildOn(t, copyTree(t, dst), a)
	if h1, h2, h3 := fileSHA(t, b1), fileSHA(t, b2), fileSHA(t, b3); h1 != h2 || h1 != h3 {
		t.Errorf("images on one base differ: %x %x %x", h1, h2, h3)
	}
	// the layouts place everything alike; only what the scans saw of the
	// sources (stat, time) differs
	l1, l3 := placement(t, b1), placement(t, b3)
	if !slices.EqualFunc(l1.entries, l3.entries, func(a, b layoutEntry) bool { return a == b }) || !slices.Equal(l1.exts, l3.exts) {
		t.Error("layouts of one tree on one base differ")
	}
}

// fsType names the filesystem path is on.
func fsType(t *testing.T, path string) string {
	out, err := exec.Command("stat", "-f", "-c", "%T", path).Output()
	must(t, err)
	return strings.TrimSpace(string(out))
}

// placement reads img's layout without what the scan saw of the sources.
func placement(t *testing.T, img string) *layout {
	t.Helper()
	l, err := readLayoutFile(img + LayoutSuffix)
	must(t, err)
	for i := range l.entries {
		l.entries[i].src = srcStat{}
	}
	return l
}

// TestBaseTrustsUnchangedFiles builds a tree, changes it in place (one file
// rewritten to the same size with its old mtime put back, so only its
// change time tells) and builds it again on the first image, on XFS with
// reflink: the build starts from a reflink of the base image, reads only
// the files that changed, and makes the same image, byte for byte, as a
// build that writes every block, and as one from a copy of the tree
// (nothing trusted). On a filesystem without reflink the build writes the
// image whole, as before.
func TestBaseTrustsUnchangedFiles(t *testing.T) {
	testenv.RequireTool(t, "e2fsck")
	testenv.RequireLoop(t)
	testenv.RequireTool(t, "mkfs.xfs")
	xfs := mounttest.ScratchFS(t, "mkfs.xfs", "-q", "-m", "reflink=1")
	n := 0
	buildOn := func(t *testing.T, src, base string) (string, *Result) { // into the XFS
		t.Helper()
		n++
		out := filepath.Join(xfs, fmt.Sprintf("b%d.img", n))
		res, err := Build(context.Background(), src, out, Options{Epoch: &deltaEpoch, HeadroomPct: DefaultHeadroomPct, Base: base})
		if err != nil {
			t.Fatal(err)
		}
		return out, res
	}
	src := t.TempDir()
	deltaTree(t, src)
	time.Sleep(time.Duration(racyWindow) + 100*time.Millisecond) // older than the racy window at A's scan
	a, _ := buildOn(t, src, "")
	old, err := os.Stat(filepath.Join(src, "index.php"))
	must(t, err)
	rewrite(t, src, "index.php", func(p []byte) []byte { p[7] ^= 0x20; return p })
	must(t, os.Chtimes(filepath.Join(src, "index.php"), old.ModTime(), old.ModTime()))
	for _, cs := range changeSets[1:] { // add, delete, grow, kinds
		cs.change(t, src)
	}
	var opened []string
	testHookOpened = func(p string) { opened = append(opened, p) }
	b1, r1 := buildOn(t, src, a)
	testHookOpened = nil
	if !r1.Base.Kept || !r1.Base.Cloned || r1.Base.Trusted == 0 {
		t.Fatalf("build on the base: %+v; want it kept, cloned, files trusted", *r1.Base)
	}
	rel := func(p string) string { r, _ := filepath.Rel(src, p); return r }
	for _, p := range opened {
		switch r := rel(p); {
		case r == "index.php", r == "edge.bin", strings.HasPrefix(r, "src/New"), strings.HasPrefix(r, "brand/"),
			r == "mixed.bin", // zero blocks are holes in the image: read, not trusted
			strings.HasPrefix(r, "full/added-"), r == "fast":
		default:
			t.Errorf("read %s, which did not change", r)
		}
	}
	if !slices.ContainsFunc(opened, func(p string) bool { return rel(p) == "index.php" }) {
		t.Fatal("index.php, rewritten with its old mtime, was not read: its change time must tell")
	}
	t.Logf("read %d files, %d trusted: %+v", len(opened), r1.Base.Trusted, *r1.Base)

	testNoClone = true
	b2, r2 := buildOn(t, src, a)
	testNoClone = false
	b3, r3 := buildOn(t, copyTree(t, src), a)
	if r2.Base.Cloned || r3.Base.Trusted != 0 {
		t.Fatalf("comparison builds: %+v, %+v", *r2.Base, *r3.Base)
	}
	// and where the base cannot be reflinked (the test's temporary
	// directory is not XFS): the image is written whole
	plainBase := filepath.Join(t.TempDir(), "a.img")
	for _, suffix := range []string{"", ".manifest", LayoutSuffix, PackSuffix} {
		if out, err := exec.Command("cp", a+suffix, plainBase+suffix).CombinedOutput(); err != nil {
			t.Fatalf("cp: %v %s", err, out)
		}
	}
	b4, r4 := build(t, src, Options{Epoch: &deltaEpoch, HeadroomPct: DefaultHeadroomPct, Base: plainBase})
	if fsType(t, plainBase) != "xfs" && (r4.Base.Cloned || r4.Base.Trusted != 0) {
		t.Fatalf("a build on a base it cannot reflink: %+v", *r4.Base)
	}
	if h1, h2, h3, h4 := fileSHA(t, b1), fileSHA(t, b2), fileSHA(t, b3), fileSHA(t, b4); h1 != h2 || h1 != h3 || h1 != h4 {
		t.Fatalf("a build from a reflink of the base differs from builds that write every block: %x %x %x %x", h1, h2, h3, h4)
	}
	if r1.Manifest.ImageDigest != r2.Manifest.ImageDigest {
		t.Fatal("manifests differ")
	}
	fsck(t, b1)
	checkManifest(t, b1, r1.Manifest)
}

// TestBaseMountMatchesSource loop-mounts an image built on a base (after
// every change set) and compares it with its source.
func TestBaseMountMatchesSource(t *testing.T) {
	testenv.RequireLoop(t)
	src := t.TempDir()
	deltaTree(t, src)
	a, _ := build(t, src, Options{Base: ""})
	dst := copyTree(t, src)
	for _, cs := range changeSets {
		cs.change(t, dst)
	}
	b, res := build(t, dst, Options{Base: a})
	if !res.Base.Kept {
		t.Fatalf("base not kept: %s", res.Base.Why)
	}
	compareTrees(t, dst, mounttest.LoopMount(t, b, "-o", "ro", "-t", "ext2"), true)
}

// TestBaseOneFileFewChunks: one changed file in a ~300-file synthetic tree
// changes only a handful of 1 MiB chunks on a base; the same change
// without one is logged for comparison.
func TestBaseOneFileFewChunks(t *testing.T) {
	src := filepath.Join(t.TempDir(), "tree")
	if _, err := synth.Generate(context.Background(), src, synth.Options{Seed: 3, Files: synth.SmallFiles, Bytes: synth.SmallBytes}); err != nil {
		t.Fatal(err)
	}
	a, ra := buildOn(t, src, "")
	cs, err := synth.ApplyChanges(src, synth.ChangeSet{Seed: 9, Modify: 1})
	if err != nil {
		t.Fatal(err)
	}
	b, rb := buildOn(t, src, a)
	fsck(t, b)
	_, rf := buildOn(t, src, "")
	diff, fresh := chunksDiffer(ra.Manifest, rb.Manifest), chunksDiffer(ra.Manifest, rf.Manifest)
	t.Logf("modified %s: %d of %d chunks differ on the base, %d in a fresh layout", cs.Modified[0], diff, len(ra.Manifest.Chunks), fresh)
	if diff > 3 { // the file's data, the group-0 header (inode, bitmaps, descriptors), the directory
		t.Errorf("%d chunks differ after changing one file, want at most 3", diff)
	}
}

// chunksDiffer counts chunks of b whose hash differs from a's chunk at the
// same index (chunks beyond a's end count as different).
func chunksDiffer(a, b *Manifest) int {
	n := 0
	for i, c := range b.Chunks {
		if i >= len(a.Chunks) || a.Chunks[i].Hash != c.Hash {
			n++
		}
	}
	return n
}

// TestBaseFallsBackWhenFull: a tree that outgrows the base geometry gets a
// fresh layout, the same image as without a base, and the result says why.
func TestBaseFallsBackWhenFull(t *testing.T) {
	src := t.TempDir()
	deltaTree(t, src)
	a, _ := build(t, src, Options{Epoch: &deltaEpoch})
	must(t, os.WriteFile(filepath.Join(src, "big.bin"), bytes.Repeat([]byte("big!"), 2<<20), 0o644))
	b, res := build(t, src, Options{Epoch: &deltaEpoch, Base: a})
	if res.Base == nil || res.Base.Kept || res.Base.Why == "" {
		t.Fatalf("base report %+v, want a fresh layout with a reason", res.Base)
	}
	t.Logf("fell back: %s", res.Base.Why)
	c, _ := build(t, src, Options{Epoch: &deltaEpoch})
	if fileSHA(t, b) != fileSHA(t, c) {
		t.Error("the fallback image differs from a build without a base")
	}
	fsck(t, b)
}

func TestBaseMissingLayout(t *testing.T) {
	src := t.TempDir()
	must(t, os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644))
	err := buildErr(t, src, Options{Base: filepath.Join(t.TempDir(), "none.img")})
	wantErr(t, err, "none.img.layout")
	img, _ := build(t, src, Options{})
	for _, base := range []string{img, img + ".manifest", img + LayoutSuffix} {
		if _, res := build(t, src, Options{Base: base}); res.Base == nil || !res.Base.Kept {
			t.Errorf("build on %s: base %+v, want kept", base, res.Base)
		}
	}
	must(t, os.WriteFile(img+LayoutSuffix, []byte("LCLY\x01\x00\x00\x00junk"), 0o644))
	wantErr(t, buildErr(t, src, Options{Base: img}), img+LayoutSuffix)
	// BaseOptional: the same spoilt layout is laid out afresh, and says why
	b, res := build(t, src, Options{Base: img, BaseOptional: true})
	if res.Base == nil || res.Base.Kept || !strings.Contains(res.Base.Why, LayoutSuffix) {
		t.Errorf("optional base with a spoilt layout: %+v, want not kept, naming the layout", res.Base)
	}
	if fileSHA(t, b) != fileSHA(t, img) {
		t.Error("the image laid out afresh differs from a build without a base")
	}
}

// TestBaseMultiGroup: on an image of several groups the backup superblocks
// and descriptors keep the base's counts; e2fsck accepts them.
func TestBaseMultiGroup(t *testing.T) {
	testenv.RequireTool(t, "e2fsck")
	src := t.TempDir()
	deltaTree(t, src)
	opts := Options{Epoch: &deltaEpoch, Size: 300 << 20}
	a, _ := build(t, src, opts)
	dst := copyTree(t, src)
	for _, cs := range changeSets {
		cs.change(t, dst)
	}
	opts.Base = a
	b, res := build(t, dst, opts)
	if !res.Base.Kept {
		t.Fatalf("base not kept: %s", res.Base.Why)
	}
	fsck(t, b)
	checkKept(t, a, b)
}

// TestBaseRandomTrees is a property test: a random tree, randomly mutated
// (files deleted, rewritten, grown and shrunk across indirect levels,
// directories removed, kinds swapped, entries added), built on the image
// of the original, gives a clean image; so does the original built back on
// that one.
func TestBaseRandomTrees(t *testing.T) {
	testenv.RequireTool(t, "e2fsck")
	n := 12
	if testing.Short() {
		n = 4
	}
	for seed := range uint64(n) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			srcA := t.TempDir()
			randomTree(t, srcA, seed)
			srcB := copyTree(t, srcA)
			mutateTree(t, srcB, seed)
			opts := Options{HeadroomPct: 100, ChunkSize: MinChunkSize} // small chunks: many become final early
			a, _ := build(t, srcA, opts)
			opts.Base = a
			b, rb := build(t, srcB, opts)
			if !rb.Base.Kept {
				t.Errorf("base not kept: %s", rb.Base.Why)
			}
			fsck(t, b)
			checkManifest(t, b, rb.Manifest)
			opts.Base = b
			c, rc := build(t, srcA, opts)
			if !rc.Base.Kept {
				t.Errorf("base not kept on the way back: %s", rc.Base.Why)
			}
			fsck(t, c)
			checkManifest(t, c, rc.Manifest)
			t.Logf("B on A: %+v; A on B: %+v", *rb.Base, *rc.Base)
		})
	}
}

func mutateTree(t *testing.T, root string, seed uint64) {
	r := rand.New(rand.NewPCG(seed, 11))
	var paths []string
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if p != root {
			paths = append(paths, p)
		}
		return nil
	})
	for i, p := range paths {
		fi, err := os.Lstat(p)
		if err != nil {
			continue // removed with its directory
		}
		switch k := r.IntN(40); {
		case k < 4:
			must(t, os.RemoveAll(p))
		case k < 12 && fi.Mode().IsRegular():
			size := []int{0, 100, 12 * blockSize, 13 * blockSize, singleIndirectSize * 3, r.IntN(60000)}[r.IntN(6)]
			must(t, os.WriteFile(p, bytes.Repeat([]byte{byte(i)}, size), 0o644))
		case k == 12:
			must(t, os.RemoveAll(p))
			must(t, os.Mkdir(p, 0o755))
			for j := range r.IntN(60) {
				must(t, os.WriteFile(filepath.Join(p, fmt.Sprintf("n%03d-%s", j, strings.Repeat("w", r.IntN(40)))), []byte("x"), 0o644))
			}
		case k < 20 && fi.IsDir():
			must(t, os.WriteFile(filepath.Join(p, fmt.Sprintf("added-%d", i)), bytes.Repeat([]byte("add"), r.IntN(20000)), 0o644))
		}
	}
}

// checkManifest checks the chunk hashes taken while img was written (some
// of them early, as chunks became final) against a fresh read.
func checkManifest(t *testing.T, img string, m *Manifest) {
	t.Helper()
	fresh, err := HashFile(context.Background(), img, m.ChunkSize)
	must(t, err)
	if fresh.ImageDigest != m.ImageDigest || !slices.Equal(fresh.Chunks, m.Chunks) {
		t.Errorf("%s: manifest differs from a fresh HashFile of the image", img)
	}
}

// TestBaseStaleSidecars: an image replaced under its layout, manifest and
// pack (a crash mid-publish, or a copy over it) is not cloned: the build on
// it is the image a build writing every block makes, and fsck-clean.
func TestBaseStaleSidecars(t *testing.T) {
	testenv.RequireTool(t, "e2fsck")
	testenv.RequireLoop(t)
	testenv.RequireTool(t, "mkfs.xfs")
	xfs := mounttest.ScratchFS(t, "mkfs.xfs", "-q", "-m", "reflink=1")
	src := t.TempDir()
	deltaTree(t, src)
	time.Sleep(time.Duration(racyWindow) + 100*time.Millisecond)
	opts := Options{Epoch: &deltaEpoch, HeadroomPct: DefaultHeadroomPct}
	p, q := filepath.Join(xfs, "p.img"), filepath.Join(xfs, "q.img")
	if _, err := Build(context.Background(), src, p, opts); err != nil {
		t.Fatal(err)
	}
	more := copyTree(t, src)
	for i := range 30 {
		must(t, os.WriteFile(filepath.Join(more, fmt.Sprintf("added-%02d.php", i)), bytes.Repeat([]byte{byte(i)}, 9000), 0o644))
	}
	opts.Base = p
	if _, err := Build(context.Background(), more, q, opts); err != nil {
		t.Fatal(err)
	}
	must(t, os.Rename(q, p)) // p's manifest, layout and pack are now stale
	out := filepath.Join(xfs, "r.img")
	res, err := Build(context.Background(), src, out, opts)
	if err != nil {
		t.Fatal(err)
	}
	if res.Base.Cloned || res.Base.Trusted > 0 {
		t.Fatalf("a base whose image does not match its manifest was cloned: %+v", *res.Base)
	}
	testNoClone = true
	fresh, _ := buildOn(t, src, p)
	testNoClone = false
	if fileSHA(t, out) != fileSHA(t, fresh) {
		t.Fatal("the build on a stale base differs from one writing every block")
	}
	fsck(t, out)
	checkManifest(t, out, res.Manifest)
}

package image

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/testenv"
	"golang.org/x/sys/unix"
)

func build(t testing.TB, src string, opts Options) (string, *Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "app.img")
	res, err := Build(context.Background(), src, out, opts)
	if err != nil {
		t.Fatalf("Build(%s): %v", src, err)
	}
	return out, res
}

// fsck runs e2fsck -fn and fails the test on any finding.
func fsck(t testing.TB, img string) {
	t.Helper()
	e2fsck := testenv.RequireTool(t, "e2fsck")
	out, err := exec.Command(e2fsck, "-fn", img).CombinedOutput()
	if err != nil {
		t.Fatalf("e2fsck -fn %s: %v\n%s", img, err, out)
	}
}

func TestBuildEveryKindPassesFsck(t *testing.T) {
	src := t.TempDir()
	everyKind(t, src, !testing.Short())
	img, res := build(t, src, Options{})
	fsck(t, img)
	if err := (&Manifest{}).check(); err == nil {
		t.Fatal("empty manifest passed check")
	}
	m, err := ReadManifestFile(img + ".manifest")
	if err != nil {
		t.Fatal(err)
	}
	if m.ID() != res.Manifest.ID() || m.FileCount != res.Files {
		t.Errorf("manifest on disk differs from the result: %s/%d vs %s/%d", m.ID(), m.FileCount, res.Manifest.ID(), res.Files)
	}
	fi, _ := os.Stat(img)
	if fi.Size() != m.ImageSize {
		t.Errorf("image is %d bytes, manifest says %d", fi.Size(), m.ImageSize)
	}
	// chunks hashed while the image was written match a fresh read
	fresh, err := HashFile(context.Background(), img, m.ChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	if fresh.ImageDigest != m.ImageDigest || !slices.Equal(fresh.Chunks, m.Chunks) {
		t.Error("manifest differs from a fresh HashFile of the image")
	}
	if err := VerifyFile(context.Background(), img, m); err != nil {
		t.Errorf("VerifyFile of the built image: %v", err)
	}
}

// TestBuildMountMatchesSource loop-mounts the image (root only) and
// compares every entry with the source tree.
func TestBuildMountMatchesSource(t *testing.T) {
	testenv.RequireLoop(t)
	src := t.TempDir()
	everyKind(t, src, !testing.Short())
	img, _ := build(t, src, Options{})
	compareTrees(t, src, mounttest.LoopMount(t, img, "-o", "ro", "-t", "ext2"), true)
}

// compareTrees checks that dst holds what src holds: types, permission
// bits, sizes, bytes, symlink targets, mtimes and hard-link groups.
func compareTrees(t *testing.T, src, dst string, rootOwned bool) {
	t.Helper()
	inoMap := map[uint64]uint64{} // source inode -> image inode
	seen := 0
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		var a, b unix.Stat_t
		if err := unix.Lstat(p, &a); err != nil {
			return err
		}
		if err := unix.Lstat(filepath.Join(dst, rel), &b); err != nil {
			t.Errorf("%s: missing in image: %v", rel, err)
			return nil
		}
		seen++
		compareStat(t, rel, &a, &b, rootOwned)
		if prev, ok := inoMap[a.Ino]; ok && prev != b.Ino {
			t.Errorf("%s: hard link group split: image inode %d, want %d", rel, b.Ino, prev)
		}
		inoMap[a.Ino] = b.Ino
		switch a.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			if ha, hb := hashFile(t, p), hashFile(t, filepath.Join(dst, rel)); ha != hb {
				t.Errorf("%s: content differs", rel)
			}
		case unix.S_IFLNK:
			la, _ := os.Readlink(p)
			lb, _ := os.Readlink(filepath.Join(dst, rel))
			if la != lb {
				t.Errorf("%s: symlink target %q, want %q", rel, lb, la)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	extra := countEntries(t, dst) - seen
	if extra != 1 { // lost+found
		t.Errorf("image holds %d entries beyond the source's, want 1 (lost+found)", extra)
	}
}

func compareStat(t *testing.T, rel string, a, b *unix.Stat_t, rootOwned bool) {
	t.Helper()
	if a.Mode != b.Mode {
		t.Errorf("%s: mode %#o, want %#o", rel, b.Mode, a.Mode)
	}
	if a.Mode&unix.S_IFMT != unix.S_IFDIR && a.Size != b.Size {
		t.Errorf("%s: size %d, want %d", rel, b.Size, a.Size)
	}
	if a.Mode&unix.S_IFMT != unix.S_IFDIR && a.Nlink != b.Nlink {
		t.Errorf("%s: %d links, want %d", rel, b.Nlink, a.Nlink)
	}
	if a.Mtim != b.Mtim {
		t.Errorf("%s: mtime %d.%09d, want %d.%09d", rel, b.Mtim.Sec, b.Mtim.Nsec, a.Mtim.Sec, a.Mtim.Nsec)
	}
	if rootOwned && (b.Uid != 0 || b.Gid != 0) {
		t.Errorf("%s: owner %d:%d, want root", rel, b.Uid, b.Gid)
	}
}

func hashFile(t *testing.T, p string) uint64 {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := xxhash.New()
	if _, err := io.CopyBuffer(h, f, make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	return h.Sum64()
}

func countEntries(t *testing.T, root string) int {
	n := 0
	filepath.WalkDir(root, func(string, fs.DirEntry, error) error { n++; return nil })
	return n
}

// TestBuildDeterministic builds the same tree twice, and a copy of it in
// another place (other inode numbers, other directory order on disk): the
// images must be identical byte for byte.
func TestBuildDeterministic(t *testing.T) {
	src := t.TempDir()
	everyKind(t, src, false)
	a, _ := build(t, src, Options{})
	b, _ := build(t, src, Options{})
	cp := filepath.Join(t.TempDir(), "copy")
	if out, err := exec.Command("cp", "-a", src, cp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	c, _ := build(t, cp, Options{})
	ha, hb, hc := fileSHA(t, a), fileSHA(t, b), fileSHA(t, c)
	if ha != hb || ha != hc {
		t.Errorf("images differ: %x, %x, copy %x", ha, hb, hc)
	}
	ma, _ := os.ReadFile(a + ".manifest")
	mc, _ := os.ReadFile(c + ".manifest")
	if !bytes.Equal(ma, mc) {
		t.Error("manifests of the same tree differ")
	}
}

// goldenImageSHA pins the image of goldenTree. It changes only when the
// on-disk layout changes on purpose; regenerate with
// go test ./image -run TestBuildGolden -v and copy the printed hash.
const goldenImageSHA = "06571e107d0a4f4465ed1755c3a7aa36a63fb4698a8042483a1f710fd2ad5972"

func goldenTree(t *testing.T, root string) {
	b := newTreeBuilder(t, root, 42)
	b.dir(".", 0o755)
	b.file("public/index.php", b.text(3000), 0o644)
	b.file("src/App.php", b.text(70000), 0o644)
	b.file("assets/logo.png", b.random(300000), 0o644)
	b.file("bin/console", b.text(500), 0o755)
	b.symlink("public/app", "../src/App.php")
	b.symlink("vendor-link", strings.Repeat("v/", 40))
	b.hardlink("src/App-copy.php", "src/App.php")
	b.finish()
}

func TestBuildGolden(t *testing.T) {
	src := t.TempDir()
	goldenTree(t, src)
	epoch := int64(1_700_000_000)
	img, res := build(t, src, Options{Epoch: &epoch, Label: "golden"})
	got := fmt.Sprintf("%x", fileSHA(t, img))
	t.Logf("image sha256 %s, release %s", got, res.Manifest.ID())
	if got != goldenImageSHA {
		t.Errorf("golden image sha256 = %s, want %s", got, goldenImageSHA)
	}
	fsck(t, img)
}

func TestBuildEpochNormalises(t *testing.T) {
	src := t.TempDir()
	goldenTree(t, src)
	epoch := int64(1_600_000_000)
	a, ra := build(t, src, Options{Epoch: &epoch})
	// touching every file changes nothing when the epoch is set
	filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{{Sec: 5}, {Sec: 5}}, unix.AT_SYMLINK_NOFOLLOW)
		return nil
	})
	b, rb := build(t, src, Options{Epoch: &epoch})
	if fileSHA(t, a) != fileSHA(t, b) {
		t.Error("images with the same epoch differ after the files' times changed")
	}
	if ra.Manifest.Created != epoch || rb.Manifest.ID() != ra.Manifest.ID() {
		t.Errorf("created %d release %s/%s; want epoch %d and equal ids", ra.Manifest.Created, ra.Manifest.ID(), rb.Manifest.ID(), epoch)
	}
	c, _ := build(t, src, Options{})
	if fileSHA(t, a) == fileSHA(t, c) {
		t.Error("image without epoch equals the normalised one although the files' times differ")
	}
}

func fileSHA(t testing.TB, p string) [32]byte {
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	var s [32]byte
	copy(s[:], h.Sum(nil))
	return s
}

// assertNoOutput checks that a failed build left nothing in dir.
func assertNoOutput(t *testing.T, dir string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		t.Errorf("failed build left %s behind", e.Name())
	}
}

func buildErr(t *testing.T, src string, opts Options) error {
	t.Helper()
	dir := t.TempDir()
	_, err := Build(context.Background(), src, filepath.Join(dir, "app.img"), opts)
	if err == nil {
		t.Fatalf("Build(%s) succeeded, want an error", src)
	}
	assertNoOutput(t, dir)
	return err
}

func wantErr(t *testing.T, err error, substrs ...string) {
	t.Helper()
	for _, s := range substrs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

func TestBuildRefusesSpecialFiles(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ok.php"), []byte("ok"), 0o644)
	fifo := filepath.Join(src, "sub", "queue")
	os.Mkdir(filepath.Join(src, "sub"), 0o755)
	if err := unix.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	wantErr(t, buildErr(t, src, Options{}), fifo, "fifo")
	os.Remove(fifo)

	sock := filepath.Join(src, "s.sock")
	fd, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: sock}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, buildErr(t, src, Options{}), sock, "socket")
	os.Remove(sock)
}

func TestBuildRefusesDevice(t *testing.T) {
	testenv.RequireRoot(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ok.php"), []byte("ok"), 0o644)
	dev := filepath.Join(src, "null")
	if err := unix.Mknod(dev, unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	wantErr(t, buildErr(t, src, Options{}), dev, "character device")
}

// TestBuildRefusesBadOptions: bad options are refused before the tree is
// even scanned.
func TestBuildRefusesBadOptions(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "ok.php"), []byte("ok"), 0o644)
	testHookScanned = func() { t.Error("tree scanned despite bad options") }
	defer func() { testHookScanned = nil }()
	for _, tc := range []struct {
		opts Options
		want []string
	}{
		{Options{HeadroomPct: -1}, []string{"negative headroom"}},
		{Options{Label: strings.Repeat("x", MaxLabel+1)}, []string{"label of", fmt.Sprint(MaxLabel)}},
		{Options{ChunkSize: MinChunkSize / 2}, []string{"chunk size", "out of range"}},
		{Options{ChunkSize: MaxChunkSize + blockSize}, []string{"chunk size", "out of range"}},
		{Options{ChunkSize: MinChunkSize + 1}, []string{"chunk size", "multiple of"}},
	} {
		wantErr(t, buildErr(t, src, tc.opts), tc.want...)
	}
	if _, err := HashFile(context.Background(), filepath.Join(src, "ok.php"), MaxChunkSize+1); err == nil {
		t.Error("HashFile took a chunk size above MaxChunkSize")
	} else {
		wantErr(t, err, "chunk size", "out of range")
	}
}

func TestBuildRefusesBadSource(t *testing.T) {
	f := filepath.Join(t.TempDir(), "file")
	os.WriteFile(f, []byte("x"), 0o644)
	wantErr(t, buildErr(t, f, Options{}), f, "not a directory")
	missing := filepath.Join(t.TempDir(), "missing")
	wantErr(t, buildErr(t, missing, Options{}), missing)
	lf := t.TempDir()
	os.Mkdir(filepath.Join(lf, "lost+found"), 0o700)
	wantErr(t, buildErr(t, lf, Options{}), "lost+found", "reserved")
}

func TestBuildRefusesTooSmallSize(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "big"), bytes.Repeat([]byte("x"), 3<<20), 0o644)
	err := buildErr(t, src, Options{Size: 2 << 20})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("error %v is not ErrTooLarge", err)
	}
	wantErr(t, err, src)
	img, _ := build(t, src, Options{Size: 8 << 20})
	if fi, _ := os.Stat(img); fi.Size() != 8<<20 {
		t.Errorf("image is %d bytes, want the requested %d", fi.Size(), 8<<20)
	}
	fsck(t, img)
}

func TestBuildRefusesFileTooBigForFormat(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "huge.bin")
	f, _ := os.Create(p)
	if err := f.Truncate(maxFileSize() + 1); err != nil {
		f.Close()
		testenv.Missing(t, "a filesystem for a sparse file of %d bytes: %v", maxFileSize()+1, err)
	}
	f.Close()
	wantErr(t, buildErr(t, src, Options{}), p, "too big")
}

func TestBuildRefusesChangingFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(p string) error
		want   string
	}{
		{"shrink", func(p string) error { return os.Truncate(p, 100) }, "shrank"},
		{"grow", func(p string) error {
			f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.Write([]byte("more"))
			return err
		}, "grew"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := t.TempDir()
			target := filepath.Join(src, "changing.php")
			os.WriteFile(target, bytes.Repeat([]byte("a"), 50000), 0o644)
			testHookOpened = func(p string) {
				if p == target {
					if err := tc.change(p); err != nil {
						t.Error(err)
					}
				}
			}
			defer func() { testHookOpened = nil }()
			err := buildErr(t, src, Options{})
			if !errors.Is(err, ErrChanged) {
				t.Errorf("error %v is not ErrChanged", err)
			}
			wantErr(t, err, target, tc.want)
		})
	}
}

func TestBuildRefusesUnreadableFile(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "secret.php")
	os.WriteFile(p, []byte("x"), 0o644)
	// root reads everything, so make the file vanish between scan and read
	// instead when running as root; otherwise take away its permissions.
	if os.Geteuid() == 0 {
		scanned := false
		orig := p
		testHookScanned = func() { os.Remove(orig); scanned = true }
		defer func() { testHookScanned = nil }()
		err := buildErr(t, src, Options{})
		if !scanned {
			t.Fatal("scan hook did not run")
		}
		wantErr(t, err, p)
		if !errors.Is(err, syscall.ENOENT) {
			t.Errorf("error %v is not ENOENT", err)
		}
		return
	}
	os.Chmod(p, 0)
	err := buildErr(t, src, Options{})
	wantErr(t, err, p)
	if !errors.Is(err, syscall.EACCES) {
		t.Errorf("error %v is not EACCES", err)
	}
}

// TestBuildRandomTreesPassFsck is a property test: random trees of every
// entry kind, in random shapes and sizes, all build into clean images.
func TestBuildRandomTreesPassFsck(t *testing.T) {
	testenv.RequireTool(t, "e2fsck")
	n := 25
	if testing.Short() {
		n = 5
	}
	for seed := range uint64(n) {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			src := t.TempDir()
			randomTree(t, src, seed)
			img, _ := build(t, src, Options{HeadroomPct: int(seed % 30)})
			fsck(t, img)
		})
	}
}

func randomTree(t testing.TB, root string, seed uint64) {
	b := newTreeBuilder(t, root, seed)
	r := rand.New(rand.NewPCG(seed, 7))
	b.dir(".", 0o755)
	dirs := []string{"."}
	var files []string
	for i := range 20 + r.IntN(400) {
		parent := dirs[r.IntN(len(dirs))]
		name := filepath.Join(parent, fmt.Sprintf("e%d-%s", i, strings.Repeat("q", r.IntN(60))))
		switch k := r.IntN(20); {
		case k < 3:
			b.dir(name, os.FileMode(0o700|r.IntN(0o1000)))
			dirs = append(dirs, name)
		case k < 5:
			b.symlink(name, strings.Repeat("t", 1+r.IntN(200)))
		case k < 6 && len(files) > 0:
			b.hardlink(name, files[r.IntN(len(files))])
		default:
			size := r.IntN(20000)
			if r.IntN(30) == 0 {
				size = r.IntN(6 << 20)
			}
			data := b.text(size)
			if r.IntN(5) == 0 && size > 3*blockSize {
				clear(data[blockSize : 3*blockSize]) // a run of zero blocks
			}
			b.file(name, data, os.FileMode(r.IntN(0o10000)))
			files = append(files, name)
		}
	}
	for _, d := range dirs {
		b.chmod(d, 0o755) // the walk and later files need access
	}
	b.finish()
}

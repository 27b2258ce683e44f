package treediff

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/loopmount"
)

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if strings.HasPrefix(body, "->") {
			os.Remove(p)
			if err := os.Symlink(body[2:], p); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestChangedPlainDirs compares byte by byte (no manifests): every kind of
// difference is named, and nothing else.
func TestChangedPlainDirs(t *testing.T) {
	old, new := t.TempDir(), t.TempDir()
	common := map[string]string{
		"same.php":       "<?php echo 1;",
		"lib/same.php":   "<?php echo 2;",
		"lib/link.php":   "->same.php",
		"keep/link":      "->../same.php",
		"sizes.php":      "<?php echo 'short';",
		"samesize.php":   "<?php echo 'aaaa';",
		"dir2file/x.php": "x",
	}
	write(t, old, common)
	write(t, new, common)
	write(t, old, map[string]string{"removed.php": "r", "gone/deep/a.php": "a"})
	write(t, new, map[string]string{
		"added.php":     "a",
		"sizes.php":     "<?php echo 'much longer now';",
		"samesize.php":  "<?php echo 'bbbb';",
		"lib/link.php":  "->../same.php",
		"new/dir/b.php": "b",
	})
	os.RemoveAll(filepath.Join(new, "dir2file"))
	write(t, new, map[string]string{"dir2file": "now a file"})

	res, err := Changed(context.Background(), Tree{Dir: old}, Tree{Dir: new})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"added.php", "dir2file", "dir2file/x.php", "gone/deep/a.php", "lib/link.php",
		"new", "new/dir", "new/dir/b.php", "removed.php", "samesize.php", "sizes.php"}
	if !slices.Equal(res.Paths, want) {
		t.Fatalf("Changed = %q\nwant      %q", res.Paths, want)
	}
	if !res.Links {
		t.Errorf("lib/link.php changed its target, and Links is false")
	}
	if res.Read != 3 { // same.php, lib/same.php, samesize.php: equal sizes, no manifests
		t.Fatalf("read %d files byte by byte, want 3", res.Read)
	}

	same, err := Changed(context.Background(), Tree{Dir: old}, Tree{Dir: old})
	if err != nil || len(same.Paths) != 0 {
		t.Fatalf("a tree against itself: %q, %v", same.Paths, err)
	}
}

// TestChangedImagesReadsLittle builds a release on a base, as a hotfix is
// built, mounts both images and checks that the changed files are found
// exactly while only files sharing a changed chunk are read.
func TestChangedImagesReadsLittle(t *testing.T) {
	dir := mounttest.Dir(t)
	src := filepath.Join(dir, "src")
	files := map[string]string{}
	for i := range 400 {
		files[fmt.Sprintf("app/m%02d/f%03d.php", i%20, i)] = fmt.Sprintf("<?php // %d\n%s", i, strings.Repeat("x", 16<<10))
	}
	write(t, src, files)
	epoch := int64(1_700_000_000)
	oldImg := filepath.Join(dir, "old.img")
	oldRes, err := image.Build(context.Background(), src, oldImg, image.Options{Epoch: &epoch, HeadroomPct: 10})
	if err != nil {
		t.Fatal(err)
	}
	write(t, src, map[string]string{
		"app/m07/f007.php": "<?php // changed, same size?\n" + strings.Repeat("y", 16<<10),
		"app/new.php":      "<?php echo 'new';",
	})
	os.Remove(filepath.Join(src, "app/m03/f123.php"))
	newImg := filepath.Join(dir, "new.img")
	newRes, err := image.Build(context.Background(), src, newImg, image.Options{Epoch: &epoch, HeadroomPct: 10, Base: oldImg})
	if err != nil {
		t.Fatal(err)
	}
	if newRes.Base == nil || !newRes.Base.Kept {
		t.Fatalf("the build did not keep its base: %+v", newRes.Base)
	}
	mount := func(img, name string) string {
		mp := filepath.Join(dir, name)
		os.MkdirAll(mp, 0o755)
		if _, err := loopmount.MountImage(img, mp, loopmount.Options{}); err != nil {
			t.Fatal(err)
		}
		return mp
	}
	oldDir, newDir := mount(oldImg, "old"), mount(newImg, "new")

	res, err := Changed(context.Background(), Tree{oldDir, oldRes.Manifest}, Tree{newDir, newRes.Manifest})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app/m03/f123.php", "app/m07/f007.php", "app/new.php"}
	if !slices.Equal(res.Paths, want) || res.Links {
		t.Fatalf("Changed = %q (links %v), want %q and no link", res.Paths, res.Links, want)
	}
	if res.Files != 400 {
		t.Fatalf("files = %d, want 400", res.Files)
	}
	// 400 files of 16 KiB are 6.4 MB: a 1 MiB chunk holds ~60 of them; a
	// changed file and its inode and directory blocks touch a few chunks.
	if res.Read > 200 {
		t.Fatalf("read %d of %d files byte by byte (%d bytes): the block check did not spare the unchanged ones", res.Read, res.Files, res.ReadBytes)
	}
	t.Logf("read %d of %d files (%d bytes)", res.Read, res.Files, res.ReadBytes)

	// Without manifests every equal-size file is read: same answer.
	slow, err := Changed(context.Background(), Tree{Dir: oldDir}, Tree{Dir: newDir})
	if err != nil || !slices.Equal(slow.Paths, want) || slow.Read < 390 {
		t.Fatalf("byte by byte: %q (read %d), %v", slow.Paths, slow.Read, err)
	}
}

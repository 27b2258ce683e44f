package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestVerify: sender verify passes a built image and its pack, checks the
// signature with --trust, and names the chunk of a corrupted image.
func TestVerify(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	if out, err := run(t, "keygen", "--out", key); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "index.php"), []byte(strings.Repeat("<?php echo 1;\n", 4000)), 0o644)
	img := filepath.Join(dir, "app.img")
	if out, err := run(t, "build", "--key", key, "--out", img, src); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	out, err := run(t, "verify", "--trust", filepath.Join(dir, "release.pub"), img)
	if err != nil || !strings.Contains(out, "chunks match the manifest") || !strings.Contains(out, "frames intact") {
		t.Fatalf("verify of a fresh build: %v\n%s", err, out)
	}
	other := filepath.Join(dir, "other.key")
	run(t, "keygen", "--out", other)
	if _, err := run(t, "verify", "--trust", filepath.Join(dir, "other.pub"), img); err == nil || !strings.Contains(err.Error(), "untrusted") {
		t.Errorf("verify against another key: %v, want an untrusted-key error", err)
	}
	f, _ := os.OpenFile(img, os.O_RDWR, 0)
	f.WriteAt([]byte("rot"), 1<<20+4096) // chunk 1
	f.Close()
	if _, err := run(t, "verify", img); err == nil || !strings.Contains(err.Error(), "[1]") || !strings.Contains(err.Error(), img) {
		t.Errorf("verify of a corrupted image: %v, want an error naming %s and chunk [1]", err, img)
	}
}

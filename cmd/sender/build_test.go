package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/cliutil"

	"github.com/loopcast/loopcast/image"
)

// run runs the sender CLI in-process and returns its output.
func run(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	app := newApp()
	app.Writer = &out
	app.ErrWriter = &out
	err := app.Run(append([]string{"sender"}, args...))
	return out.String(), err
}

func TestKeygenBuildInspect(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	out, err := run(t, "keygen", "--out", key)
	if err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	if fi, err := os.Stat(key); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v %v", fi, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "release.pub")); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, "keygen", "--out", key); err == nil {
		t.Error("keygen over an existing key succeeded")
	}

	src := filepath.Join(dir, "src")
	os.MkdirAll(filepath.Join(src, "public"), 0o755)
	os.WriteFile(filepath.Join(src, "public", "index.php"), []byte("<?php echo 'v1';"), 0o644)
	img := filepath.Join(dir, "app.img")
	out, err = run(t, "build", "--key", key, "--epoch", "1700000000", "--label", "rev-1", "--out", img, src)
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	m, err := image.ReadManifestFile(img + ".manifest")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"release   " + m.ID().String(), "files     2", "signed, key", "time"} {
		if !strings.Contains(out, want) {
			t.Errorf("build output lacks %q:\n%s", want, out)
		}
	}

	pub := filepath.Join(dir, "release.pub")
	out, err = run(t, "inspect", "--trust", pub, img+".manifest")
	if err != nil {
		t.Fatalf("inspect: %v\n%s", err, out)
	}
	for _, want := range []string{m.ID().String(), "label       rev-1", "2023-11-14T22:13:20Z", "ed25519"} {
		if !strings.Contains(out, want) {
			t.Errorf("inspect output lacks %q:\n%s", want, out)
		}
	}

	out, err = run(t, "inspect", "--json", img+".manifest")
	if err != nil {
		t.Fatal(err)
	}
	var j manifestJSON
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		t.Fatalf("inspect --json: %v\n%s", err, out)
	}
	if j.ReleaseID != m.ID() || len(j.Chunks) != len(m.Chunks) || j.FileCount != 2 {
		t.Errorf("json = %+v", j)
	}

	// a manifest checked against another key is refused, with exit code 1
	other := filepath.Join(dir, "other.key")
	run(t, "keygen", "--out", other)
	_, err = run(t, "inspect", "--trust", filepath.Join(dir, "other.pub"), img+".manifest")
	if !errors.Is(err, image.ErrUntrustedKey) || cliutil.ExitCode("sender", err) != 1 {
		t.Errorf("inspect with the wrong key: %v (exit %d)", err, cliutil.ExitCode("sender", err))
	}
}

func TestBuildEpochFromEnvironment(t *testing.T) {
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "a"), []byte("a"), 0o644)
	t.Setenv("SOURCE_DATE_EPOCH", "1600000000")
	img := filepath.Join(t.TempDir(), "a.img")
	if out, err := run(t, "build", "--out", img, src); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	m, _ := image.ReadManifestFile(img + ".manifest")
	if m.Created != 1600000000 {
		t.Errorf("created %d, want SOURCE_DATE_EPOCH", m.Created)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "soon")
	if _, err := run(t, "build", "--out", img, src); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: %v", err)
	}
}

func TestBuildOnBase(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "a.php"), []byte("<?php echo 'a';"), 0o644)
	os.WriteFile(filepath.Join(src, "b.php"), []byte("<?php echo 'b';"), 0o644)
	a := filepath.Join(dir, "a.img")
	if out, err := run(t, "build", "--epoch", "1700000000", "--out", a, src); err != nil || !strings.Contains(out, "layout    "+a+".layout") {
		t.Fatalf("build: %v\n%s", err, out)
	}
	os.WriteFile(filepath.Join(src, "b.php"), []byte("<?php echo 'B';"), 0o644)
	os.WriteFile(filepath.Join(src, "c.php"), []byte("<?php echo 'c';"), 0o644)
	out, err := run(t, "build", "--epoch", "1700000000", "--base", a, "--out", filepath.Join(dir, "b.img"), src)
	if err != nil {
		t.Fatalf("build --base: %v\n%s", err, out)
	}
	if want := "base      " + a + ": layout kept: 2 inodes kept (1 files unchanged), 1 new, 0 freed"; !strings.Contains(out, want) {
		t.Errorf("build --base output lacks %q:\n%s", want, out)
	}
	if _, err := run(t, "build", "--base", filepath.Join(dir, "missing.img"), "--out", filepath.Join(dir, "c.img"), src); err == nil {
		t.Error("build on a missing base succeeded")
	}
}

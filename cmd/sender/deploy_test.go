package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRequire(t *testing.T) {
	for in, want := range map[string]float64{"all": 1, "100%": 1, "90%": 0.9, "0.5%": 0.005} {
		if got, err := parseRequire(in); err != nil || got != want {
			t.Errorf("parseRequire(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "most", "90", "0%", "101%", "-5%"} {
		if _, err := parseRequire(in); err == nil {
			t.Errorf("parseRequire(%q) succeeded", in)
		}
	}
}

// TestDeployDryRun builds the image and says what would happen, sending
// nothing (no network is used: there is no agent to answer).
func TestDeployDryRun(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	if out, err := run(t, "keygen", "--out", key); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	src := filepath.Join(dir, "app")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 1;"), 0o644)
	state := filepath.Join(dir, "state")
	out, err := run(t, "deploy", "--dry-run", "--key", key, "--hosts", "web1,web2", "--state-dir", state, src)
	if err != nil {
		t.Fatalf("deploy --dry-run: %v\n%s", err, out)
	}
	for _, want := range []string{"dry run: would deploy release", "web1, web2", "nothing was sent"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	imgs, _ := filepath.Glob(filepath.Join(state, "images", "*.img"))
	if len(imgs) != 1 {
		t.Errorf("state dir holds %v, want one built image", imgs)
	}
	if _, err := os.Stat(filepath.Join(state, "audit.log")); err == nil {
		t.Error("a dry run wrote the audit log")
	}
	// the next build of the group keeps the last one's layout; old builds go
	for i := range 3 {
		os.WriteFile(filepath.Join(src, "new.php"), []byte(strings.Repeat("x", i+1)), 0o644)
		out, err = run(t, "deploy", "--dry-run", "--key", key, "--hosts", "web1", "--state-dir", state, src)
		if err != nil {
			t.Fatalf("second deploy --dry-run: %v\n%s", err, out)
		}
		if !strings.Contains(out, "layout kept") {
			t.Errorf("build %d did not keep the last build's layout:\n%s", i+2, out)
		}
	}
	imgs, _ = filepath.Glob(filepath.Join(state, "images", "*.img"))
	if len(imgs) != keepBuilds {
		t.Errorf("state dir keeps %d builds, want %d: %v", len(imgs), keepBuilds, imgs)
	}

	// an image whose manifest another key signed is refused
	other := filepath.Join(dir, "other.key")
	run(t, "keygen", "--out", other)
	_, err = run(t, "deploy", "--dry-run", "--key", other, "--state-dir", state, imgs[0])
	if err == nil || !strings.Contains(err.Error(), "not signed by --key") {
		t.Errorf("deploy of an image signed by another key: %v", err)
	}
}

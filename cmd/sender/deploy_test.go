package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/multicast"
)

func TestParseRequire(t *testing.T) {
	for in, want := range map[string]int{"all": 100, "100%": 100, "90%": 90, "7%": 7} {
		if got, err := parseRequire(in); err != nil || got != want {
			t.Errorf("parseRequire(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "most", "90", "0%", "101%", "-5%", "0.5%"} {
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
	imgs, _ := filepath.Glob(filepath.Join(state, "images", "*", "*.img"))
	if len(imgs) != 1 {
		t.Errorf("state dir holds %v, want one built image", imgs)
	}
	if _, err := os.Stat(filepath.Join(state, "audit.log")); err == nil {
		t.Error("a dry run wrote the audit log")
	}
	// a dry run records no base and writes no audit line
	if m, _ := filepath.Glob(filepath.Join(state, "last-build-*")); len(m) != 0 {
		t.Errorf("a dry run recorded a base: %v", m)
	}

	// an image whose manifest another key signed is refused
	other := filepath.Join(dir, "other.key")
	run(t, "keygen", "--out", other)
	_, err = run(t, "deploy", "--dry-run", "--key", other, "--state-dir", state, imgs[0])
	if err == nil || !strings.Contains(err.Error(), "not signed by --key") {
		t.Errorf("deploy of an image signed by another key: %v", err)
	}
	// nor one whose manifest names the right key but was altered after signing
	m, err := image.ReadManifestFile(imgs[0] + ".manifest")
	if err != nil {
		t.Fatal(err)
	}
	m.Label = "altered"
	if err := image.WriteManifestFile(imgs[0]+".manifest", m); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, "deploy", "--dry-run", "--key", key, "--state-dir", state, imgs[0])
	if !errors.Is(err, image.ErrBadSignature) {
		t.Errorf("deploy of an altered manifest: %v, want ErrBadSignature", err)
	}
}

// TestBuildsOnRecordedBase: once a deploy recorded its image, the next
// build of the group keeps that layout, and old builds are pruned but
// never the recorded base.
func TestBuildsOnRecordedBase(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	run(t, "keygen", "--out", key)
	src := filepath.Join(dir, "app")
	os.MkdirAll(src, 0o755)
	os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php echo 1;"), 0o644)
	state := filepath.Join(dir, "state")
	dry := func() string {
		out, err := run(t, "deploy", "--dry-run", "--key", key, "--hosts", "web1", "--state-dir", state, src)
		if err != nil {
			t.Fatalf("deploy --dry-run: %v\n%s", err, out)
		}
		return out
	}
	dry()
	first, _ := filepath.Glob(filepath.Join(state, "images", "*", "*.img"))
	if len(first) != 1 {
		t.Fatalf("builds: %v", first)
	}
	group, _ := cliutil.ParseGroup("239.192.0.1:5000")
	os.WriteFile(deploy.StatePaths(state, group).LastBuild, []byte(first[0]+"\n"), 0o644) // as a deploy records it
	for i := range 3 {
		os.WriteFile(filepath.Join(src, "new.php"), []byte(strings.Repeat("x", i+1)), 0o644)
		out := dry()
		if !strings.Contains(out, "layout kept") {
			t.Errorf("build %d did not keep the recorded base's layout:\n%s", i+2, out)
		}
		if !strings.Contains(out, "of deltas against release") {
			t.Errorf("build %d: dry run names no delta base:\n%s", i+2, out)
		}
	}
	imgs, _ := filepath.Glob(filepath.Join(state, "images", "*", "*.img"))
	if len(imgs) != deploy.KeepBuilds+1 || !slices.Contains(imgs, first[0]) {
		t.Errorf("builds kept: %v; want the base %s and %d newest", imgs, first[0], deploy.KeepBuilds)
	}
}

func TestHostsFlagRefusesEmptyAndBadIDs(t *testing.T) {
	dir := t.TempDir()
	key := filepath.Join(dir, "release.key")
	run(t, "keygen", "--out", key)
	empty := filepath.Join(dir, "hosts")
	os.WriteFile(empty, nil, 0o644)
	for _, hosts := range []string{",", "@" + empty, "web 1", strings.Repeat("h", 65)} {
		_, err := run(t, "deploy", "--dry-run", "--key", key, "--hosts", hosts, "--state-dir", dir, dir)
		if err == nil || !strings.Contains(err.Error(), "host") {
			t.Errorf("--hosts %q: %v, want a refusal", hosts, err)
		}
	}
}

// A host that serves no release after a deploy shows an empty CURRENT
// cell, not the zero id's sixteen zeros; one that does shows its id.
func TestPrintDeployCurrent(t *testing.T) {
	id, err := image.ParseID("0123456789abcdef")
	if err != nil {
		t.Fatal(err)
	}
	r := &deploy.Result{ReleaseID: id, Transfer: &multicast.Report{}, Hosts: []deploy.HostResult{
		{ID: "r1", Phase: deploy.PhaseActive, Current: id},
		{ID: "r2", Phase: "refused"},
	}}
	var b bytes.Buffer
	printDeploy(&b, r, false, false)
	out := b.String()
	if strings.Contains(out, "0000000000000000") || !strings.Contains(out, "r1") || strings.Count(out, id.String()) < 2 {
		t.Errorf("deploy table:\n%s\nwant r1's current release %s and no zero id", out, id)
	}
}

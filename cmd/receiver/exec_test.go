package main

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/mounttest"
	"github.com/loopcast/loopcast/internal/testenv"
	"github.com/loopcast/loopcast/release"
)

// execFixture is a store under a temp dir with releases deployed by the
// release API, and the receiver binary built from this package.
type execFixture struct {
	t     *testing.T
	dir   string
	key   ed25519.PrivateKey
	store *release.Store
	bin   string
}

func newExecFixture(t *testing.T) *execFixture {
	testenv.Long(t)
	dir := mounttest.Dir(t)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	s, err := release.Open(filepath.Join(dir, "root"), release.Options{
		Keep: 1, KeepFor: -1, TrustedKeys: []ed25519.PublicKey{pub},
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "receiver")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return &execFixture{t: t, dir: dir, key: key, store: s, bin: bin}
}

// deploy builds, stages and activates a release whose id.txt says name.
func (f *execFixture) deploy(name string) image.ID {
	f.t.Helper()
	src := filepath.Join(f.dir, "src", name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		f.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "id.txt"), []byte(name), 0o644); err != nil {
		f.t.Fatal(err)
	}
	img := src + ".img"
	if _, err := image.Build(context.Background(), src, img, image.Options{Key: f.key, Label: name}); err != nil {
		f.t.Fatal(err)
	}
	id, err := f.store.Stage(context.Background(), image.ID{}, img, img+".manifest")
	if err == nil {
		err = f.store.Activate(id)
	}
	if err != nil {
		f.t.Fatalf("deploy %s: %v", name, err)
	}
	return id
}

func (f *execFixture) mounted(id image.ID) bool {
	f.t.Helper()
	st, err := f.store.Status()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, r := range st.Releases {
		if r.ID == id {
			return r.Mounted
		}
	}
	return false
}

// TestExecHoldsItsRelease: a command run by `receiver exec` starts in the
// current release with LOOPCAST_RELEASE(_DIR) set, and that release stays
// mounted through later deploys and retention while it runs, even after
// the command left its directory: the lease holds it. It is retired once
// the command exits.
func TestExecHoldsItsRelease(t *testing.T) {
	f := newExecFixture(t)
	a := f.deploy("A")
	cmd := exec.Command(f.bin, "exec", "--root", f.store.Root(), "--", "sh", "-c",
		`echo "$LOOPCAST_RELEASE $LOOPCAST_RELEASE_DIR $(pwd -P)"; cd /; read go; cat "$LOOPCAST_RELEASE_DIR/id.txt"`)
	in, _ := cmd.StdinPipe()
	outPipe, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() }) // our own child, by pid
	out := bufio.NewReader(outPipe)
	line, err := out.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	dir := f.store.ReleaseDir(a)
	if want := a.String() + " " + dir + " " + dir + "\n"; line != want {
		t.Errorf("the command saw %q, want %q (release, its dir, its working directory)", line, want)
	}
	for _, name := range []string{"B", "C", "D"} {
		f.deploy(name)
	}
	if err := f.store.Retire(); err != nil {
		t.Fatal(err)
	}
	if !f.mounted(a) {
		t.Fatalf("release %s was retired while receiver exec held it", a)
	}
	io.WriteString(in, "go\n")
	rest, _ := io.ReadAll(out)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("receiver exec: %v", err)
	}
	if string(rest) != "A" {
		t.Errorf("the command read %q from its release after 3 deploys, want A", rest)
	}
	if err := f.store.Retire(); err != nil {
		t.Fatal(err)
	}
	if f.mounted(a) {
		t.Errorf("release %s still mounted after the command exited", a)
	}
}

// TestExecExitAndSignals: receiver exec exits with the command's status,
// passes SIGTERM on to it (and outlives it), and refuses a store with no
// current release.
func TestExecExitAndSignals(t *testing.T) {
	f := newExecFixture(t)
	out, err := exec.Command(f.bin, "exec", "--root", f.store.Root(), "--", "true").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "no current release") {
		t.Errorf("exec with no current release: %v, %q; want a failure saying 'no current release'", err, out)
	}
	f.deploy("A")
	err = exec.Command(f.bin, "exec", "--root", f.store.Root(), "--", "sh", "-c", "exit 7").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 7 {
		t.Errorf("exec of a command exiting 7: %v, want exit status 7", err)
	}
	cmd := exec.Command(f.bin, "exec", "--root", f.store.Root(), "--", "sh", "-c",
		`trap 'echo got TERM; exit 0' TERM; echo ready; while :; do sleep 0.05; done`)
	pipe, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() }) // our own child, by pid
	r := bufio.NewReader(pipe)
	if l, err := r.ReadString('\n'); l != "ready\n" {
		t.Fatalf("command said %q, %v", l, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	l, _ := r.ReadString('\n')
	if err := cmd.Wait(); err != nil || l != "got TERM\n" {
		t.Errorf("after SIGTERM to receiver exec: command said %q, exec ended with %v; want the command to get it and exit 0", l, err)
	}
}

// TestVerifyCommand: receiver verify reports every kept release ok, then
// names a corrupted one, quarantines it and fails.
func TestVerifyCommand(t *testing.T) {
	f := newExecFixture(t)
	a := f.deploy("A").String() // as the command line names it
	b := f.deploy("B").String()
	out, err := run(t, "verify", "--root", f.store.Root())
	if err != nil || !strings.Contains(out, a+": ok") || !strings.Contains(out, b+": ok") {
		t.Fatalf("verify of intact images: %v\n%s", err, out)
	}
	img := filepath.Join(f.store.Root(), "images", a+".img")
	fh, err := os.OpenFile(img, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.WriteAt([]byte("rot"), 8192)
	fh.Close()
	out, err = run(t, "verify", "--root", f.store.Root(), a)
	if err == nil || !strings.Contains(out, a+": CORRUPT, quarantined") {
		t.Errorf("verify of a corrupted image: %v\n%s", err, out)
	}
	out, _ = run(t, "status", "--root", f.store.Root())
	if !strings.Contains(out, "failed "+a) || !strings.Contains(out, "is corrupt") {
		t.Errorf("status does not show the corrupt release:\n%s", out)
	}
}

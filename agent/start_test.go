package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/mounttest"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/release"
)

// notifySocket stands in for systemd: it listens on a datagram socket and
// points NOTIFY_SOCKET at it for the test.
func notifySocket(t *testing.T) *net.UnixConn {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	return conn
}

func read(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func openStore(t *testing.T, dir string, keys ...ed25519.PublicKey) *release.Store {
	t.Helper()
	s, err := release.Open(filepath.Join(dir, "root"), release.Options{
		TrustedKeys: keys, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestReadyOutsideSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if err := Ready(); err != nil {
		t.Errorf("Ready without NOTIFY_SOCKET: %v, want nothing done", err)
	}
}

func TestReadyAndStopping(t *testing.T) {
	conn := notifySocket(t)
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conn); got != "READY=1" {
		t.Errorf("Ready sent %q, want READY=1", got)
	}
	if err := Stopping(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conn); got != "STOPPING=1" {
		t.Errorf("Stopping sent %q, want STOPPING=1", got)
	}
}

func TestReadyBrokenSocket(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if err := Ready(); err == nil || !strings.Contains(err.Error(), "agent: notify systemd") {
		t.Errorf("Ready to a dead socket: %v, want an error", err)
	}
}

// TestStartEmptyStore: a fresh store reconciles to nothing and is ready.
func TestStartEmptyStore(t *testing.T) {
	conn := notifySocket(t)
	s := openStore(t, t.TempDir())
	if err := Start(context.Background(), s); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conn); got != "READY=1\nSTATUS=serving nothing yet" {
		t.Errorf("Start sent %q", got)
	}
}

// TestStartReconcileFails: no READY when reconcile fails. A Ready sent
// afterwards is the first datagram, so Start sent none.
func TestStartReconcileFails(t *testing.T) {
	conn := notifySocket(t)
	dir := t.TempDir()
	s := openStore(t, dir)
	if err := os.WriteFile(filepath.Join(s.Root(), "state"), []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Start(context.Background(), s); err == nil || !strings.Contains(err.Error(), "reconcile") {
		t.Fatalf("Start with a broken state file: %v, want a reconcile error", err)
	}
	if err := Ready(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, conn); got != "READY=1" {
		t.Errorf("first notification %q: Start reported ready despite failing", got)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Start(ctx, s); err != context.Canceled {
		t.Errorf("Start with a cancelled context: %v", err)
	}
}

// TestStartAfterReboot: after a reboot (every release unmounted) Start
// remounts the releases, and when READY arrives current already serves.
func TestStartAfterReboot(t *testing.T) {
	dir := mounttest.Dir(t)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	s := openStore(t, dir, pub)
	for _, name := range []string{"A", "B"} {
		img, man := buildImage(t, dir, name, key)
		id, err := s.Stage(context.Background(), image.ID{}, img, man)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Activate(id); err != nil {
			t.Fatal(err)
		}
	}
	mounttest.Cleanup(t, dir) // the reboot
	current := filepath.Join(s.CurrentPath(), "id.txt")
	if _, err := os.ReadFile(current); err == nil {
		t.Fatal("current still serves after the simulated reboot")
	}

	conn := notifySocket(t)
	served := make(chan string, 1)
	go func() { // what nginx would see the moment systemd starts it
		buf := make([]byte, 4096)
		conn.Read(buf)
		b, err := os.ReadFile(current)
		if err != nil {
			served <- err.Error()
			return
		}
		served <- string(b)
	}()
	if err := Start(context.Background(), openStore(t, dir, pub)); err != nil {
		t.Fatal(err)
	}
	if got := <-served; got != "B" {
		t.Errorf("when READY arrived current served %q, want B", got)
	}
}

// buildImage builds a signed ext2 image whose id.txt says name and returns
// the image and manifest paths.
func buildImage(t *testing.T, dir, name string, key ed25519.PrivateKey) (string, string) {
	t.Helper()
	src := filepath.Join(dir, "src", name)
	if err := os.MkdirAll(src, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "id.txt"), []byte(name), 0o644); err != nil {
		t.Fatal(err)
	}
	img := src + ".img"
	if _, err := image.Build(context.Background(), src, img, image.Options{Key: key, Label: name}); err != nil {
		t.Fatal(err)
	}
	man := img + ".manifest"
	return img, man
}

// Partial images of killed agents: the newest is kept to resume, older
// ones and any past partialMaxAge are removed.
func TestCleanPartials(t *testing.T) {
	dir := t.TempDir()
	img := filepath.Join(dir, "incoming.img")
	now := time.Now()
	for name, age := range map[string]time.Duration{"a": time.Hour, "b": 2 * time.Hour, "c": 48 * time.Hour} {
		p := img + "." + name + ".partial"
		if err := os.WriteFile(p, []byte(name), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, now.Add(-age), now.Add(-age)); err != nil {
			t.Fatal(err)
		}
	}
	cleanPartials(img, now, slog.New(slog.DiscardHandler))
	left, _ := filepath.Glob(img + ".*.partial")
	if len(left) != 1 || left[0] != img+".a.partial" {
		t.Errorf("left %v, want only the newest (a)", left)
	}
	os.Chtimes(img+".a.partial", now.Add(-25*time.Hour), now.Add(-25*time.Hour))
	cleanPartials(img, now, slog.New(slog.DiscardHandler))
	if left, _ := filepath.Glob(img + ".*.partial"); len(left) != 0 {
		t.Errorf("left %v, want none past partialMaxAge", left)
	}
}

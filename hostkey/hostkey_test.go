package hostkey

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckID(t *testing.T) {
	for _, id := range []string{"web1", "web-1.dc2", "a", "A_b", strings.Repeat("x", MaxID)} {
		if err := CheckID(id); err != nil {
			t.Errorf("CheckID(%q): %v", id, err)
		}
	}
	for _, id := range []string{"", "-web", ".x", "a b", "web\x1b[31m", "ü", "a/b", strings.Repeat("x", MaxID+1)} {
		err := CheckID(id)
		if !errors.Is(err, ErrBadID) {
			t.Errorf("CheckID(%q) = %v, want ErrBadID", id, err)
		}
		if err != nil && strings.ContainsAny(err.Error(), "\x1b") {
			t.Errorf("the error for %q carries the raw bytes: %q", id, err)
		}
	}
}

func TestPrintable(t *testing.T) {
	for in, want := range map[string]string{"ok": "ok", "a\x1b[2Jb": `a\x1b[2Jb`, "back\\slash": `back\\slash`, "nl\n": `nl\x0a`} {
		if got := Printable(in); got != want {
			t.Errorf("Printable(%q) = %q, want %q", in, got, want)
		}
	}
}

func key(seed byte) ed25519.PublicKey {
	s := make([]byte, ed25519.SeedSize)
	s[0] = seed
	return ed25519.NewKeyFromSeed(s).Public().(ed25519.PublicKey)
}

// Trust on first use: a new host is pinned when learning, refused
// otherwise; a pinned host with another key is refused naming both keys;
// the pins survive a save and a reopen; inventory pins override.
func TestPins(t *testing.T) {
	path := filepath.Join(t.TempDir(), KnownHostsFile)
	p, err := OpenPins(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check("web1", key(1), false); !errors.Is(err, ErrUnknown) {
		t.Errorf("unknown host, not learning: %v", err)
	}
	if err := p.Check("web1", key(1), true); err != nil {
		t.Fatal(err)
	}
	if err := p.Save(); err != nil {
		t.Fatal(err)
	}
	p, err = OpenPins(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check("web1", key(1), false); err != nil {
		t.Errorf("reopened pins refuse the pinned key: %v", err)
	}
	var mm *MismatchError
	err = p.Check("web1", key(2), true)
	if !errors.As(err, &mm) || !strings.Contains(err.Error(), KeyID(key(1))) || !strings.Contains(err.Error(), KeyID(key(2))) || !strings.Contains(err.Error(), path) {
		t.Errorf("changed key: %v; want a mismatch naming both key ids and %s", err, path)
	}
	p.Pin("web1", key(3)) // the inventory says so
	if err := p.Check("web1", key(3), false); err != nil {
		t.Errorf("inventory pin: %v", err)
	}
	if err := os.WriteFile(path, []byte("web1 notakey\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenPins(path); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a corrupt known_hosts: %v; want an error naming the line", err)
	}
}

func TestLoadOrCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", FileName)
	k1, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("first start: %v (created %v)", err, created)
	}
	k2, created, err := LoadOrCreate(path)
	if err != nil || created || !k1.Equal(k2) {
		t.Fatalf("second start: %v (created %v, same key %v)", err, created, k1.Equal(k2))
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil {
		t.Error("a host key readable by others was loaded")
	}
}

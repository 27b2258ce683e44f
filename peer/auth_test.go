package peer

import (
	"context"
	"crypto/ed25519"
	"errors"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
)

// TestAuthenticatedFetch: a server that authenticates serves only a host
// showing a certificate signed for the group and proving its key; a host
// that lost its certificate gets it from the server first.
func TestAuthenticatedFetch(t *testing.T) {
	dir := t.TempDir()
	pub, key, _ := ed25519.GenerateKey(nil)
	img, m, raw := held(t, dir, 20, key)
	id := m.ID()
	_, hostKey, _ := ed25519.GenerateKey(nil)
	_, strangerKey, _ := ed25519.GenerateKey(nil)
	cert := func(host string, k ed25519.PrivateKey, expires time.Time) []byte {
		b, err := control.SignHostCert(&control.HostCert{Issued: time.Now().UnixMilli(), Expires: expires.UnixMilli(),
			Group: "g", Host: host, HostKey: k.Public().(ed25519.PublicKey)}, key)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	good := cert("web2", hostKey, time.Now().Add(time.Hour))
	certs := map[string][]byte{"web2": good, "old": cert("old", strangerKey, time.Now().Add(-time.Minute))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Source: func(r image.ID) (Held, bool) { return Held{Image: img, Manifest: m, Raw: raw}, r == id },
		Authorize: CheckProof([]ed25519.PublicKey{pub}, "g"), Certs: func(h string) []byte { return certs[h] }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Serve(ctx, ln)
	addr := ln.Addr().String()
	fetch := func(a *Auth) error {
		_, _, err := Fetch(ctx, FetchOptions{Release: id, Trusted: []ed25519.PublicKey{pub}, Peers: []string{addr},
			Out: filepath.Join(dir, "out.img"), Auth: a})
		return err
	}
	if err := fetch(nil); !errors.Is(err, errDenied) {
		t.Errorf("no authentication: %v, want denied", err)
	}
	if err := fetch(&Auth{Host: "web2", Key: strangerKey}); !errors.Is(err, errDenied) {
		t.Errorf("another key under web2's name: %v, want denied", err)
	}
	if err := fetch(&Auth{Host: "web2", Key: strangerKey, Cert: good}); !errors.Is(err, errDenied) {
		t.Errorf("web2's certificate without its key: %v, want denied", err)
	}
	if err := fetch(&Auth{Host: "old", Key: strangerKey}); !errors.Is(err, errDenied) {
		t.Errorf("an expired certificate: %v, want denied", err)
	}
	var got []byte
	if err := fetch(&Auth{Host: "web2", Key: hostKey, Got: func(c []byte) { got = c }}); err != nil {
		t.Fatalf("web2 with its key, its certificate from the server: %v", err)
	}
	if string(got) != string(good) {
		t.Error("the certificate fetched was not handed on")
	}
	if err := fetch(&Auth{Host: "web2", Key: hostKey, Cert: good}); err != nil {
		t.Errorf("web2 with its certificate: %v", err)
	}
}

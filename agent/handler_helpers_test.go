package agent

import (
	"bytes"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
)

// The handler tests' keys and clock (the control package's tests use the
// same values).
var (
	goldenKey  = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	trustedPub = goldenKey.Public().(ed25519.PublicKey)
	t0         = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
)

func newVerifier(t *testing.T, cfg control.VerifierConfig) *control.Verifier {
	t.Helper()
	if cfg.Keys == nil {
		cfg.Keys = []ed25519.PublicKey{trustedPub}
	}
	if cfg.Host == "" {
		cfg.Host = "web01"
	}
	if cfg.Group == "" {
		cfg.Group = "web"
	}
	v, err := control.NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

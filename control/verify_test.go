package control

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
)

// t0 is the agent's clock in these tests.
var t0 = time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)

var trustedPub = goldenKey.Public().(ed25519.PublicKey)

func newVerifier(t *testing.T, cfg VerifierConfig) *Verifier {
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
	v, err := NewVerifier(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// signed returns a signed ACTIVATE issued at at for targets, parsed back
// from its encoding as an agent would see it.
func signed(t *testing.T, key ed25519.PrivateKey, at time.Time, targets ...string) Command {
	t.Helper()
	c := &Activate{Envelope: NewEnvelope("web", 7, targets, at), Release: relA}
	wire, err := Sign(c, key)
	if err != nil {
		t.Fatal(err)
	}
	return parsed(t, wire)
}

func parsed(t *testing.T, wire []byte) Command {
	t.Helper()
	c, err := ParseCommand(wire)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerify(t *testing.T) {
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)
	otherID := image.KeyID(otherKey.Public().(ed25519.PublicKey))
	ok := func() Command { return signed(t, goldenKey, t0) }
	cases := []struct {
		name string
		cmd  func() Command
		now  time.Time
		want error
		says []string // the error names these
	}{
		{"fresh", ok, t0, nil, nil},
		{"targets this host", func() Command { return signed(t, goldenKey, t0, "web00", "web01") }, t0, nil, nil},
		{"at the window's old edge", ok, t0.Add(MaxClockSkew), nil, nil},
		{"at the window's future edge", ok, t0.Add(-MaxClockSkew), nil, nil},
		{"unsigned", func() Command {
			c := &Activate{Envelope: NewEnvelope("web", 7, nil, t0), Release: relA}
			wire, _ := c.AppendBinary(nil)
			return parsed(t, wire)
		}, t0, ErrUnsigned, []string{"ACTIVATE", "unsigned"}},
		{"forged release", func() Command {
			c := ok().(*Activate)
			c.Release = relB // signature was over another id
			return c
		}, t0, ErrBadSignature, []string{"ACTIVATE", image.KeyID(trustedPub)}},
		{"forged signature", func() Command {
			c := ok()
			c.Env().Signature[0] ^= 1
			return c
		}, t0, ErrBadSignature, nil},
		{"untrusted key", func() Command { return signed(t, otherKey, t0) }, t0, ErrUntrustedKey,
			[]string{"ACTIVATE", otherID, "deploy 7"}},
		{"trusted key claimed, other key signed", func() Command {
			c := signed(t, otherKey, t0)
			c.Env().PublicKey = trustedPub
			return c
		}, t0, ErrBadSignature, nil},
		{"stale", ok, t0.Add(MaxClockSkew + time.Millisecond), ErrStale, []string{"ago"}},
		{"future", ok, t0.Add(-MaxClockSkew - time.Millisecond), ErrFuture, []string{"ahead"}},
		{"another host", func() Command { return signed(t, goldenKey, t0, "web02") }, t0, ErrNotForHost, []string{"web01"}},
		{"another group", func() Command {
			c := &StatusRequest{Envelope: NewEnvelope("db", 7, nil, t0)}
			wire, _ := Sign(c, goldenKey)
			return parsed(t, wire)
		}, t0, ErrOtherGroup, []string{`"db"`, "STATUS"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v := newVerifier(t, VerifierConfig{})
			err := v.Verify(tc.cmd(), tc.now)
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %v, want %v", err, tc.want)
			}
			if err == nil {
				return
			}
			var re *RefusedError
			if !errors.As(err, &re) || re.Command != TypeActivate && re.Command != TypeStatus {
				t.Errorf("Verify error %v is not a *RefusedError naming the command", err)
			}
			for _, s := range tc.says {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %q", err, s)
				}
			}
		})
	}
}

func TestVerifyReplay(t *testing.T) {
	v := newVerifier(t, VerifierConfig{})
	c := signed(t, goldenKey, t0)
	if err := v.Verify(c, t0); err != nil {
		t.Fatal(err)
	}
	err := v.Verify(c, t0.Add(time.Second))
	if !errors.Is(err, ErrReplay) {
		t.Fatalf("second Verify of one command = %v, want ErrReplay", err)
	}
	for _, s := range []string{"ACTIVATE", image.KeyID(trustedPub), "nonce"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("replay error %q does not name %q", err, s)
		}
	}
	// A refused command's nonce is not taken: a stale copy first, then a
	// fresh delivery of the same command still passes.
	d := signed(t, goldenKey, t0)
	if err := v.Verify(d, t0.Add(MaxClockSkew+time.Second)); !errors.Is(err, ErrStale) {
		t.Fatalf("stale: %v", err)
	}
	if err := v.Verify(d, t0); err != nil {
		t.Errorf("after a refusal, the same command in time: %v", err)
	}
}

// TestReplayCacheBounded: the cache never holds more than MaxNonces, and
// nothing it forgot can be replayed, even when the clock steps back.
func TestReplayCacheBounded(t *testing.T) {
	const max = 4
	v := newVerifier(t, VerifierConfig{MaxNonces: max})
	var cmds []Command
	for i := range 10 {
		at := t0.Add(time.Duration(i) * time.Second)
		c := signed(t, goldenKey, at)
		if err := v.Verify(c, at); err != nil {
			t.Fatalf("command %d: %v", i, err)
		}
		cmds = append(cmds, c)
		if n := len(v.seen.seen); n > max || len(v.seen.order) != n {
			t.Fatalf("after %d commands the cache holds %d nonces (%d ordered), max %d", i+1, n, len(v.seen.order), max)
		}
	}
	for i, c := range cmds {
		if err := v.Verify(c, t0.Add(10*time.Second)); !errors.Is(err, ErrReplay) {
			t.Errorf("replay of command %d: %v, want ErrReplay", i, err)
		}
	}
	// Time eviction: much later every old nonce is forgotten ...
	late := t0.Add(10 * time.Minute)
	if err := v.Verify(signed(t, goldenKey, late), late); err != nil {
		t.Fatal(err)
	}
	if n := len(v.seen.seen); n != 1 {
		t.Errorf("after the window passed the cache holds %d nonces, want 1", n)
	}
	// ... and a clock stepped back into their window still refuses them.
	if err := v.Verify(cmds[9], t0.Add(10*time.Second)); !errors.Is(err, ErrReplay) {
		t.Errorf("replay after the clock stepped back: %v, want ErrReplay", err)
	}
	// A new command issued after the floor passes.
	if err := v.Verify(signed(t, goldenKey, t0.Add(11*time.Second)), t0.Add(11*time.Second)); err != nil {
		t.Errorf("fresh command after the clock stepped back: %v", err)
	}
}

// TestVerifyNotBefore: a command issued before the agent started is
// refused, so a restart does not reopen the replay window.
func TestVerifyNotBefore(t *testing.T) {
	v := newVerifier(t, VerifierConfig{NotBefore: t0})
	if err := v.Verify(signed(t, goldenKey, t0.Add(-time.Second)), t0); !errors.Is(err, ErrReplay) {
		t.Errorf("command from before the start: %v, want ErrReplay", err)
	}
	if err := v.Verify(signed(t, goldenKey, t0), t0); err != nil {
		t.Errorf("command issued at the start: %v", err)
	}
}

func TestNewVerifierRefuses(t *testing.T) {
	for name, cfg := range map[string]VerifierConfig{
		"no keys":   {Host: "h", Group: "g"},
		"short key": {Keys: []ed25519.PublicKey{make([]byte, 5)}, Host: "h", Group: "g"},
		"no host":   {Keys: []ed25519.PublicKey{trustedPub}, Group: "g"},
		"bad group": {Keys: []ed25519.PublicKey{trustedPub}, Host: "h", Group: "a b"},
	} {
		if _, err := NewVerifier(cfg); err == nil {
			t.Errorf("%s: NewVerifier succeeded", name)
		}
	}
}

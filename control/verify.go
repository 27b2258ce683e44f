package control

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// MaxClockSkew is how far a command's issue time may be from the agent's
// clock, either way. Fleet clocks are NTP-synced to well under a second;
// two minutes also covers a host whose sync lags, a sender retransmitting
// one command until every host answers, and slow switches on 2,000 hosts,
// while a captured command stays replayable for only that long (and the
// replay cache refuses it within it).
const MaxClockSkew = 2 * time.Minute

// DefaultMaxNonces bounds the replay cache: at most this many accepted
// commands in any 2×MaxClockSkew window are told apart; more than that (a
// command every 60 ms for four minutes) only makes the oldest ones refused
// as replays.
const DefaultMaxNonces = 4096

// VerifierConfig configures a Verifier.
type VerifierConfig struct {
	// Keys are the trusted public keys; at least one.
	Keys []ed25519.PublicKey
	// Host is this agent's host id; Group is its group.
	Host, Group string
	// Window is the accepted clock skew; MaxClockSkew when zero.
	Window time.Duration
	// MaxNonces bounds the replay cache; DefaultMaxNonces when zero.
	MaxNonces int
	// NotBefore refuses commands issued before it. The replay cache lives
	// in memory: the agent sets this to its start time, so a command
	// captured before a restart cannot be replayed after it.
	NotBefore time.Time
}

// Verifier decides whether a command may be obeyed. It is safe for
// concurrent use.
type Verifier struct {
	keys        []ed25519.PublicKey
	host, group string
	window      time.Duration

	mu   sync.Mutex
	seen *replayCache
}

// NewVerifier returns a verifier for one agent.
func NewVerifier(cfg VerifierConfig) (*Verifier, error) {
	if len(cfg.Keys) == 0 {
		return nil, errors.New("control: a verifier needs at least one trusted key")
	}
	for _, k := range cfg.Keys {
		if len(k) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("control: trusted key of %d bytes", len(k))
		}
	}
	if err := errors.Join(checkHost("host", cfg.Host), checkName("group", cfg.Group, false)); err != nil {
		return nil, fmt.Errorf("control: verifier: %w", err)
	}
	if cfg.Window <= 0 {
		cfg.Window = MaxClockSkew
	}
	if cfg.MaxNonces <= 0 {
		cfg.MaxNonces = DefaultMaxNonces
	}
	floor := int64(-1 << 63)
	if !cfg.NotBefore.IsZero() {
		floor = cfg.NotBefore.UnixMilli() - 1
	}
	return &Verifier{
		keys: cfg.Keys, host: cfg.Host, group: cfg.Group, window: cfg.Window,
		seen: newReplayCache(cfg.MaxNonces, floor),
	}, nil
}

// Host returns the host id the verifier accepts commands for.
func (v *Verifier) Host() string { return v.host }

// RefusedError is a command a Verifier refused; Err is one of the
// sentinel errors (ErrUnsigned, ErrReplay, ...).
type RefusedError struct {
	Command Type
	Deploy  uint64
	Key     string // the signing key's id, or "unsigned"
	Err     error
}

func (e *RefusedError) Error() string {
	return fmt.Sprintf("control: refused %v of deploy %d signed by key %s: %s",
		e.Command, e.Deploy, e.Key, strings.TrimPrefix(e.Err.Error(), "control: "))
}

func (e *RefusedError) Unwrap() error { return e.Err }

// Verify checks c at time now: addressed to this host and group, signed by
// a trusted key, issued within the window, and not seen before. It then
// remembers c's nonce, so the same command is refused as a replay from
// then on. A refusal is a *RefusedError.
func (v *Verifier) Verify(c Command, now time.Time) error {
	e := c.Env()
	refuse := func(err error) error {
		return &RefusedError{Command: c.Type(), Deploy: e.Deploy, Key: e.KeyID(), Err: err}
	}
	if err := v.check(c, now); err != nil {
		return refuse(err)
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.seen.check(e.Nonce, e.Issued); err != nil {
		return refuse(err)
	}
	v.seen.add(e.Nonce, e.Issued, now.Add(-v.window).UnixMilli())
	return nil
}

// check does everything but the replay check.
func (v *Verifier) check(c Command, now time.Time) error {
	e := c.Env()
	if e.Group != v.group {
		return fmt.Errorf("%w: %q, this agent is in %q", ErrOtherGroup, e.Group, v.group)
	}
	if !e.targets(v.host) {
		return fmt.Errorf("%w: %s is not among its %d targets", ErrNotForHost, v.host, len(e.Targets))
	}
	if err := v.checkSignature(c); err != nil {
		return err
	}
	issued := e.IssuedAt()
	if d := now.Sub(issued); d > v.window {
		return fmt.Errorf("%w: issued %s ago, more than %s", ErrStale, d.Round(time.Millisecond), v.window)
	} else if -d > v.window {
		return fmt.Errorf("%w: issued %s ahead of this host's clock, more than %s", ErrFuture, (-d).Round(time.Millisecond), v.window)
	}
	return nil
}

// trusted reports whether key is one of keys: the one test of a signer
// that commands, fleet pointers and host certificates share.
func trusted(keys []ed25519.PublicKey, key ed25519.PublicKey) bool {
	return slices.ContainsFunc(keys, func(k ed25519.PublicKey) bool { return k.Equal(key) })
}

func (v *Verifier) checkSignature(c Command) error {
	e := c.Env()
	if e.PublicKey == nil {
		return ErrUnsigned
	}
	if !trusted(v.keys, e.PublicKey) {
		return ErrUntrustedKey
	}
	msg, err := signedBytes(c)
	if err != nil {
		return err
	}
	if !ed25519.Verify(e.PublicKey, msg, e.Signature) {
		return ErrBadSignature
	}
	return nil
}

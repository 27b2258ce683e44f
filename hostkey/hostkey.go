// Package hostkey holds host identities: the host-id rule every package
// and the CLI check names by, each agent's own ed25519 host key, and the
// sender's pins of those keys (known_hosts in its state directory, as
// ssh keeps them).
//
// An agent signs what it tells the sender with its host key: REGISTER,
// REFUSE and every control reply, and keys the MAC of its NACKs and
// COMPLETEs from a key agreement bound by that signature. The sender pins
// each host's key the first time it sees it (or up front from an
// inventory) and refuses a changed key loudly, so a stranger on the LAN
// cannot pose as a host.
package hostkey

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/loopcast/loopcast/image"
)

// MaxID caps a host id: an FQDN label set fits.
const MaxID = 64

// ErrBadID is a host id outside the rule.
var ErrBadID = errors.New("invalid host id")

// CheckID checks a host id: 1 to MaxID bytes of letters, digits, '.', '_'
// and '-', starting with a letter or digit. Host ids are printed in
// reports, logs and the audit log; the charset keeps them safe to print
// and to pass to a shell unquoted, wherever they come from (the wire, the
// CLI, an inventory).
func CheckID(id string) error {
	if id == "" || len(id) > MaxID {
		return fmt.Errorf("%w %q: want 1 to %d characters", ErrBadID, Printable(id), MaxID)
	}
	for i := range len(id) {
		c := id[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '.' && c != '_' && c != '-') {
			return fmt.Errorf("%w %q: byte %d is %q; use letters, digits, '.', '_' and '-', starting with a letter or digit",
				ErrBadID, Printable(id), i, Printable(string(c)))
		}
	}
	return nil
}

// Printable returns s with every byte outside printable ASCII escaped
// (\xNN), so text that came from the network cannot drive a terminal or
// forge a log line.
func Printable(s string) string {
	for i := range len(s) {
		if s[i] < ' ' || s[i] > '~' || s[i] == '\\' {
			return escape(s)
		}
	}
	return s
}

func escape(s string) string {
	b := make([]byte, 0, len(s)+8)
	for i := range len(s) {
		c := s[i]
		switch {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c < ' ' || c > '~':
			b = fmt.Appendf(b, `\x%02x`, c)
		default:
			b = append(b, c)
		}
	}
	return string(b)
}

// KeyID is the short fingerprint of a host key printed in messages.
func KeyID(pub ed25519.PublicKey) string { return image.KeyID(pub) }

// Encode returns a public key as it is written in known_hosts and in an
// inventory: "ed25519:" and the key in base64.
func Encode(pub ed25519.PublicKey) string {
	return "ed25519:" + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublic parses a key written by Encode.
func ParsePublic(s string) (ed25519.PublicKey, error) {
	const prefix = "ed25519:"
	if len(s) <= len(prefix) || s[:len(prefix)] != prefix {
		return nil, fmt.Errorf("host key %q: want ed25519:BASE64", Printable(s))
	}
	b, err := base64.StdEncoding.DecodeString(s[len(prefix):])
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("host key %q: not a base64 ed25519 public key", Printable(s))
	}
	return ed25519.PublicKey(b), nil
}

// FileName is the host key's file under an agent's root.
const FileName = "host.key"

// LoadOrCreate reads the host key at path, or makes one there (mode 0600,
// its public half beside it as .pub) when there is none. created says
// which.
func LoadOrCreate(path string) (key ed25519.PrivateKey, created bool, err error) {
	if _, err := os.Lstat(path); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, false, fmt.Errorf("hostkey: %w", err)
		}
		if _, err := image.GenerateKeyFiles(path); err != nil {
			return nil, false, fmt.Errorf("hostkey: %w", err)
		}
		created = true
	}
	key, err = Load(path)
	return key, created, err
}

// Load reads a host key and checks that only its owner can read it.
func Load(path string) (ed25519.PrivateKey, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("hostkey: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("hostkey: %s is mode %v: a host key must be readable by its owner only (chmod 600 %s)", path, fi.Mode().Perm(), path)
	}
	key, err := image.ReadPrivateKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("hostkey: %w", err)
	}
	return key, nil
}

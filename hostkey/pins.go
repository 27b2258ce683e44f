package hostkey

import (
	"bufio"
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/loopcast/loopcast/internal/atomicfile"
)

// KnownHostsFile is the pins' file in a sender's state directory.
const KnownHostsFile = "known_hosts"

// MismatchError is a host whose key is not the one pinned for it: another
// machine poses as it, or it was reinstalled (then remove its line from
// known_hosts, or pin the new key in the inventory).
type MismatchError struct {
	Host     string
	Old, New ed25519.PublicKey
	File     string // where the old key is pinned; empty: the inventory
}

func (e *MismatchError) Error() string {
	where := "the inventory"
	if e.File != "" {
		where = e.File
	}
	return fmt.Sprintf("host %s presented key %s, but %s pins key %s: refused (another machine may pose as it; if the host was reinstalled, remove its line from %s)",
		e.Host, KeyID(e.New), where, KeyID(e.Old), where)
}

// ErrUnknown is a host with no pinned key where new hosts are not
// admitted.
var ErrUnknown = errors.New("host key not pinned and new hosts not admitted")

// Pins are the host keys a sender trusts, by host id: those of an
// inventory (fixed) and those it learned on first contact (saved to
// known_hosts). Safe for concurrent use.
type Pins struct {
	mu    sync.Mutex
	path  string
	keys  map[string]ed25519.PublicKey
	fixed map[string]bool // from the inventory: never learned or replaced
	dirty bool
}

// OpenPins reads the known_hosts file at path (none yet: no pins); path
// "" keeps pins in memory only.
func OpenPins(path string) (*Pins, error) {
	p := &Pins{path: path, keys: map[string]ed25519.PublicKey{}, fixed: map[string]bool{}}
	if path == "" {
		return p, nil
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return p, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hostkey: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		id, pub, ok, err := ParseLine(sc.Text())
		if err != nil {
			return nil, fmt.Errorf("hostkey: %s line %d: %w", path, n, err)
		}
		if ok {
			p.keys[id] = pub
		}
	}
	return p, sc.Err()
}

// ParseLine parses one "ID ed25519:BASE64" line; blank lines and # comments
// are skipped (ok false).
func ParseLine(line string) (id string, pub ed25519.PublicKey, ok bool, err error) {
	line = strings.TrimSpace(line)
	if line == "" || line[0] == '#' {
		return "", nil, false, nil
	}
	f := strings.Fields(line)
	if len(f) != 2 {
		return "", nil, false, fmt.Errorf("want \"HOST-ID ed25519:BASE64\", got %d fields", len(f))
	}
	if err := CheckID(f[0]); err != nil {
		return "", nil, false, err
	}
	if pub, err = ParsePublic(f[1]); err != nil {
		return "", nil, false, err
	}
	return f[0], pub, true, nil
}

// Pin fixes id's key (from an inventory): a host presenting another key
// is refused, and known_hosts cannot override it.
func (p *Pins) Pin(id string, pub ed25519.PublicKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys[id], p.fixed[id] = pub, true
}

// Len is how many hosts have a pinned key.
func (p *Pins) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.keys)
}

// Known returns id's pinned key.
func (p *Pins) Known(id string) (ed25519.PublicKey, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	k, ok := p.keys[id]
	return k, ok
}

// Check accepts pub as id's key when it is the pinned one, or, when id has
// none and learn is set, pins it (trust on first use). A different key is
// a *MismatchError; an unknown host not learned is ErrUnknown.
func (p *Pins) Check(id string, pub ed25519.PublicKey, learn bool) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	old, ok := p.keys[id]
	switch {
	case ok && old.Equal(pub):
		return nil
	case ok:
		e := &MismatchError{Host: id, Old: old, New: pub}
		if !p.fixed[id] {
			e.File = p.path
		}
		return e
	case !learn:
		return fmt.Errorf("host %s (key %s): %w", id, KeyID(pub), ErrUnknown)
	}
	p.keys[id], p.dirty = slices.Clone(pub), true
	return nil
}

// Save writes the learned pins to known_hosts (atomically), if any are
// new. Inventory pins are written too, so a later run without the
// inventory still knows them.
func (p *Pins) Save() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dirty || p.path == "" {
		return nil
	}
	ids := make([]string, 0, len(p.keys))
	for id := range p.keys {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	var b bytes.Buffer
	b.WriteString("# loopcast known hosts: HOST-ID KEY; pinned on first contact, checked on every one after\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%s %s\n", id, Encode(p.keys[id]))
	}
	if err := atomicfile.WriteFile(p.path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("hostkey: %w", err)
	}
	p.dirty = false
	return nil
}

package agent

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/internal/atomicfile"
)

// CertsFile keeps the host certificates the agent has heard (every host's
// of the group, signed by a release key): its peers are served only when
// they show theirs, and a host that lost its own asks a peer for it.
const CertsFile = "certs.json"

// maxCerts bounds the certificates kept: a group of a few thousand hosts.
const maxCerts = 8192

// certSaveEvery spaces the saves of the certificate file: a deploy brings
// one certificate per host in a burst, saved once.
const certSaveEvery = 2 * time.Second

// certStore is the agent's certificates, by host.
type certStore struct {
	path  string
	keys  []ed25519.PublicKey
	group string

	mu    sync.Mutex
	certs map[string][]byte
	dirty bool
}

func loadCerts(root string, keys []ed25519.PublicKey, group string) *certStore {
	s := &certStore{path: filepath.Join(root, CertsFile), keys: keys, group: group, certs: map[string][]byte{}}
	b, err := os.ReadFile(s.path)
	if err != nil {
		return s
	}
	var all map[string][]byte
	if json.Unmarshal(b, &all) != nil {
		return s
	}
	now := time.Now()
	for h, raw := range all {
		if c, err := control.ParseHostCert(raw); err == nil && c.Host == h && control.VerifyHostCert(c, keys, group, now) == nil {
			s.certs[h] = raw
		}
	}
	return s
}

// take keeps a verified certificate newer than the one held for its host.
func (s *certStore) take(raw []byte, now time.Time) error {
	if s == nil {
		return errors.New("agent: no certificate store")
	}
	c, err := control.ParseHostCert(raw)
	if err != nil {
		return err
	}
	if err := control.VerifyHostCert(c, s.keys, s.group, now); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.certs[c.Host]; ok {
		if o, err := control.ParseHostCert(old); err == nil && o.Issued >= c.Issued {
			return nil
		}
	} else if len(s.certs) >= maxCerts {
		return errors.New("agent: certificate store full")
	}
	s.certs[c.Host] = append([]byte(nil), raw...)
	s.dirty = true
	return nil
}

func (s *certStore) get(host string) []byte {
	if s == nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.certs[host]
}

// save writes the file if it changed.
func (s *certStore) save() error {
	s.mu.Lock()
	if !s.dirty {
		s.mu.Unlock()
		return nil
	}
	b, err := json.Marshal(s.certs)
	s.dirty = false
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return atomicfile.WriteFile(s.path, b, 0o644)
}

// saveLoop saves the certificates every certSaveEvery while they change,
// and once more when ctx ends.
func (s *certStore) saveLoop(ctx context.Context, warn func(error)) error {
	t := time.NewTicker(certSaveEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := s.save(); err != nil {
				warn(err)
			}
			return ctx.Err()
		case <-t.C:
			if err := s.save(); err != nil {
				warn(err)
			}
		}
	}
}

package deploy

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
)

// pointerSends is how many times a pointer is multicast, pointerGap apart:
// it is not acknowledged (an agent that misses it asks its peers later),
// so a few copies ride out a lost datagram. The deploy waits out the gaps
// (its connection must stay open), so they are short: a drop of a full
// socket queue lasts milliseconds, and 100 ms gaps held every deploy,
// a one-file hotfix's ~2.5 s included, 200 ms.
const (
	pointerSends = 3
	pointerGap   = 20 * time.Millisecond
)

// PointerRecord is the last fleet pointer a sender issued for a group,
// kept in its state directory so the next one's sequence number is higher.
type PointerRecord struct {
	Seq     uint64    `json:"seq"`
	Release image.ID  `json:"release"`
	Issued  time.Time `json:"issued"`
	Pointer []byte    `json:"pointer"` // the signed encoding
	// Sealed: the release may have been deployed sealed (--encrypt, or a
	// rollback's target, whose deploy this record does not know): sender
	// serve does not serve it.
	Sealed bool `json:"sealed,omitempty"`
}

// ReadPointer reads the record at path; nil when there is none.
func ReadPointer(path string) (*PointerRecord, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("deploy: fleet pointer: %w", err)
	}
	var r PointerRecord
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("deploy: fleet pointer %s: %w", path, err)
	}
	return &r, nil
}

// Publish issues a fleet pointer to release (manifest digest, zero when the
// sender does not hold the manifest: hosts then check the id and the
// signature) for hosts, records it at path and multicasts it to the
// group, and by unicast to every host c knows an address for. Its sequence
// number is above the last recorded and at least the time in milliseconds,
// so it grows across state directories too.
// A rollback's pointer says so: only it takes hosts to an older release.
// groupSize, when above len(hosts), is the hosts the sender knows in the
// group (agents size their share of pointer answers by it).
func Publish(c *Commander, path string, release image.ID, digest [sha256.Size]byte, hosts []string, groupSize int, rollback, sealed bool) (*control.Pointer, error) {
	last, err := ReadPointer(path)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	p := &control.Pointer{Seq: uint64(now.UnixMilli()), Issued: now.UnixMilli(), Group: c.Group, Release: release,
		Digest: digest, Hosts: uint32(max(len(hosts), groupSize)), Rollback: rollback}
	if last != nil && last.Seq >= p.Seq {
		p.Seq = last.Seq + 1
	}
	if last != nil && !last.Issued.Before(now) { // a clock stepped back: still issued after the last
		p.Issued = last.Issued.UnixMilli() + 1
	}
	pkt, err := control.SignPointer(p, c.Key)
	if err != nil {
		return nil, err
	}
	b, _ := json.MarshalIndent(PointerRecord{Seq: p.Seq, Release: release, Issued: now, Pointer: pkt, Sealed: sealed}, "", "  ")
	if err := atomicfile.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return nil, fmt.Errorf("deploy: record the fleet pointer: %w", err)
	}
	for i := range pointerSends {
		if i > 0 {
			time.Sleep(pointerGap)
		}
		if _, err := c.Conn.WriteTo(pkt, c.To); err != nil && i == 0 {
			c.log().Warn("deploy: the fleet pointer was not multicast: hosts learn it from their peers", "addr", c.To, "err", err)
		}
		c.unicast(pkt, hosts)
	}
	c.log().Debug("deploy: fleet pointer published", "pointer", p)
	return p, nil
}

// certGap paces certificates: one per host in a burst would overrun the
// agents' socket buffers at a few thousand hosts.
const (
	certBurst = 64
	certGap   = 5 * time.Millisecond
)

// IssueCerts signs a host certificate (control.HostCert, good for
// control.CertLifetime) for every host in hosts whose key pub knows, sends
// each to the group (every agent keeps them all, to check its peers) and
// by unicast to the hosts c knows an address for, and records them at
// path (JSON, host -> certificate) for sender serve. It returns how many
// it issued.
func IssueCerts(c *Commander, path string, hosts []string, pub func(host string) (ed25519.PublicKey, bool)) (int, error) {
	now := time.Now()
	all := map[string][]byte{}
	if b, err := os.ReadFile(path); err == nil {
		json.Unmarshal(b, &all)
	}
	n := 0
	for _, h := range hosts {
		k, ok := pub(h)
		if !ok {
			continue
		}
		raw, err := control.SignHostCert(&control.HostCert{Issued: now.UnixMilli(), Expires: now.Add(control.CertLifetime).UnixMilli(),
			Group: c.Group, Host: h, HostKey: k}, c.Key)
		if err != nil {
			return n, err
		}
		all[h] = raw
		for range 2 { // not acknowledged: a host that misses it asks a peer
			c.Conn.WriteTo(raw, c.To)
		}
		c.unicast(raw, []string{h})
		if n++; n%certBurst == 0 {
			time.Sleep(certGap)
		}
	}
	b, _ := json.Marshal(all)
	if err := atomicfile.WriteFile(path, b, 0o644); err != nil {
		return n, fmt.Errorf("deploy: record the host certificates: %w", err)
	}
	return n, nil
}

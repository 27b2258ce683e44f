package multicast

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// Packet authentication (version 3). A packet's header flags (wire.Auth)
// say which tag ends it; the tag covers every byte before it, header included, so
// it binds the packet's type, session and sequence:
//
//	flags 0: none. MANIFEST, DATA and REPAIR: the signed manifest's
//	         digest (in the signed ANNOUNCE) and chunk hashes vouch for
//	         their content.
//	flags 1: an ed25519 signature (64 bytes). ANNOUNCE by the release
//	         key (a relay's by its host key, which a grant signed by the
//	         release key names: relay.go); STATUS and ABORT by the session
//	         key the ANNOUNCE names; REGISTER and REFUSE by the host's own
//	         key, which they carry; COMPLETE in a relayed session by the
//	         host's own key (its relay forwards it to the sender as it is).
//	flags 2: HMAC-SHA256 truncated to 16 bytes. NACK and COMPLETE (host
//	         to sender), RELAY-STATUS (relay to sender) and the sender's
//	         acknowledgements (sender to host), each under its direction's
//	         key from an X25519 agreement of the host's per-session key (in
//	         its signed REGISTER) with the session's (in the signed
//	         ANNOUNCE).
//
// So a stranger on the LAN, who may know the release public key, every
// host id and the session id, can neither announce, steer (STATUS, ABORT)
// nor answer for a host (REGISTER, NACK, COMPLETE), and a host's reply
// address moves only with a newer signed REGISTER.
const (
	// MaxClockSkew bounds how far an ANNOUNCE's or REGISTER's signing time
	// may be from the reader's clock: a replayed ANNOUNCE older than this
	// opens no session.
	MaxClockSkew = 10 * time.Minute
)

// appendSigned appends the packet of h and m signed with key.
func appendSigned(b []byte, h wire.Header, m wire.Message, key ed25519.PrivateKey) ([]byte, error) {
	return wire.AppendTagged(b, h, m, wire.AuthSig, func(p []byte) []byte { return ed25519.Sign(key, p) })
}

// appendMAC appends the packet of h and m with a MAC under key.
func appendMAC(b []byte, h wire.Header, m wire.Message, key *macKey) ([]byte, error) {
	return wire.AppendTagged(b, h, m, wire.AuthMAC, key.sum)
}

// signedBy reports whether a parsed packet carries pub's signature.
func signedBy(h *wire.Header, pub []byte) bool {
	return h.Auth() == wire.AuthSig && len(pub) == ed25519.PublicKeySize && ed25519.Verify(pub, h.Covered(), h.Tag())
}

// macBy reports whether a parsed packet carries a valid MAC under key.
func macBy(h *wire.Header, key *macKey) bool {
	return h.Auth() == wire.AuthMAC && key != nil && hmac.Equal(key.sum(h.Covered()), h.Tag())
}

// macKey is one direction's MAC key of a host's session.
type macKey [32]byte

func (k *macKey) sum(b []byte) []byte {
	m := hmac.New(sha256.New, k[:])
	m.Write(b)
	return m.Sum(nil)[:wire.MACLen]
}

// pairKeys are a host's session MAC keys: up for host to sender, down for
// sender to host.
type pairKeys struct{ up, down, wrap macKey }

// agree derives a host's pair keys from an X25519 agreement of priv with
// peer, bound to the session and the host id.
func agree(priv *ecdh.PrivateKey, peer [32]byte, session uint32, host string) (*pairKeys, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer[:])
	if err != nil {
		return nil, err
	}
	secret, err := priv.ECDH(pub)
	if err != nil {
		return nil, err
	}
	salt := binary.BigEndian.AppendUint32([]byte("loopcast/3 session "), session)
	k := &pairKeys{}
	for _, d := range []struct {
		info string
		key  *macKey
	}{{"host->sender " + host, &k.up}, {"sender->host " + host, &k.down}, {"content key " + host, &k.wrap}} {
		b, err := hkdf.Key(sha256.New, secret, salt, d.info, len(d.key))
		if err != nil {
			return nil, err
		}
		copy(d.key[:], b)
	}
	return k, nil
}

// newDH makes a fresh X25519 key for one session.
func newDH() *ecdh.PrivateKey {
	k, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		panic("multicast: no randomness: " + err.Error())
	}
	return k
}

// pub32 returns a public key as the 32 bytes the wire carries.
func pub32(b []byte) (p [32]byte) {
	copy(p[:], b)
	return p
}

// skewDetail says how far a signing time is from now, for a refusal an
// operator reads ("its clock is 12m0s behind this sender's").
func skewDetail(whose string, ms int64, now time.Time) string {
	d := now.Sub(time.UnixMilli(ms)).Round(time.Second)
	rel := "behind"
	if d < 0 {
		d, rel = -d, "ahead of"
	}
	return fmt.Sprintf("clock skew: %s clock is %v %s this one's (more than %v): sync the clocks (NTP)", whose, d, rel, MaxClockSkew)
}

// fresh reports whether a signing time (unix ms) is within MaxClockSkew of now.
func fresh(ms int64, now time.Time) bool {
	d := now.Sub(time.UnixMilli(ms))
	return d < MaxClockSkew && d > -MaxClockSkew
}

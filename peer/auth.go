package peer

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
)

// Authentication. A server opens each connection with a challenge:
//
//	"LCPC" | version u8 (1) | challenge [16]
//
// and, when it authenticates (Server.Authorize set), serves nothing but
// certificates until the client has sent AUTH: its host certificate
// (control.HostCert, signed by a release key for the group) and an ed25519
// signature by the certificate's host key over authContext | challenge.
// A client that lacks its certificate (a wiped store keeps the host key,
// not the certificates) first asks for it by host id (op CERT): the
// certificate is public, and only the key's holder can use it.
var (
	challengeMagic = [4]byte{'L', 'C', 'P', 'C'}
	authContext    = []byte("loopcast peer auth v1\x00")
)

// maxCert bounds a certificate on the wire.
const maxCert = 1024

// Auth is how a fetching host proves it is a host of the group.
type Auth struct {
	Host string
	Key  ed25519.PrivateKey
	// Cert is the host's certificate; nil: asked of each peer (op CERT)
	// and, when it is for Key, handed to Got.
	Cert []byte
	Got  func(cert []byte)
}

// hello sends the connection's challenge.
func (s *Server) hello(c net.Conn, w *bufio.Writer) ([16]byte, error) {
	var ch [16]byte
	rand.Read(ch[:])
	c.SetWriteDeadline(time.Now().Add(RequestTimeout))
	w.Write(challengeMagic[:])
	w.WriteByte(version)
	w.Write(ch[:])
	return ch, w.Flush()
}

// answerCert sends host's certificate, if the server keeps one.
func (s *Server) answerCert(w *bufio.Writer, host string) error {
	var cert []byte
	if s.Certs != nil {
		cert = s.Certs(host)
	}
	if len(cert) == 0 || len(cert) > maxCert {
		w.WriteByte(statusNotHeld)
		return w.Flush()
	}
	w.WriteByte(statusOK)
	binary.Write(w, binary.BigEndian, uint16(len(cert)))
	w.Write(cert)
	return w.Flush()
}

// authenticate checks an AUTH request; a refusal ends the connection.
func (s *Server) authenticate(w *bufio.Writer, q request, challenge [16]byte) error {
	if s.Authorize == nil {
		w.WriteByte(statusOK)
		return w.Flush()
	}
	if err := s.Authorize(q.cert, proofMessage(challenge), q.sig); err != nil {
		w.WriteByte(statusDenied)
		w.Flush()
		return fmt.Errorf("peer: %s refused: %w", q.name, err)
	}
	w.WriteByte(statusOK)
	return w.Flush()
}

func proofMessage(challenge [16]byte) []byte {
	return append(append([]byte(nil), authContext...), challenge[:]...)
}

// CheckProof is the usual Authorize: cert must be a host certificate
// signed by one of keys for group and good now, and sig its host key's
// signature over msg.
func CheckProof(keys []ed25519.PublicKey, group string) func(cert, msg, sig []byte) error {
	return func(cert, msg, sig []byte) error {
		c, err := control.ParseHostCert(cert)
		if err != nil {
			return err
		}
		if err := control.VerifyHostCert(c, keys, group, time.Now()); err != nil {
			return err
		}
		if !ed25519.Verify(c.HostKey, msg, sig) {
			return fmt.Errorf("host %s: the proof is not signed by the certificate's key", c.Host)
		}
		return nil
	}
}

// open dials a peer, reads its challenge and, with o.Auth, authenticates.
func open(ctx context.Context, o FetchOptions, addr string) (net.Conn, *bufio.Reader, error) {
	c, err := o.Dial(ctx, addr)
	if err != nil {
		return nil, nil, err
	}
	c.SetDeadline(time.Now().Add(RequestTimeout))
	r := bufio.NewReaderSize(c, 256<<10)
	var hello [21]byte
	if _, err := io.ReadFull(r, hello[:]); err != nil {
		c.Close()
		return nil, nil, fmt.Errorf("no challenge: %w", err)
	}
	if [4]byte(hello[:4]) != challengeMagic || hello[4] != version {
		c.Close()
		return nil, nil, errors.New("not a loopcast peer (bad challenge)")
	}
	if o.Auth == nil {
		return c, r, nil
	}
	if err := authenticate(c, r, o.Auth, [16]byte(hello[5:])); err != nil {
		c.Close()
		return nil, nil, err
	}
	return c, r, nil
}

func authenticate(c net.Conn, r *bufio.Reader, a *Auth, challenge [16]byte) error {
	cert := a.Cert
	if cert == nil {
		var err error
		if cert, err = askCert(c, r, a); err != nil {
			return err
		}
	}
	b := appendRequest(nil, opAuth, a.Host, 0, 0, image.ID{})
	b = binary.BigEndian.AppendUint16(b, uint16(len(cert)))
	b = append(b, cert...)
	b = append(b, ed25519.Sign(a.Key, proofMessage(challenge))...)
	if _, err := c.Write(b); err != nil {
		return err
	}
	return readStatus(r)
}

// askCert asks the peer for this host's certificate and keeps it when it
// is for this host's key.
func askCert(c net.Conn, r *bufio.Reader, a *Auth) ([]byte, error) {
	if _, err := c.Write(appendRequest(nil, opCert, a.Host, 0, 0, image.ID{})); err != nil {
		return nil, err
	}
	if err := readStatus(r); err != nil {
		if errors.Is(err, errNotHeld) {
			return nil, fmt.Errorf("it holds no certificate for host %s: %w", a.Host, errDenied)
		}
		return nil, err
	}
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if n > maxCert {
		return nil, fmt.Errorf("certificate of %d bytes", n)
	}
	cert := make([]byte, n)
	if _, err := io.ReadFull(r, cert); err != nil {
		return nil, err
	}
	hc, err := control.ParseHostCert(cert)
	if err != nil {
		return nil, err
	}
	if hc.Host != a.Host || !hc.HostKey.Equal(a.Key.Public()) {
		return nil, fmt.Errorf("its certificate for host %s is for another key: %w", a.Host, errDenied)
	}
	if a.Got != nil {
		a.Got(cert)
	}
	return cert, nil
}

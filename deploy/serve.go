package deploy

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
	"github.com/loopcast/loopcast/peer"
	"golang.org/x/time/rate"
)

// ServeOptions configures Serve.
type ServeOptions struct {
	Group *net.UDPAddr // the agents' data group; queries come to its control port
	Iface string
	// PointerFile is the group's fleet pointer record; Images the folder
	// of the images the sender built for the group (<id>.img and
	// <id>.img.manifest).
	PointerFile, Images string
	// CertFile holds the host certificates the sender issued: a host is
	// served only on one (signed by the key that signed the pointer), and
	// one that lost its own gets it here.
	CertFile string
	Logger   *slog.Logger
}

// serveRate bounds the pointer answers a second, as agents bound theirs.
const serveRate = 20

// Serve is the sender's fallback for hosts catching up with the fleet: it
// answers the agents' POINTER? queries with the group's fleet pointer,
// flagged as a source of last resort, and serves the images it built for
// the group to hosts that ask, on TCP at the control port, with the agents'
// peer protocol. Agents take chunks from it only when no peer serves the
// release (a fleet whose other hosts are all down or wiped). It serves only
// the pointer's release, and not when that was deployed with --encrypt or
// the pointer is a rollback's (the sender cannot tell how the target was
// deployed). It runs until ctx ends.
func Serve(ctx context.Context, o ServeOptions) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	ctlAddr := control.Addr(o.Group)
	conn, err := multicast.ListenGroup(ctlAddr, o.Iface)
	if err != nil {
		return err
	}
	defer conn.Close()
	ln, err := net.Listen("tcp", fmt.Sprintf(":%d", ctlAddr.Port))
	if err != nil {
		return fmt.Errorf("deploy: serve releases on TCP port %d: %w", ctlAddr.Port, err)
	}
	s := &server{o: o, log: log, answers: rate.NewLimiter(serveRate, serveRate)}
	ps := &peer.Server{Source: s.source, Logger: log, Authorize: s.authorize, Certs: s.cert}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ps.Serve(ctx, ln) }()
	go func() { <-ctx.Done(); conn.Close() }()
	log.Info("serve: answering fleet pointer queries and serving releases", "group", o.Group.String(), "port", ctlAddr.Port)
	buf := make([]byte, control.MaxMessageLen)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			cancel()
			<-done
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("deploy: serve: %w", err)
		}
		s.answer(conn, buf[:n], from, time.Now())
	}
}

type server struct {
	o   ServeOptions
	log *slog.Logger

	answers *rate.Limiter
}

// answer answers a POINTER? query for this group.
func (s *server) answer(conn multicast.Conn, pkt []byte, from net.Addr, now time.Time) {
	if t, ok := control.PeekType(pkt); !ok || t != control.TypePointerQuery {
		return
	}
	q, err := control.ParsePointerQuery(pkt)
	if err != nil || q.Group != s.o.Group.String() {
		return
	}
	rec, err := ReadPointer(s.o.PointerFile)
	if err != nil || rec == nil || rec.Seq < q.Have {
		return
	}
	if !s.answers.AllowN(now, 1) {
		return
	}
	_, serves := s.source(rec.Release)
	b, err := (&control.PointerAnswer{Serves: serves, LastResort: true, Pointer: rec.Pointer}).AppendBinary(nil)
	if err == nil {
		_, err = conn.WriteTo(b, from)
	}
	if err != nil {
		s.log.Debug("serve: pointer answer", "to", from.String(), "err", err)
		return
	}
	s.log.Info("serve: a host asked for the fleet pointer", "from", from.String(), "release", rec.Release, "serves", serves)
}

// source returns the image of the fleet pointer's release, if the sender
// built it and did not deploy it sealed: nothing else is served (an older
// image may be of a sealed deploy).
func (s *server) source(id image.ID) (peer.Held, bool) {
	rec, err := ReadPointer(s.o.PointerFile)
	if err != nil || rec == nil || id.IsZero() || rec.Release != id || rec.Sealed {
		return peer.Held{}, false
	}
	img := filepath.Join(s.o.Images, id.String()+".img")
	raw, err := os.ReadFile(img + ".manifest")
	if err != nil {
		return peer.Held{}, false
	}
	m, err := image.ParseManifest(raw)
	if err != nil || m.ID() != id {
		return peer.Held{}, false
	}
	if fi, err := os.Stat(img); err != nil || fi.Size() != m.ImageSize {
		return peer.Held{}, false
	}
	return peer.Held{Image: img, Manifest: m, Raw: raw}, true
}

// authorize checks a host's certificate against the key that signed the
// group's fleet pointer, and its proof.
func (s *server) authorize(cert, msg, sig []byte) error {
	rec, err := ReadPointer(s.o.PointerFile)
	if err != nil || rec == nil {
		return errors.New("no fleet pointer recorded")
	}
	p, err := control.ParsePointer(rec.Pointer)
	if err != nil {
		return err
	}
	return peer.CheckProof([]ed25519.PublicKey{p.PublicKey}, s.o.Group.String())(cert, msg, sig)
}

// cert returns the certificate the sender issued to host.
func (s *server) cert(host string) []byte {
	b, err := os.ReadFile(s.o.CertFile)
	if err != nil {
		return nil
	}
	var all map[string][]byte
	if json.Unmarshal(b, &all) != nil {
		return nil
	}
	return all[host]
}

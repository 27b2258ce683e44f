// Package peer lets agents of a group take a release from each other: an
// agent serves the chunks of its kept, verified images over TCP, and an
// agent that missed a deploy fetches what it lacks from several peers at
// once, checking every chunk against the release's signed manifest.
//
// The protocol is request/response on one connection, as many requests as
// the client likes, after the server's challenge (auth.go):
//
//	request  "LCPR" | version u8 (2) | op u8 | name (u8 length, bytes):
//	         the release (its id's 16 lowercase hex digits; anything else
//	         ends the connection), or for ops 3 and 4 the host
//	         op 2: first chunk u32 | chunk count u32 | base release name
//	         (u8 length, bytes; empty: none)
//	         op 4 (AUTH): certificate length u16 | certificate | signature [64]
//	response status u8 (0 ok, 1 not held, 2 bad request, 3 denied)
//	         op 3 (CERT), ok: length u16 | the host's certificate
//	         op 4 (AUTH): the status alone
//	         op 1 (MANIFEST), ok: length u32 | the signed manifest
//	         op 2 (CHUNKS), ok: for every chunk of the range that is not
//	         all-zero, in order: kind u8, then kind 0 (raw): the chunk's
//	         bytes (its length follows from the manifest); kind 1 (delta):
//	         length u32 | a delta frame of the chunk against the base
//	         release's chunk at the same index (image.DeltaEncoder: the
//	         4 KiB blocks that differ, compressed)
//
// The client names as base a release it holds (its current one): images
// built on a base keep their layout, so a hotfix's changed chunks cost
// their deltas, as over multicast, not whole chunks. The server sends a
// delta only when it serves the base too and the delta is smaller.
//
// A peer serves only what it holds verified, and never a sealed release (its
// chunks are for the hosts the sender chose). Nothing a peer says is
// trusted: the manifest must be signed by a trusted key and have the digest
// the signed fleet pointer names, and each chunk must hash to its entry.
package peer

import (
	"bufio"
	"cmp"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
)

var magic = [4]byte{'L', 'C', 'P', 'R'}

const (
	version    = 2 // 2: delta frames are image's block deltas
	opManifest = 1
	opChunks   = 2
	opCert     = 3 // a host's certificate, by host id (before authentication)
	opAuth     = 4 // a certificate and the proof of its key

	statusOK      = 0
	statusNotHeld = 1
	statusBad     = 2
	statusDenied  = 3 // not authenticated, or the certificate or proof is refused

	kindRaw   = 0
	kindDelta = 1
)

// Limits of the server and the client.
const (
	// MaxConns bounds a server's connections, MaxConnsPerAddr those from one
	// address: a host catching up uses a few peers, never many connections
	// to one.
	MaxConns        = 32
	MaxConnsPerAddr = 4
	// MaxRange is the most chunks one request may ask for (64 MiB of
	// 256 KiB chunks); the client asks for RangeChunks.
	MaxRange    = 256
	RangeChunks = 64
	// MaxManifest bounds a manifest read from a peer: 1 GiB in 64 KiB
	// chunks is 16,384 entries of 33 bytes.
	MaxManifest = 64 << 20
	// IdleTimeout drops a connection that sends no request this long; the
	// per-request deadline bounds a slow peer.
	IdleTimeout    = 30 * time.Second
	RequestTimeout = 60 * time.Second
	// MaxConnLife ends a connection however busy: a fetch opens new ones,
	// a client cannot hold one of the few for good.
	MaxConnLife = 10 * time.Minute
	// Peers is how many peers a fetch uses at once.
	Peers = 4
)

// Held is a release a server can serve: its verified image and manifest.
type Held struct {
	Image    string
	Manifest *image.Manifest
	Raw      []byte // the manifest's encoding
}

// Server serves held releases to other agents.
type Server struct {
	// Source returns the release's image and manifest when this agent
	// serves it (held, verified, not sealed).
	Source func(release image.ID) (Held, bool)
	// Authorize, when set, must accept a client's certificate and its
	// signature over msg (CheckProof) before anything but certificates is
	// served; nil serves anyone.
	Authorize func(cert, msg, sig []byte) error
	// Certs returns the certificate the server keeps for a host, nil if
	// none: a host that lost its own asks for it.
	Certs  func(host string) []byte
	Logger *slog.Logger

	mu     sync.Mutex
	conns  int
	byAddr map[string]int
	// Served counts the chunk bytes sent, for metrics and tests.
	served int64
}

// Served returns the chunk bytes this server has sent.
func (s *Server) Served() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.served
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Serve accepts connections on ln until ctx ends.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// out of file descriptors, say: wait, as net/http does, rather
			// than stop serving for good
			s.log().Warn("peer: accept failed; retrying", "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(time.Second):
			}
			continue
		}
		addr := hostOf(c.RemoteAddr())
		if !s.admit(addr) {
			s.log().Debug("peer: connection refused: too many", "from", c.RemoteAddr().String())
			c.Close()
			continue
		}
		go func() {
			defer s.release(addr)
			defer c.Close()
			if err := s.serveConn(ctx, c); err != nil && !errors.Is(err, io.EOF) && ctx.Err() == nil {
				s.log().Debug("peer: connection ended", "from", c.RemoteAddr().String(), "err", err)
			}
		}()
	}
}

func hostOf(a net.Addr) string {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.IP.String()
	}
	return a.String()
}

func (s *Server) admit(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byAddr == nil {
		s.byAddr = map[string]int{}
	}
	if s.conns >= MaxConns || s.byAddr[addr] >= MaxConnsPerAddr {
		return false
	}
	s.conns++
	s.byAddr[addr]++
	return true
}

func (s *Server) release(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.conns--
	if s.byAddr[addr]--; s.byAddr[addr] <= 0 {
		delete(s.byAddr, addr)
	}
}

// serveConn answers one connection's requests.
func (s *Server) serveConn(ctx context.Context, c net.Conn) error {
	r := bufio.NewReader(c)
	w := bufio.NewWriterSize(c, 256<<10)
	var files = map[image.ID]*os.File{}
	var buf, dict []byte
	de := image.NewFastDeltaEncoder()
	defer de.Close()
	defer func() {
		for _, f := range files {
			f.Close()
		}
	}()
	challenge, err := s.hello(c, w)
	if err != nil {
		return err
	}
	authed := s.Authorize == nil
	opened := time.Now()
	for ctx.Err() == nil {
		if time.Since(opened) > MaxConnLife {
			return errors.New("peer: connection open too long")
		}
		c.SetReadDeadline(time.Now().Add(IdleTimeout))
		q, err := readRequest(r)
		if err != nil {
			return err
		}
		op, id, first, count, baseID := q.op, q.release, q.first, q.count, q.base
		c.SetDeadline(time.Now().Add(RequestTimeout))
		switch {
		case op == opCert:
			if err := s.answerCert(w, q.name); err != nil {
				return err
			}
			continue
		case op == opAuth:
			if err := s.authenticate(w, q, challenge); err != nil {
				return err
			}
			authed = true
			continue
		case !authed:
			w.WriteByte(statusDenied)
			w.Flush()
			return errors.New("peer: a request before authentication")
		}
		h, ok := s.Source(id)
		if !ok {
			w.WriteByte(statusNotHeld)
			if err := w.Flush(); err != nil {
				return err
			}
			continue
		}
		switch op {
		case opManifest:
			w.WriteByte(statusOK)
			binary.Write(w, binary.BigEndian, uint32(len(h.Raw)))
			w.Write(h.Raw)
		case opChunks:
			m := h.Manifest
			if count == 0 || count > MaxRange || uint64(first)+uint64(count) > uint64(len(m.Chunks)) {
				w.WriteByte(statusBad)
				w.Flush()
				return fmt.Errorf("peer: bad range %d+%d of %d chunks", first, count, len(m.Chunks))
			}
			if len(buf) < int(m.ChunkSize) {
				buf, dict = make([]byte, m.ChunkSize), make([]byte, m.ChunkSize)
			}
			f := files[id]
			if f == nil {
				if f, err = os.Open(h.Image); err != nil {
					w.WriteByte(statusNotHeld)
					w.Flush()
					return err
				}
				files[id] = f
			}
			base := s.openBase(files, baseID, id)
			w.WriteByte(statusOK)
			var n int64
			for i := int(first); i < int(first+count); i++ {
				if m.Chunks[i].Zero {
					continue
				}
				off, l := m.ChunkRange(i)
				if base != nil {
					if d := delta(de, f, base, m, i, buf, dict); d != nil {
						w.WriteByte(kindDelta)
						binary.Write(w, binary.BigEndian, uint32(len(d)))
						w.Write(d)
						n += int64(5 + len(d))
						continue
					}
				}
				w.WriteByte(kindRaw)
				if _, err := io.Copy(w, io.NewSectionReader(f, off, int64(l))); err != nil {
					return err
				}
				n += int64(1 + l)
			}
			s.mu.Lock()
			s.served += n
			s.mu.Unlock()
		}
		if err := w.Flush(); err != nil {
			return err
		}
		// files are held only while a request runs: a client keeping its
		// connection open must not keep a retired release's blocks
		for id, f := range files {
			f.Close()
			delete(files, id)
		}
	}
	return ctx.Err()
}

// request is one parsed request.
type request struct {
	op           byte
	name         string   // opCert, opAuth: the host
	release      image.ID // opManifest, opChunks
	first, count uint32
	base         image.ID // opChunks; zero: none
	cert, sig    []byte   // opAuth
}

func readRequest(r *bufio.Reader) (q request, err error) {
	var hdr [7]byte
	if _, err = io.ReadFull(r, hdr[:]); err != nil {
		return
	}
	if [4]byte(hdr[:4]) != magic || hdr[4] != version {
		return q, fmt.Errorf("peer: not a version %d request", version)
	}
	q.op = hdr[5]
	name := make([]byte, hdr[6])
	if _, err = io.ReadFull(r, name); err != nil {
		return
	}
	q.name = string(name)
	switch q.op {
	case opCert:
	case opManifest:
		q.release, err = parseRelease("release", q.name)
	case opChunks:
		if q.release, err = parseRelease("release", q.name); err != nil {
			return
		}
		var rg [8]byte
		if _, err = io.ReadFull(r, rg[:]); err != nil {
			return
		}
		q.first, q.count = binary.BigEndian.Uint32(rg[:]), binary.BigEndian.Uint32(rg[4:])
		var n byte
		if n, err = r.ReadByte(); err != nil {
			return
		}
		b := make([]byte, n)
		if _, err = io.ReadFull(r, b); err != nil || n == 0 {
			return
		}
		q.base, err = parseRelease("base release", string(b))
	case opAuth:
		var l uint16
		if err = binary.Read(r, binary.BigEndian, &l); err != nil {
			return
		}
		if l > maxCert {
			return q, fmt.Errorf("peer: certificate of %d bytes", l)
		}
		q.cert, q.sig = make([]byte, l), make([]byte, ed25519.SignatureSize)
		if _, err = io.ReadFull(r, q.cert); err == nil {
			_, err = io.ReadFull(r, q.sig)
		}
	default:
		err = fmt.Errorf("peer: unknown op %d", q.op)
	}
	return
}

// parseRelease reads a release id a request names (what names the field).
func parseRelease(what, s string) (image.ID, error) {
	id, err := image.ParseRelease(s)
	if err != nil {
		return image.ID{}, fmt.Errorf("peer: request: %s: %w", what, err)
	}
	return id, nil
}

// appendRequest appends a request naming name (a release's id in its 16
// digits, or a host) and, for opChunks, the range and base (the zero id:
// the empty name, none).
func appendRequest(b []byte, op byte, name string, first, count uint32, base image.ID) []byte {
	b = append(b, magic[:]...)
	b = append(b, version, op, byte(len(name)))
	b = append(b, name...)
	if op == opChunks {
		b = binary.BigEndian.AppendUint32(b, first)
		b = binary.BigEndian.AppendUint32(b, count)
		if base.IsZero() {
			return append(b, 0)
		}
		b = append(append(b, byte(2*len(base))), base.String()...)
	}
	return b
}

// baseImage is a base release's image and manifest, open for deltas.
type baseImage struct {
	f *os.File
	m *image.Manifest
}

// openBase opens the base release for deltas of release id's chunks, when
// this server serves it and it has the same chunk size; nil otherwise.
func (s *Server) openBase(files map[image.ID]*os.File, baseID, id image.ID) *baseImage {
	if baseID.IsZero() || baseID == id {
		return nil
	}
	h, ok := s.Source(baseID)
	if !ok {
		return nil
	}
	f := files[baseID]
	if f == nil {
		var err error
		if f, err = os.Open(h.Image); err != nil {
			return nil
		}
		files[baseID] = f
	}
	return &baseImage{f: f, m: h.Manifest}
}

// delta returns chunk i of the image f (described by m) as a delta
// against the base's chunk i, or nil when the base has no such chunk, the
// chunk sizes differ or the delta saves less than an eighth.
func delta(de *image.DeltaEncoder, f *os.File, base *baseImage, m *image.Manifest, i int, buf, dict []byte) []byte {
	if base.m.ChunkSize != m.ChunkSize || i >= len(base.m.Chunks) || base.m.Chunks[i].Zero {
		return nil
	}
	off, n := m.ChunkRange(i)
	boff, bn := base.m.ChunkRange(i)
	if _, err := f.ReadAt(buf[:n], off); err != nil {
		return nil
	}
	if _, err := base.f.ReadAt(dict[:bn], boff); err != nil {
		return nil
	}
	d, err := de.Encode(nil, buf[:n], dict[:bn], m.ChunkSize)
	if err != nil || len(d) == 0 || len(d) > n-n/8 {
		return nil
	}
	return d
}

// FetchOptions configures Fetch.
type FetchOptions struct {
	Release image.ID
	// Digest is the manifest digest the signed fleet pointer names; when
	// zero (a rollback's pointer), any manifest of Release signed by a
	// trusted key is taken (the id is a digest of the manifest's body).
	Digest  [sha256.Size]byte
	Trusted []ed25519.PublicKey
	Peers   []string // ADDR:PORT of peers that say they serve the release
	Out     string   // where the image is written
	// Local, when set, finds a chunk this host already holds (a kept image
	// and offset, vouched for by its verified manifest): it is copied
	// (reflinked where the filesystem can), not fetched.
	Local multicast.LocalFunc
	Dial  func(ctx context.Context, addr string) (net.Conn, error)
	// Logger hears, at Info, each peer that fails and is left for
	// another. Nil discards.
	Logger *slog.Logger
	// Base, when not zero, is a release this host holds, at BaseImage:
	// peers that hold it too send changed chunks as deltas against it.
	Base      image.ID
	BaseImage string
	// Range is the chunks asked for per request; RangeChunks when zero.
	Range int
	// Auth, when set, authenticates this host to each peer.
	Auth *Auth
	// Room, when set, is asked, once the manifest is verified and before
	// anything is written, whether the image's size fits the disk.
	Room func(size int64) error
}

// Stats says where a fetched image's bytes came from.
type Stats struct {
	FromPeers map[string]int64 // chunk bytes by peer
	Local     int64            // chunk bytes copied from kept images
	Chunks    int
}

// PeerBytes is the sum of FromPeers.
func (s *Stats) PeerBytes() int64 {
	var n int64
	for _, b := range s.FromPeers {
		n += b
	}
	return n
}

// Fetch writes the release's image to o.Out from the peers, verified
// chunk by chunk against the signed manifest, and returns that manifest.
// Chunks are fetched from up to Peers peers at once, each taking the next
// range of chunks as it finishes one, so faster peers carry more; a peer
// that fails or sends a bad chunk is dropped and its range goes to another.
// On error o.Out is removed.
func Fetch(ctx context.Context, o FetchOptions) (m *image.Manifest, st Stats, err error) {
	if len(o.Peers) == 0 {
		return nil, st, errors.New("peer: no peer serves " + o.Release.String())
	}
	if o.Dial == nil {
		d := &net.Dialer{Timeout: 5 * time.Second}
		o.Dial = func(ctx context.Context, addr string) (net.Conn, error) { return d.DialContext(ctx, "tcp", addr) }
	}
	log := cmp.Or(o.Logger, slog.New(slog.DiscardHandler))
	peers := append([]string(nil), o.Peers...)
	rand.Shuffle(len(peers), func(i, j int) { peers[i], peers[j] = peers[j], peers[i] })
	m, err = fetchManifest(ctx, o, peers, log)
	if err != nil {
		return nil, st, err
	}
	if o.Room != nil {
		if err := o.Room(m.ImageSize); err != nil {
			return nil, st, err
		}
	}
	f, err := os.OpenFile(o.Out, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, st, fmt.Errorf("peer: %w", err)
	}
	defer func() {
		if cerr := f.Close(); err == nil && cerr != nil {
			err = fmt.Errorf("peer: %w", cerr)
		}
		if err != nil {
			os.Remove(o.Out)
		}
	}()
	if err = f.Truncate(m.ImageSize); err != nil {
		return nil, st, fmt.Errorf("peer: %w", err)
	}
	st = Stats{FromPeers: map[string]int64{}, Chunks: len(m.Chunks)}
	need, local, err := fillLocal(ctx, f, m, o.Local, log)
	st.Local = local
	if err != nil {
		return nil, st, err
	}
	if err = fetchRanges(ctx, o, f, m, peers, ranges(need, cmp.Or(o.Range, RangeChunks)), &st, log); err != nil {
		return nil, st, err
	}
	if err = ctx.Err(); err != nil {
		return nil, st, err
	}
	if err = f.Sync(); err != nil {
		return nil, st, fmt.Errorf("peer: %w", err)
	}
	return m, st, nil
}

// fetchManifest takes the manifest from the first peer that has a good one.
func fetchManifest(ctx context.Context, o FetchOptions, peers []string, log *slog.Logger) (*image.Manifest, error) {
	var errs []error
	for _, p := range peers {
		m, err := manifestFrom(ctx, o, p)
		if err == nil {
			return m, nil
		}
		log.Info("peer: no manifest from a peer", "release", o.Release, "peer", p, "err", err)
		errs = append(errs, fmt.Errorf("%s: %w", p, err))
	}
	return nil, fmt.Errorf("peer: no peer gave the manifest of %s: %w", o.Release, errors.Join(errs...))
}

func manifestFrom(ctx context.Context, o FetchOptions, addr string) (*image.Manifest, error) {
	c, r, err := open(ctx, o, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(RequestTimeout))
	if _, err := c.Write(appendRequest(nil, opManifest, o.Release.String(), 0, 0, image.ID{})); err != nil {
		return nil, err
	}
	if err := readStatus(r); err != nil {
		return nil, err
	}
	var n uint32
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if n > MaxManifest {
		return nil, fmt.Errorf("manifest of %d bytes, more than %d", n, MaxManifest)
	}
	raw := make([]byte, n)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, err
	}
	if o.Digest != ([sha256.Size]byte{}) && sha256.Sum256(raw) != o.Digest {
		return nil, errors.New("manifest digest is not the fleet pointer's")
	}
	m, err := image.ParseManifest(raw)
	if err != nil {
		return nil, err
	}
	if err := m.Verify(o.Trusted); err != nil {
		return nil, err
	}
	if id := m.ID(); id != o.Release {
		return nil, fmt.Errorf("manifest of release %s, not %s", id, o.Release)
	}
	return m, nil
}

func readStatus(r *bufio.Reader) error {
	s, err := r.ReadByte()
	if err != nil {
		return err
	}
	switch s {
	case statusOK:
		return nil
	case statusNotHeld:
		return errNotHeld
	case statusDenied:
		return errDenied
	}
	return fmt.Errorf("peer answered status %d", s)
}

var (
	errNotHeld = errors.New("does not serve the release")
	errDenied  = errors.New("refused this host: no valid certificate (a deploy issues one to every host whose key the sender pins)")
)

// fillLocal copies the chunks this host holds into f (reflinked or
// copied in the kernel, trusted as the kept images' verified manifests
// vouch for them, as the multicast receiver does) and returns which
// chunks are still needed (not zero, not held) and the bytes copied.
func fillLocal(ctx context.Context, f *os.File, m *image.Manifest, local multicast.LocalFunc, log *slog.Logger) ([]bool, int64, error) {
	need := make([]bool, len(m.Chunks))
	for i, c := range m.Chunks {
		need[i] = !c.Zero
	}
	if local == nil {
		return need, 0, nil
	}
	var copied int64
	_, err := multicast.FillLocal(ctx, f, m, func(i int) bool { return need[i] }, local, func(i int) {
		need[i] = false
		_, n := m.ChunkRange(i)
		copied += int64(n)
	}, log)
	if err != nil {
		return nil, copied, err
	}
	return need, copied, nil
}

type chunkRange struct{ first, count uint32 }

// ranges groups the needed chunks into runs of at most per.
func ranges(need []bool, per int) []chunkRange {
	per = min(per, MaxRange)
	var out []chunkRange
	for i := 0; i < len(need); {
		if !need[i] {
			i++
			continue
		}
		j := i
		for j < len(need) && need[j] && j-i < per {
			j++
		}
		out = append(out, chunkRange{uint32(i), uint32(j - i)})
		i = j
	}
	return out
}

// fetchRanges has up to Peers workers, one peer each, take ranges off a
// shared queue until it is empty.
func fetchRanges(ctx context.Context, o FetchOptions, f *os.File, m *image.Manifest, peers []string, todo []chunkRange, st *Stats, log *slog.Logger) error {
	if len(todo) == 0 {
		return nil
	}
	var (
		mu      sync.Mutex
		queue   = todo
		busy    = 0 // ranges taken and not yet done
		errs    []error
		next    = 0 // the next peer not yet used
		changed = sync.NewCond(&mu)
	)
	// take returns the next range, waiting while others are in flight
	// (their range may come back); ok is false when all is done.
	take := func() (chunkRange, bool) {
		mu.Lock()
		defer mu.Unlock()
		for len(queue) == 0 && busy > 0 {
			changed.Wait()
		}
		if len(queue) == 0 {
			return chunkRange{}, false
		}
		r := queue[0]
		queue = queue[1:]
		busy++
		return r, true
	}
	finish := func(r chunkRange, ok bool, peer string, n int64) {
		mu.Lock()
		defer mu.Unlock()
		busy--
		if ok {
			st.FromPeers[peer] += n
		} else {
			queue = append(queue, r)
		}
		changed.Broadcast()
	}
	nextPeer := func() (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		if next >= len(peers) {
			return "", false
		}
		next++
		return peers[next-1], true
	}
	var wg sync.WaitGroup
	var worker func()
	worker = func() {
		defer wg.Done()
		for {
			p, ok := nextPeer()
			if !ok {
				return
			}
			err := fetchFrom(ctx, o, f, m, p, take, finish)
			if err == nil {
				return
			}
			log.Info("peer: a peer failed: trying another", "peer", p, "err", err)
			mu.Lock()
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
			mu.Unlock()
			if ctx.Err() != nil {
				return
			}
		}
	}
	for range min(Peers, len(peers)) {
		wg.Add(1)
		go worker()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if len(queue) > 0 || busy > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		return fmt.Errorf("peer: %d chunk ranges of %s left and no peer to take them from: %w", len(queue), o.Release, errors.Join(errs...))
	}
	return nil
}

// fetchFrom takes ranges and fetches them from peer p on one connection.
func fetchFrom(ctx context.Context, o FetchOptions, f *os.File, m *image.Manifest, p string,
	take func() (chunkRange, bool), finish func(chunkRange, bool, string, int64)) error {
	c, r, err := open(ctx, o, p)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	d := &decoder{chunkSize: m.ChunkSize, buf: make([]byte, m.ChunkSize), comp: make([]byte, 0, m.ChunkSize)}
	if !o.Base.IsZero() {
		if bf, err := os.Open(o.BaseImage); err == nil {
			defer bf.Close()
			if d.dd, err = image.NewDeltaDecoder(m.ChunkSize); err != nil {
				return err
			}
			defer d.dd.Close()
			d.base, d.dict = bf, make([]byte, m.ChunkSize)
		}
	}
	base := o.Base
	if d.base == nil {
		base = image.ID{}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		rg, ok := take()
		if !ok {
			return nil
		}
		n, err := fetchRange(c, r, f, m, o.Release, base, rg, d)
		finish(rg, err == nil, p, n)
		if err != nil {
			return err
		}
	}
}

// decoder reads a range's chunk frames.
type decoder struct {
	chunkSize uint32
	buf, comp []byte
	base      *os.File // the base image, when the request named one
	dict      []byte
	dd        *image.DeltaDecoder // with base
}

// fetchRange asks p for a range and writes its chunks, each checked; it
// returns the bytes that crossed the wire.
func fetchRange(c net.Conn, r *bufio.Reader, f *os.File, m *image.Manifest, id, base image.ID, rg chunkRange, d *decoder) (int64, error) {
	c.SetDeadline(time.Now().Add(RequestTimeout))
	if _, err := c.Write(appendRequest(nil, opChunks, id.String(), rg.first, rg.count, base)); err != nil {
		return 0, err
	}
	if err := readStatus(r); err != nil {
		return 0, err
	}
	var got int64
	for i := int(rg.first); i < int(rg.first+rg.count); i++ {
		if m.Chunks[i].Zero {
			continue
		}
		off, n := m.ChunkRange(i)
		data, wire, err := d.read(r, i, n)
		if err != nil {
			return 0, fmt.Errorf("chunk %d: %w", i, err)
		}
		if err := m.VerifyChunk(i, data); err != nil {
			return 0, err
		}
		if _, err := f.WriteAt(data, off); err != nil {
			return 0, err
		}
		got += wire
	}
	return got, nil
}

// read reads chunk i's frame (n bytes decoded) and decodes it.
func (d *decoder) read(r *bufio.Reader, i, n int) ([]byte, int64, error) {
	kind, err := r.ReadByte()
	if err != nil {
		return nil, 0, err
	}
	switch kind {
	case kindRaw:
		_, err := io.ReadFull(r, d.buf[:n])
		return d.buf[:n], int64(1 + n), err
	case kindDelta:
		if d.base == nil {
			return nil, 0, errors.New("a delta, but no base was named")
		}
		var l uint32
		if err := binary.Read(r, binary.BigEndian, &l); err != nil {
			return nil, 0, err
		}
		if l > d.chunkSize {
			return nil, 0, fmt.Errorf("delta of %d bytes, more than a chunk", l)
		}
		d.comp = d.comp[:l]
		if _, err := io.ReadFull(r, d.comp); err != nil {
			return nil, 0, err
		}
		boff := int64(i) * int64(d.chunkSize)
		bn, err := d.base.ReadAt(d.dict[:d.chunkSize], boff)
		if bn == 0 {
			return nil, 0, fmt.Errorf("base has no chunk %d: %v", i, err)
		}
		out, err := d.dd.Decode(d.comp, d.dict[:bn], d.buf[:0])
		if err != nil {
			return nil, 0, err
		}
		return out, int64(5 + l), nil
	}
	return nil, 0, fmt.Errorf("unknown chunk frame kind %d", kind)
}

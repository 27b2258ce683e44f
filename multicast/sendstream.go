package multicast

import (
	"fmt"
	"net"
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// The sender's side of the unicast path (stream.go): unicast ANNOUNCEs to
// hosts that have not registered, and each stream host's own pushes and
// STATUS rounds.

// encodeUnicast frames a message for one host (sequence 0: it is not the
// sender's multicast, and receivers count no loss by it), signed as
// encode signs it.
func (s *sender) encodeUnicast(m wire.Message) []byte {
	h := wire.Header{Session: s.opts.Session}
	var b []byte
	var err error
	switch m := m.(type) {
	case *wire.Announce:
		m.SignedAt = time.Now().UnixMilli()
		b, err = appendSigned(nil, h, m, s.opts.Key)
	case *wire.Status, *wire.Abort:
		b, err = appendSigned(nil, h, m, s.sessKey)
	default:
		b, err = wire.AppendPacket(nil, h, m)
	}
	if err != nil {
		panic(fmt.Sprintf("multicast: encode %v: %v", m.Type(), err)) // our own message: a bug
	}
	return b
}

// unicastAnnounce sends, every unicastEvery, one ANNOUNCE by unicast to
// every listed host due one (announceDue) whose address is known: a host
// that hears no multicast learns of the session, and of the fetch port,
// this way; so does a relay, at once.
func (s *sender) unicastAnnounce(now time.Time) {
	if s.uni == nil || len(s.opts.HostAddrs) == 0 || now.Before(s.uniAnnounce) {
		return
	}
	s.uniAnnounce = now.Add(unicastEvery)
	var b []byte
	for _, id := range s.opts.Hosts {
		// a host dropped (its connection broke, or it went silent) is
		// announced to again: it may still take the session
		h, addr := s.hosts.get(id), s.opts.HostAddrs[id]
		if addr == nil || h == nil || !s.announceDue(h, now) {
			continue
		}
		if b == nil {
			a := s.ann
			b = s.encodeUnicast(&a)
		}
		if _, err := s.conn.WriteTo(b, addr); err == nil {
			s.stats.Packets++
			s.stats.Bytes += int64(len(b))
		}
		if h.via != nil {
			h.viaTold = now
		}
		if !h.uniTold {
			h.uniTold = true
			s.log.Debug("multicast: host not registered by multicast: announcing by unicast", "host", id, "addr", addr, "fetch_port", s.ann.FetchPort)
		}
	}
}

// sendTo sends a unicast packet to a host's address: its stream, or UDP.
func (s *sender) sendTo(b []byte, addr net.Addr) error {
	if sa, ok := addr.(*streamAddr); ok {
		st := s.uni.live[sa]
		if st == nil || !st.send(b) {
			return net.ErrClosed
		}
		return nil
	}
	_, err := s.conn.WriteTo(b, addr)
	return err
}

// streamOpened greets a new connection with the session's ANNOUNCE.
func (s *sender) streamOpened(st *stream) {
	s.uni.live[st.addr] = st
	a := s.ann
	st.send(s.encodeUnicast(&a))
}

// streamGone drops the host of a closed connection unless it completed.
func (s *sender) streamGone(st *stream) {
	delete(s.uni.live, st.addr)
	h := st.host
	if h == nil || h.stream != st {
		return
	}
	h.stream, h.streamBytes = nil, h.streamBytes+st.bytes.Load()
	if h.active() {
		h.dropped, h.brokeAt = fmt.Sprintf("its unicast connection from %v closed before it completed", st.addr), time.Now()
		s.log.Warn("multicast: dropping host", "host", h.id, "reason", h.dropped)
	}
}

// streamManifest sends the session descriptor over a stream, ANNOUNCE
// first.
func (s *sender) streamManifest(st *stream) {
	if st.manQueued.Load() {
		return // the host asks again while its copy is on the way
	}
	a := s.ann
	frames := [][]byte{s.encodeUnicast(&a)}
	for off := 0; off < len(s.manifest); off += s.opts.SymbolSize {
		end := min(len(s.manifest), off+s.opts.SymbolSize)
		frames = append(frames, s.encodeUnicast(&wire.ManifestFrag{Offset: uint32(off), Total: uint32(len(s.manifest)), Data: s.manifest[off:end]}))
	}
	// through the push queue, not the control queue: a large manifest
	// outgrows that, and the writer takes every frame in turn, at the
	// pace of the host's TCP window
	select {
	case st.push <- pushJob{frames: frames}:
		st.manQueued.Store(true)
	default: // its writer is far behind: the host asks again
	}
}

// streamRegistered binds a registered host to its stream and, once the
// transfer has begun, pushes what it lacks.
func (s *sender) streamRegistered(h *host, st *stream) {
	if h.stream != nil && h.stream != st {
		h.streamBytes += h.stream.bytes.Load()
		h.stream.close()
	}
	if h.stream == st {
		return // a REGISTER again on the same stream: its pushes are under way, STATUS rounds fill what is lost
	}
	s.log.Debug("multicast: host takes the unicast path", "host", h.id, "addr", st.addr)
	h.stream, h.everStream, st.host = st, true, h
	st.hello.Store(true)
	if s.phase != phaseRegister {
		s.pushLacking(h)
	}
}

// pushLacking hands a stream host's writer every non-zero chunk its
// REGISTER did not list, as deltas when it holds the base.
func (s *sender) pushLacking(h *host) {
	m := s.opts.Manifest
	var held chunkSet = make(chunkSet, (len(m.Chunks)+63)/64)
	for _, rg := range h.have {
		held.addRange(rg.First, min(rg.First+rg.Count, uint32(len(m.Chunks))))
	}
	var chunks []uint32
	for i, c := range m.Chunks {
		if !c.Zero && !held.has(uint32(i)) {
			chunks = append(chunks, uint32(i))
		}
	}
	s.streamPush(h.stream, chunks, h.hasBase && !s.opts.BaseID.IsZero())
	s.log.Debug("multicast: pushing over the unicast path", "host", h.id, "chunks", len(chunks))
}

func (s *sender) streamPush(st *stream, chunks []uint32, delta bool) {
	if len(chunks) == 0 {
		return
	}
	st.queued.Add(int64(len(chunks)))
	select {
	case st.push <- pushJob{chunks: chunks, delta: delta}:
	default: // its writer is far behind: the next STATUS asks again
		st.queued.Add(-int64(len(chunks)))
	}
}

// stepStreams asks each stream host whose pushes are all written for its
// STATUS, and drops one that leaves it unanswered for HostTimeout.
func (s *sender) stepStreams(now time.Time) {
	if s.uni == nil || s.phase == phaseRegister {
		return
	}
	for _, st := range s.uni.live {
		h := st.host
		if h == nil || h.stream != st || !h.active() {
			continue
		}
		if !st.statusAt.IsZero() && now.Sub(st.statusAt) > s.opts.HostTimeout {
			h.dropped = fmt.Sprintf("silent for %v on its unicast connection (no answer to status requests)", now.Sub(st.statusAt).Round(time.Millisecond))
			s.log.Warn("multicast: dropping host", "host", h.id, "reason", h.dropped)
			st.close()
			continue
		}
		if st.queued.Load() > 0 || now.Before(st.nextStatus) || st.parts != nil && now.Sub(st.roundAt) < streamRoundWait {
			continue // pushes under way, or a round whose answer may still come (a far host)
		}
		st.round++
		st.roundAt = now
		st.parts, st.asked = map[uint8]bool{}, make(chunkSet, (len(s.opts.Manifest.Chunks)+63)/64)
		if st.statusAt.IsZero() {
			st.statusAt = now
		}
		st.nextStatus = now.Add(streamStatusEvery)
		st.send(s.encodeUnicast(&wire.Status{Round: st.round}))
	}
}

// streamNack takes a stream host's answer: once all its parts are in,
// every chunk it still lacks is pushed again, plain (it failed its check,
// or its delta could not be used).
func (s *sender) streamNack(h *host, m *wire.Nack) {
	st := h.stream
	st.statusAt = time.Time{} // any answer, late too, shows it alive
	if m.Round&probeRound != 0 || m.Round != st.round || st.parts == nil || st.parts[m.Part] {
		return
	}
	st.parts[m.Part] = true
	n := uint32(len(s.opts.Manifest.Chunks))
	for _, rg := range m.Chunks {
		st.asked.addRange(min(rg.First, n), min(rg.First+min(rg.Count, n), n))
	}
	for _, b := range m.Blocks {
		if b.Chunk < n {
			st.asked.addRange(b.Chunk, b.Chunk+1)
		}
	}
	if len(st.parts) < int(m.Parts) {
		return
	}
	var again []uint32
	for i := range n {
		if st.asked.has(i) && !s.opts.Manifest.Chunks[i].Zero {
			again = append(again, i)
		}
	}
	st.parts = nil
	if len(again) > 0 {
		s.log.Debug("multicast: pushing again, plain, over the unicast path", "host", h.id, "chunks", len(again), "list", again, "queued", st.queued.Load())
		s.streamPush(st, again, false)
	}
}

// abortStreams tells every stream host still receiving that the session
// is over.
func (s *sender) abortStreams(b []byte) {
	if s.uni == nil {
		return
	}
	for _, st := range s.uni.live {
		st.send(b)
	}
}

// UnicastAddrs turns hosts' known IPs into their addresses at the data
// port, for [SendOptions].HostAddrs; entries that are not IPs are left
// out.
func UnicastAddrs(ips map[string]string, port int) map[string]net.Addr {
	m := map[string]net.Addr{}
	for id, ip := range ips {
		if a := net.ParseIP(ip); a != nil {
			m[id] = &net.UDPAddr{IP: a, Port: port}
		}
	}
	return m
}

// fetchPort is the listener's TCP port, for the ANNOUNCE.
func fetchPort(o *SendOptions) uint16 {
	if o.Unicast == nil {
		return 0
	}
	if a, ok := o.Unicast.Addr().(*net.TCPAddr); ok {
		return uint16(a.Port)
	}
	return 0
}

// streamSourceOf is what every stream writer reads chunks with.
func (s *sender) streamSourceOf() streamSource {
	return streamSource{pack: s.opts.Pack, m: s.opts.Manifest, cipher: s.src.cipher, release: s.ann.ReleaseID,
		session: s.opts.Session, symSize: s.opts.SymbolSize, k: s.opts.BlockSymbols}
}

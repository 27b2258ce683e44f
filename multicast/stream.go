package multicast

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// The unicast path. Many networks carry no multicast (cloud VPCs, a
// segment without an IGMP querier, a host whose firewall drops the group),
// so a sender given a listener ([SendOptions].Unicast) offers the same
// session over TCP: its ANNOUNCE names the port, and once registration has
// run for unicastAfter it also sends that ANNOUNCE, unicast, to every
// listed host that has not registered and whose address it knows
// ([SendOptions].HostAddrs). A receiver that gets such an ANNOUNCE for a
// session it hears nothing of by multicast dials the port and runs the
// session over that one connection: the same packets (ANNOUNCE, MANIFEST,
// REGISTER, DATA, STATUS, NACK, COMPLETE), each framed by a u16 length,
// with the same signatures and MACs, verified against the same signed
// manifest, staged the same way. The sender pushes the chunks the host
// lacks as data symbols only (TCP loses nothing, so no parity), as deltas
// when the host holds the base; when its queue for the host is empty it
// asks the host for STATUS over the stream, and re-pushes, plain, any chunk
// the host still asks for (one that failed its check). Such a host decides
// nothing for the multicast group (which chunks every host holds, whether
// all hold the base), is not waited on by the repair rounds, and is
// dropped when its connection closes before it completes.
const (
	// unicastAfter is how long registration runs before unregistered hosts
	// get a unicast ANNOUNCE: a host that hears multicast registers within
	// one or two announce periods.
	unicastAfter = 3 * announceEvery
	// unicastEvery is the period of those unicast ANNOUNCEs.
	unicastEvery = time.Second
	// maxStreams bounds the TCP connections a sender serves at once, and
	// maxStreamsPerIP those from one address (a host that dialed again
	// while its broken connection lingers needs two): no one machine can
	// take them all.
	maxStreams      = 512
	maxStreamsPerIP = 8
	// streamHello is how long a connection may take to send a REGISTER
	// the sender accepts, signed by a host's key (one asking for the
	// manifest counts: the host may then take long to prepare its disk);
	// a stranger's connection is closed after it.
	streamHello = 10 * time.Second
	// streamCtrlQueue bounds the control packets queued for one stream
	// (the loop never blocks on a slow host: beyond it they are dropped,
	// and the host asks again, as over UDP).
	streamCtrlQueue = 256
	// streamStatusEvery is how often a host whose pushes are all written
	// is asked for STATUS over its stream (it is decoding, or lost a chunk
	// to a failed check).
	streamStatusEvery = 200 * time.Millisecond
	// streamRoundWait is how long a stream STATUS round waits for its
	// answer before the next replaces it: longer than any round trip.
	streamRoundWait = 2 * time.Second
	// streamWriteTimeout bounds one write to a host that stopped reading.
	streamWriteTimeout = 30 * time.Second
	// streamBuffer is each stream's write buffer once it carries chunks,
	// streamCtrlBuffer before (every connection has one, a stranger's
	// too).
	streamBuffer     = 256 << 10
	streamCtrlBuffer = 4 << 10
)

// writeFrame writes one packet with its u16 length.
func writeFrame(w io.Writer, b []byte) error {
	var l [2]byte
	binary.BigEndian.PutUint16(l[:], uint16(len(b)))
	if _, err := w.Write(l[:]); err != nil {
		return err
	}
	_, err := w.Write(b)
	return err
}

// readFrame reads one framed packet into buf (at least MaxPacket long).
func readFrame(r io.Reader, buf []byte) (int, error) {
	var l [2]byte
	if _, err := io.ReadFull(r, l[:]); err != nil {
		return 0, err
	}
	n := int(binary.BigEndian.Uint16(l[:]))
	if n == 0 || n > MaxPacket || n > len(buf) {
		return 0, fmt.Errorf("%w: a stream frame of %d bytes (at most %d)", wire.ErrMalformed, n, MaxPacket)
	}
	_, err := io.ReadFull(r, buf[:n])
	return n, err
}

// streamConn is the receiver's end of the unicast path, as a Conn: reads
// return the sender's packets in order (none is dropped: the session
// loop's queue blocks the stream instead), writes go to the sender
// whatever address they name.
type streamConn struct {
	c  net.Conn
	r  *bufio.Reader
	mu sync.Mutex
}

func newStreamConn(c net.Conn) *streamConn {
	return &streamConn{c: c, r: bufio.NewReaderSize(c, 64<<10)}
}

func (s *streamConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, err := readFrame(s.r, p)
	return n, s.c.RemoteAddr(), err
}

func (s *streamConn) WriteTo(p []byte, _ net.Addr) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.c.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if err := writeFrame(s.c, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (s *streamConn) Close() error                      { return s.c.Close() }
func (s *streamConn) SetReadDeadline(t time.Time) error { return s.c.SetReadDeadline(t) }
func (s *streamConn) lossless()                         {}

// losslessConn marks a conn whose packets must all reach the session loop
// (a stream): its reader blocks on a full queue instead of dropping.
type losslessConn interface{ lossless() }

// streamAddr names one accepted connection in the sender's host table.
type streamAddr struct{ remote net.Addr }

func (a *streamAddr) Network() string { return "tcp" }
func (a *streamAddr) String() string  { return a.remote.String() }

// stream is the sender's end of one TCP connection. The session loop owns
// host and nextStatus; the writer goroutine owns the connection's write
// side and the push queue it is handed.
type stream struct {
	addr   *streamAddr
	conn   net.Conn
	ctrl   chan []byte  // loop → writer: control packets, ahead of data
	push   chan pushJob // loop → writer: chunks to send
	queued atomic.Int64 // chunks handed to the writer and not yet written
	bytes  atomic.Int64 // bytes written
	hello  atomic.Bool  // a REGISTER was accepted on it
	// manQueued: the manifest is handed to the writer and not yet all
	// written
	manQueued atomic.Bool
	closed    chan struct{}
	once      sync.Once

	host       *host
	nextStatus time.Time
	statusAt   time.Time // when the pending stream STATUS went out; zero: none
	round      uint32    // the stream's own STATUS round
	roundAt    time.Time // when it went out
	asked      chunkSet  // chunks the pending round's NACK parts asked for
	parts      map[uint8]bool
}

// pushJob is chunks to send over one stream, deltas where delta is set and
// the pack has one.
type pushJob struct {
	chunks []uint32
	delta  bool
	frames [][]byte // or these frames, in order (the manifest)
}

func (st *stream) close() {
	st.once.Do(func() {
		close(st.closed)
		st.conn.Close()
	})
}

// send queues a control packet for the writer, dropping it when the
// stream's queue is full.
func (st *stream) send(b []byte) bool {
	select {
	case st.ctrl <- b:
		return true
	default:
		return false
	}
}

// streams is a sender's unicast path: the listener, its connections, and
// what their writers need to read chunks on their own.
type streams struct {
	ln     net.Listener
	opened chan *stream // accept loop → session loop
	in     chan packet  // readers → session loop
	gone   chan *stream // readers → session loop: the connection ended
	live   map[*streamAddr]*stream
	mu     sync.Mutex
	open   int            // connections open
	perIP  map[string]int // of those, by remote address
	wg     sync.WaitGroup
	src    streamSource
}

// streamSource is what a stream's writer reads and frames chunks with;
// every field is safe for concurrent use.
type streamSource struct {
	pack       ChunkSource
	m          *image.Manifest
	cipher     *contentCipher
	release    image.ID
	session    uint32
	symSize, k int
}

// startStreams serves the listener until ctx ends.
func startStreams(ctx context.Context, ln net.Listener, src streamSource) *streams {
	u := &streams{ln: ln, opened: make(chan *stream), in: make(chan packet, inboxDepth), gone: make(chan *stream, 16),
		live: map[*streamAddr]*stream{}, perIP: map[string]int{}, src: src}
	u.wg.Add(1)
	go u.accept(ctx)
	return u
}

func (u *streams) accept(ctx context.Context) {
	defer u.wg.Done()
	go func() { <-ctx.Done(); u.ln.Close() }()
	for {
		c, err := u.ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(10 * time.Millisecond) // e.g. out of descriptors: do not spin
			continue
		}
		ip := remoteIP(c)
		if !u.take(ip) {
			c.Close()
			continue
		}
		if tc, ok := c.(*net.TCPConn); ok {
			tc.SetNoDelay(false)
			tc.SetKeepAlive(true)
		}
		st := &stream{addr: &streamAddr{remote: c.RemoteAddr()}, conn: c, ctrl: make(chan []byte, streamCtrlQueue),
			push: make(chan pushJob, 64), closed: make(chan struct{})}
		u.wg.Add(2)
		go u.read(ctx, st, ip)
		go u.write(ctx, st)
		select {
		case u.opened <- st:
		case <-ctx.Done():
			st.close()
			return
		}
	}
}

// read feeds the stream's packets to the session loop, blocking (TCP
// pushes back) rather than dropping, and closes a connection that has not
// registered within streamHello.
func (u *streams) read(ctx context.Context, st *stream, ip string) {
	defer u.wg.Done()
	defer u.release(ip)
	hello := time.AfterFunc(streamHello, func() {
		if !st.hello.Load() {
			st.close()
		}
	})
	defer hello.Stop()
	r := bufio.NewReaderSize(st.conn, 16<<10)
	buf := make([]byte, MaxPacket)
	for {
		n, err := readFrame(r, buf)
		if err != nil {
			st.close()
			select {
			case u.gone <- st:
			case <-ctx.Done():
			}
			return
		}
		select {
		case u.in <- packet{b: append([]byte(nil), buf[:n]...), from: st.addr}:
		case <-ctx.Done():
			return
		case <-st.closed:
		}
	}
}

// write owns the connection's write side: control packets first, then the
// pushed chunks, one chunk's data symbols at a time, read from the pack by
// this goroutine (the session loop never waits on a host's TCP window).
func (u *streams) write(ctx context.Context, st *stream) {
	defer u.wg.Done()
	w := bufio.NewWriterSize(st.conn, streamCtrlBuffer)
	var jobs []pushJob
	var buf []byte
	fail := func() { st.close() }
	for {
		select {
		case b := <-st.ctrl:
			if u.writeOne(st, w, b) != nil {
				fail()
				return
			}
			continue
		default:
		}
		if len(jobs) > 0 && len(jobs[0].frames) > 0 {
			j := &jobs[0]
			err := u.writeOne(st, w, j.frames[0])
			if j.frames = j.frames[1:]; len(j.frames) == 0 {
				st.manQueued.Store(false)
			}
			if err != nil {
				fail()
				return
			}
			continue
		}
		if len(jobs) > 0 && len(jobs[0].chunks) > 0 {
			j := &jobs[0]
			var err error
			buf, err = u.pushChunk(st, w, j.chunks[0], j.delta, buf)
			j.chunks = j.chunks[1:]
			st.queued.Add(-1)
			if err != nil {
				fail()
				return
			}
			continue
		}
		if len(jobs) > 0 {
			jobs = jobs[1:]
			continue
		}
		st.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
		if w.Flush() != nil {
			fail()
			return
		}
		select {
		case b := <-st.ctrl:
			if u.writeOne(st, w, b) != nil {
				fail()
				return
			}
		case j := <-st.push:
			// the first push (the manifest, or chunks) follows a REGISTER
			// signed by a host's key: only a host's connection gets the
			// large buffer
			if w.Size() < streamBuffer {
				w = bufio.NewWriterSize(st.conn, streamBuffer) // the old one was flushed above
			}
			jobs = append(jobs, j)
		case <-ctx.Done():
			u.drain(st, w)
			return
		case <-st.closed:
			return
		}
	}
}

// drain writes the control packets still queued when the session ends (the
// acknowledgement of a host's COMPLETE, an ABORT), briefly, then closes.
func (u *streams) drain(st *stream, w *bufio.Writer) {
	defer st.close()
	for {
		select {
		case b := <-st.ctrl:
			if u.writeOne(st, w, b) != nil {
				return
			}
		default:
			st.conn.SetWriteDeadline(time.Now().Add(time.Second))
			w.Flush()
			return
		}
	}
}

func (u *streams) writeOne(st *stream, w *bufio.Writer, b []byte) error {
	st.conn.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	st.bytes.Add(int64(len(b)) + 2)
	return writeFrame(w, b)
}

// pushChunk writes chunk i's data symbols: its delta frame when asked and
// the pack has one, else its plain frame, sealed in an encrypted session.
func (u *streams) pushChunk(st *stream, w *bufio.Writer, i uint32, delta bool, buf []byte) ([]byte, error) {
	src := &u.src
	var data []byte
	var err error
	isDelta := delta && src.pack.HasDelta(int(i))
	if isDelta {
		data, _, err = src.pack.Delta(int(i), buf)
	} else {
		data, err = src.pack.Plain(int(i), buf)
	}
	if err != nil {
		return buf, err
	}
	buf = data
	if src.cipher != nil {
		data = src.cipher.seal(data, i, isDelta, src.release)
	}
	if len(data) == 0 || len(data) > wire.MaxCompressed(src.m.ChunkSize) {
		return buf, fmt.Errorf("multicast: chunk %d: a frame of %d bytes", i, len(data))
	}
	l := newLayout(len(data), src.symSize, src.k)
	pkt := make([]byte, 0, MaxPacket)
	for b := range l.blocks {
		for idx, sh := range symbols(data, l, b, src.symSize) {
			pkt, err = wire.AppendPacket(pkt[:0], wire.Header{Session: src.session},
				&wire.Symbol{Chunk: i, Compressed: uint32(len(data)), Block: uint16(b), Index: uint16(idx), Delta: isDelta, Payload: sh})
			if err == nil {
				err = u.writeOne(st, w, pkt)
			}
			if err != nil {
				return buf, err
			}
		}
	}
	return buf, nil
}

// stop closes the listener and every connection once their writers have
// had a moment to send what is queued, and waits for the goroutines.
func (u *streams) stop(cancel context.CancelFunc) {
	cancel()
	done := make(chan struct{})
	go func() { u.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		for _, st := range u.live {
			st.close()
		}
		<-done
	}
}

// remoteIP is a connection's remote address without its port.
func remoteIP(c net.Conn) string {
	if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return a.IP.String()
	}
	return c.RemoteAddr().String()
}

// take counts a connection from ip, unless maxStreams are open, or
// maxStreamsPerIP from ip.
func (u *streams) take(ip string) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.open >= maxStreams || u.perIP[ip] >= maxStreamsPerIP {
		return false
	}
	u.open++
	u.perIP[ip]++
	return true
}

func (u *streams) release(ip string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.open--
	if u.perIP[ip]--; u.perIP[ip] <= 0 {
		delete(u.perIP, ip)
	}
}

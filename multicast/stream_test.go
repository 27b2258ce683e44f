package multicast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// deafTo drops every multicast packet (a sequence number) the sender
// sends to the named hosts, as a firewall dropping the group would: their
// unicast (sequence 0) still arrives.
func deafTo(hosts ...string) func(from, to string, b []byte) bool {
	return func(from, to string, b []byte) bool {
		return from == "sender" && slices.Contains(hosts, to) && len(b) >= wire.HeaderLen && binary.BigEndian.Uint32(b[12:16]) != 0
	}
}

// withUnicast gives the session a TCP fetch port on loopback and the
// hosts' unicast addresses, and makes every receiver dial that port.
func withUnicast(t *testing.T, ts *testSession, hosts []string) func(string, *ReceiveOptions) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ts.send.Unicast = ln
	ts.send.HostAddrs = map[string]net.Addr{}
	for _, h := range hosts {
		ts.send.HostAddrs[h] = memnet.Addr(h)
	}
	return func(_ string, o *ReceiveOptions) {
		o.dial = func(ctx context.Context, _ net.Addr, port uint16) (net.Conn, error) {
			if int(port) != ln.Addr().(*net.TCPAddr).Port {
				t.Errorf("dialing port %d, the listener is %v", port, ln.Addr())
			}
			var d net.Dialer
			return d.DialContext(ctx, "tcp4", ln.Addr().String())
		}
	}
}

// checkPaths asserts every host completed, the deaf ones over the unicast
// path (and only they), and that their connections carried the data.
func checkPaths(t *testing.T, ts *testSession, res map[string]*Result, errs map[string]error, hosts, deaf []string) {
	t.Helper()
	for _, h := range hosts {
		if errs[h] != nil {
			t.Fatalf("%s: %v", h, errs[h])
		}
		ts.checkImage(h)
		if want := slices.Contains(deaf, h); res[h].Unicast != want {
			t.Errorf("%s: received over unicast %v, want %v", h, res[h].Unicast, want)
		}
	}
	if done, all := ts.report.Completed(); done != len(hosts) || all != len(hosts) {
		t.Fatalf("report: %d of %d complete: %+v", done, all, ts.report.Hosts)
	}
	for _, hr := range ts.report.Hosts {
		wantPath := PathMulticast
		if slices.Contains(deaf, hr.ID) {
			wantPath = PathUnicast
		}
		if hr.Path != wantPath {
			t.Errorf("%s: path %q, want %q", hr.ID, hr.Path, wantPath)
		}
		if hr.Path == PathUnicast && hr.UnicastBytes == 0 {
			t.Errorf("%s: the unicast path carried nothing", hr.ID)
		}
		if hr.Path == PathMulticast && hr.UnicastBytes != 0 {
			t.Errorf("%s: %d unicast bytes on the multicast path", hr.ID, hr.UnicastBytes)
		}
	}
}

// A host that hears no multicast is announced to by unicast, takes the
// session over the sender's TCP port, and completes with the others,
// which the multicast session serves as before.
func TestUnicastFallback(t *testing.T) {
	hosts, deaf := []string{"h1", "h2", "deaf"}, []string{"deaf"}
	ts := newTestSession(t, deafTo(deaf...))
	ts.send.Hosts = hosts
	res, errs := ts.run(context.Background(), hosts, withUnicast(t, ts, hosts))
	checkPaths(t, ts, res, errs, hosts, deaf)
	if ts.report.UnicastBytes < ts.report.PayloadBytes {
		t.Errorf("unicast carried %d bytes, less than the %d of payload the deaf host lacked", ts.report.UnicastBytes, ts.report.PayloadBytes)
	}
}

// Without the host's address nothing can reach it: it is reported as
// never registered, and the others complete.
func TestUnicastNeedsAddress(t *testing.T) {
	hosts := []string{"h1", "deaf"}
	ts := newTestSession(t, deafTo("deaf"))
	ts.send.Hosts = hosts
	recv := withUnicast(t, ts, hosts)
	delete(ts.send.HostAddrs, "deaf")
	ts.send.Wait = 2e9
	res, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
		recv(h, o)
		if h == "deaf" {
			o.AnnounceTimeout = 3e9
		}
	})
	if errs["h1"] != nil || res["h1"].Unicast {
		t.Fatalf("h1: %v (unicast %v)", errs["h1"], res["h1"] != nil && res["h1"].Unicast)
	}
	if errs["deaf"] == nil {
		t.Fatal("deaf host received a session nothing could reach it with")
	}
	for _, hr := range ts.report.Hosts {
		if hr.ID == "deaf" && hr.State != HostMissing {
			t.Errorf("deaf: %v, want missing", hr.State)
		}
	}
}

// Every host deaf: the multicast group has no one left after the first
// pass, so the session runs no repair rounds and ends when the streams do.
func TestUnicastOnly(t *testing.T) {
	hosts := []string{"d1", "d2"}
	ts := newTestSession(t, deafTo(hosts...))
	ts.send.Hosts = hosts
	res, errs := ts.run(context.Background(), hosts, withUnicast(t, ts, hosts))
	checkPaths(t, ts, res, errs, hosts, hosts)
	if ts.report.Rounds != 0 {
		t.Errorf("%d repair rounds with no multicast host", ts.report.Rounds)
	}
}

// A deaf host holding the base gets deltas over its stream; one whose base
// is corrupt asks again for the chunks that fail and gets them plain; an
// encrypted session's frames stay sealed on the stream too.
func TestUnicastDeltaAndSealed(t *testing.T) {
	for _, tc := range []struct {
		name    string
		corrupt bool
		encrypt bool
		lag     time.Duration // the deaf host's answers take this long to arrive
	}{{"delta", false, false, 0}, {"corrupt base", true, false, 0}, {"sealed", false, true, 0},
		{"corrupt base far away", true, false, 3 * streamStatusEvery}} {
		t.Run(tc.name, func(t *testing.T) {
			hosts, deaf := []string{"d1", "deaf"}, []string{"deaf"}
			ts, base, basePath := deltaSession(t, true)
			ts.net.SetDrop(deafTo(deaf...))
			ts.send.Hosts, ts.send.Encrypt = hosts, tc.encrypt
			uni := withUnicast(t, ts, hosts)
			res, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
				uni(h, o)
				var corrupt func([]byte)
				if tc.corrupt && h == "deaf" {
					corrupt = func(b []byte) { // every changed chunk's base bytes
						for _, i := range deltaChanged {
							b[i*testChunk+100] ^= 0xff
						}
					}
				}
				hostBase(t, ts, base, basePath, h, o, corrupt)
				if tc.lag > 0 && h == "deaf" {
					dial := o.dial
					o.dial = func(ctx context.Context, from net.Addr, port uint16) (net.Conn, error) {
						c, err := dial(ctx, from, port)
						if err != nil {
							return nil, err
						}
						return newLagConn(c, tc.lag), nil
					}
				}
			})
			checkPaths(t, ts, res, errs, hosts, deaf)
			r := res["deaf"]
			if tc.corrupt && r.BadChunks == 0 {
				t.Error("deaf host's corrupt base: no chunk failed its check")
			}
			if tc.encrypt && !r.Encrypted {
				t.Error("sealed session: the deaf host's result is not encrypted")
			}
			for _, hr := range ts.report.Hosts {
				// the changed chunks as deltas are a few KiB; plain they are
				// the whole chunks (testChunk each)
				if hr.ID == "deaf" && !tc.corrupt && hr.UnicastBytes > int64(len(deltaChanged))*testChunk/2 {
					t.Errorf("deaf host: %d bytes over unicast for %d changed chunks: not deltas", hr.UnicastBytes, len(deltaChanged))
				}
			}
		})
	}
}

// A receiver told not to take the unicast path waits on multicast.
func TestNoUnicastOption(t *testing.T) {
	hosts := []string{"h1", "deaf"}
	ts := newTestSession(t, deafTo("deaf"))
	ts.send.Hosts, ts.send.Wait = hosts, 2e9
	uni := withUnicast(t, ts, hosts)
	_, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
		uni(h, o)
		if h == "deaf" {
			o.NoUnicast, o.AnnounceTimeout = true, 3e9
		}
	})
	if errs["h1"] != nil {
		t.Fatal(errs["h1"])
	}
	if errs["deaf"] == nil {
		t.Fatal("a receiver with NoUnicast took a session it hears no multicast of")
	}
}

// cutConn closes itself once it has read more than limit bytes: a
// connection that breaks mid-transfer.
type cutConn struct {
	net.Conn
	limit, read int
}

func (c *cutConn) Read(b []byte) (int, error) {
	if c.read > c.limit {
		c.Conn.Close()
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(b)
	c.read += n
	return n, err
}

// A deaf host whose unicast connection breaks mid-transfer is dropped, is
// announced to again, and completes over a second connection when its
// agent tries again (as the agent does after a failed session).
func TestUnicastReconnect(t *testing.T) {
	hosts := []string{"h1", "deaf"}
	ts := newTestSession(t, deafTo("deaf"))
	ts.send.Hosts, ts.send.Wait, ts.retries = hosts, 20*time.Second, 2
	uni := withUnicast(t, ts, hosts)
	var dials atomic.Int32
	res, errs := ts.run(context.Background(), hosts, func(h string, o *ReceiveOptions) {
		uni(h, o)
		dial := o.dial
		o.dial = func(ctx context.Context, from net.Addr, port uint16) (net.Conn, error) {
			c, err := dial(ctx, from, port)
			if err == nil && dials.Add(1) == 1 {
				c = &cutConn{Conn: c, limit: 64 << 10} // past the manifest, before the image's end
			}
			return c, err
		}
	})
	if dials.Load() < 2 {
		t.Fatalf("the deaf host dialed %d times; its first connection was to break", dials.Load())
	}
	checkPaths(t, ts, res, errs, hosts, []string{"deaf"})
}

// One address may hold maxStreamsPerIP connections to the fetch port, no
// more: a stranger cannot take the port's every connection.
func TestStreamsPerIP(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	u := startStreams(ctx, ln, streamSource{})
	defer u.stop(cancel)
	go func() {
		for {
			select {
			case <-u.opened:
			case <-ctx.Done():
				return
			}
		}
	}()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range maxStreamsPerIP + 1 {
		c, err := net.Dial("tcp4", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	one := make([]byte, 1)
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err := c.Read(one)
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		if i < maxStreamsPerIP && !timedOut {
			t.Errorf("connection %d: %v; want it open", i+1, err)
		}
		if i == maxStreamsPerIP && timedOut {
			t.Errorf("connection %d from one address stays open", i+1)
		}
	}
}

// lagConn delays every write by lag: a host far away, whose answers
// arrive after the next stream STATUS would have gone out.
type lagConn struct {
	net.Conn
	lag  time.Duration
	q    chan lagged
	done chan struct{}
	once sync.Once
}

type lagged struct {
	b   []byte
	due time.Time
}

func newLagConn(c net.Conn, lag time.Duration) *lagConn {
	l := &lagConn{Conn: c, lag: lag, q: make(chan lagged, 1024), done: make(chan struct{})}
	go func() {
		for {
			select {
			case w := <-l.q:
				time.Sleep(time.Until(w.due))
				if _, err := l.Conn.Write(w.b); err != nil {
					return
				}
			case <-l.done:
				return
			}
		}
	}()
	return l
}

func (l *lagConn) Write(b []byte) (int, error) {
	select {
	case l.q <- lagged{b: append([]byte(nil), b...), due: time.Now().Add(l.lag)}:
		return len(b), nil
	case <-l.done:
		return 0, net.ErrClosed
	}
}

func (l *lagConn) Close() error {
	l.once.Do(func() { close(l.done) })
	return l.Conn.Close()
}

// A manifest of more fragments than a stream's control queue holds still
// arrives whole over the unicast path (a large tree's manifest).
func TestUnicastLargeManifest(t *testing.T) {
	if testing.Short() {
		t.Skip("a 64 MiB sparse image")
	}
	ts := newTestSession(t, deafTo("deaf"))
	path := filepath.Join(t.TempDir(), "big.img")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	const size = 64 << 20
	for off := int64(0); off < size; off += 1 << 20 { // one non-zero chunk a MiB
		if _, err := f.WriteAt([]byte("not all zero"), off); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(f.Truncate(size), f.Close()); err != nil {
		t.Fatal(err)
	}
	m, err := image.HashFile(context.Background(), path, image.MinChunkSize)
	if err != nil {
		t.Fatal(err)
	}
	m.Label = "big"
	m.Sign(ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize)))
	ts.img, ts.m, ts.send.Manifest = path, m, m
	ts.send.Pack = openPack(t, path, m, "")
	desc, err := wire.AppendDescriptor(nil, m, ts.send.Pack)
	if err != nil {
		t.Fatal(err)
	}
	if frags := len(desc) / DefaultSymbolSize; frags <= streamCtrlQueue {
		t.Fatalf("the manifest is %d fragments: the test needs more than %d", frags, streamCtrlQueue)
	}
	hosts := []string{"deaf"}
	ts.send.Hosts = hosts
	// over net.Pipe, which buffers nothing: each write waits for the
	// host's read, as on a slow link whose window is full
	pl := &pipeListener{conns: make(chan net.Conn), done: make(chan struct{})}
	ts.send.Unicast, ts.send.HostAddrs = pl, map[string]net.Addr{"deaf": memnet.Addr("deaf")}
	res, errs := ts.run(context.Background(), hosts, func(_ string, o *ReceiveOptions) {
		o.dial = func(ctx context.Context, from net.Addr, port uint16) (net.Conn, error) {
			c, err := pl.dial(ctx, from, port)
			if err != nil {
				return nil, err
			}
			return &slowConn{Conn: c}, nil
		}
	})
	checkPaths(t, ts, res, errs, hosts, hosts)
}

// pipeListener hands out the server ends of net.Pipe connections.
type pipeListener struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func (l *pipeListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *pipeListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *pipeListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9} }

func (l *pipeListener) dial(ctx context.Context, _ net.Addr, _ uint16) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case l.conns <- a:
		return b, nil
	case <-l.done:
		return nil, net.ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// slowConn reads at most 2 KiB a millisecond: a host on a slow link.
type slowConn struct{ net.Conn }

func (c *slowConn) Read(b []byte) (int, error) {
	time.Sleep(time.Millisecond)
	return c.Conn.Read(b[:min(len(b), 2<<10)])
}

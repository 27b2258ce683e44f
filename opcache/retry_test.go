package opcache

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/fcgi"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// emptyFirst is a FastCGI pool stand-in that closes the first n
// connections without a byte and answers the rest as the helper would.
func emptyFirst(t *testing.T, n int32) (socket string, conns *atomic.Int32) {
	socket = filepath.Join(t.TempDir(), "pool.sock")
	l, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	conns = &atomic.Int32{}
	answered := make(chan net.Conn)
	go fcgi.Serve(chanListener{answered, l.Addr()}, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(`{"ok":true,"busy":["/srv/a/slow.php"]}`))
	}))
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				close(answered)
				return
			}
			if conns.Add(1) <= n {
				readRequest(c) // then end it with nothing, as php-fpm did
				c.Close()
				continue
			}
			answered <- c
		}
	}()
	return socket, conns
}

// readRequest reads one FastCGI request's records, up to its empty
// FCGI_STDIN record.
func readRequest(c net.Conn) {
	var h [8]byte
	for {
		if _, err := io.ReadFull(c, h[:]); err != nil {
			return
		}
		n := int(binary.BigEndian.Uint16(h[4:])) + int(h[6])
		if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
			return
		}
		if h[1] == 5 && binary.BigEndian.Uint16(h[4:]) == 0 { // FCGI_STDIN, empty: the request is in
			return
		}
	}
}

// chanListener hands fcgi.Serve the connections it is given.
type chanListener struct {
	c    chan net.Conn
	addr net.Addr
}

func (l chanListener) Accept() (net.Conn, error) {
	c, ok := <-l.c
	if !ok {
		return nil, net.ErrClosed
	}
	return c, nil
}
func (l chanListener) Close() error   { return nil }
func (l chanListener) Addr() net.Addr { return l.addr }

// TestCallRetriesEmptyResponse: a pool that ends a request with no output
// at all is asked once more; one that does so twice is an error naming
// the pool.
func TestCallRetriesEmptyResponse(t *testing.T) {
	socket, conns := emptyFirst(t, 1)
	c := &Client{Socket: socket, Helper: "/x/" + HelperName}
	busy, _, err := c.Busy(context.Background(), "/srv/a")
	if err != nil || len(busy) != 1 || conns.Load() != 2 {
		t.Fatalf("Busy = %q, %v after %d connections; want one script after 2", busy, err, conns.Load())
	}
	socket, conns = emptyFirst(t, 2)
	c = &Client{Socket: socket, Helper: "/x/" + HelperName}
	if _, _, err := c.Busy(context.Background(), "/srv/a"); !errors.Is(err, ErrPool) || conns.Load() != 2 {
		t.Fatalf("Busy against a pool that answers nothing twice = %v after %d connections; want ErrPool after 2", err, conns.Load())
	}
}

package multicast

import (
	"net"
	"os"
	"sync"
	"time"
)

// memNet is an in-process multicast network: every conn joined to the
// group gets each group packet, unicast goes to one conn, and drop decides
// per delivery whether the packet is lost (or mangles it in place).
type memNet struct {
	mu    sync.Mutex
	conns map[string]*memConn
	drop  func(from, to string, b []byte) bool // nil: lossless; called with mu held
}

const memGroup = memAddr("group")

type memAddr string

func (a memAddr) Network() string { return "mem" }
func (a memAddr) String() string  { return string(a) }

func newMemNet(drop func(from, to string, b []byte) bool) *memNet {
	return &memNet{conns: map[string]*memConn{}, drop: drop}
}

// conn makes an endpoint named name; joined endpoints receive the group.
func (n *memNet) conn(name string, joined bool) *memConn {
	c := &memConn{net: n, addr: memAddr(name), joined: joined, in: make(chan packet, 8192),
		closed: make(chan struct{}), dl: make(chan struct{})}
	n.mu.Lock()
	n.conns[name] = c
	n.mu.Unlock()
	return c
}

func (n *memNet) deliver(from memAddr, to *memConn, b []byte) {
	b = append([]byte(nil), b...)
	if n.drop != nil && n.drop(string(from), string(to.addr), b) {
		return
	}
	select {
	case to.in <- packet{b: b, from: from}:
	default: // a full socket buffer drops
	}
}

type memConn struct {
	net    *memNet
	addr   memAddr
	joined bool
	in     chan packet
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	dl       chan struct{} // closed and replaced when the deadline changes
}

func (c *memConn) WriteTo(b []byte, to net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if to == memGroup {
		for _, d := range c.net.conns {
			if d.joined && d != c {
				c.net.deliver(c.addr, d, b)
			}
		}
	} else if d := c.net.conns[to.String()]; d != nil {
		c.net.deliver(c.addr, d, b)
	}
	return len(b), nil
}

func (c *memConn) ReadFrom(b []byte) (int, net.Addr, error) {
	for {
		c.mu.Lock()
		dl, changed := c.deadline, c.dl
		c.mu.Unlock()
		var expire <-chan time.Time
		if !dl.IsZero() {
			t := time.NewTimer(time.Until(dl))
			defer t.Stop()
			expire = t.C
		}
		select {
		case p := <-c.in:
			return copy(b, p.b), p.from, nil
		case <-c.closed:
			return 0, nil, net.ErrClosed
		case <-expire:
			return 0, nil, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
}

func (c *memConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dl)
	c.dl = make(chan struct{})
	return nil
}

func (c *memConn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

// Package memnet is an in-process multicast network for tests: every conn
// joined to the group gets each group packet, unicast goes to one conn, and
// a drop function decides per delivery whether a packet is lost (or mangles
// it in place). Its conns satisfy multicast.Conn, so the real session code
// (and the deploy flow on top of it) runs over it without sockets.
package memnet

import (
	"net"
	"os"
	"sync"
	"time"
)

// Group is the group address: a packet written to it reaches every joined
// conn but the writer.
const Group = Addr("group")

// queueDepth is a conn's receive queue; a full queue drops, as a full
// socket buffer does.
const queueDepth = 8192

// Addr names a conn.
type Addr string

func (a Addr) Network() string { return "mem" }
func (a Addr) String() string  { return string(a) }

// DropFunc decides whether the packet b from one conn to another is lost;
// it may also change b in place. It is called with the network's lock held.
type DropFunc func(from, to string, b []byte) bool

// Net is the network.
type Net struct {
	mu    sync.Mutex
	conns map[string]*Conn
	drop  DropFunc // nil: lossless
}

// New makes a network; drop may be nil.
func New(drop DropFunc) *Net {
	return &Net{conns: map[string]*Conn{}, drop: drop}
}

// Conn makes an endpoint named name; joined endpoints receive the group.
func (n *Net) Conn(name string, joined bool) *Conn {
	c := &Conn{net: n, addr: Addr(name), joined: joined, in: make(chan Packet, queueDepth),
		closed: make(chan struct{}), dl: make(chan struct{})}
	n.mu.Lock()
	n.conns[name] = c
	n.mu.Unlock()
	return c
}

// SetDrop replaces the drop function.
func (n *Net) SetDrop(drop DropFunc) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.drop = drop
}

// Lookup returns the conn named name, nil when none was made.
func (n *Net) Lookup(name string) *Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.conns[name]
}

// Deliver hands b to conn to as if from had sent it (subject to drop).
func (n *Net) Deliver(from Addr, to *Conn, b []byte) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.deliver(from, to, b)
}

func (n *Net) deliver(from Addr, to *Conn, b []byte) {
	b = append([]byte(nil), b...)
	if n.drop != nil && n.drop(string(from), string(to.addr), b) {
		return
	}
	select {
	case to.in <- Packet{B: b, From: from}:
	default: // a full socket buffer drops
	}
}

// Packet is a delivered datagram.
type Packet struct {
	B    []byte
	From Addr
}

// Conn is one endpoint.
type Conn struct {
	net    *Net
	addr   Addr
	joined bool
	in     chan Packet
	closed chan struct{}
	once   sync.Once

	mu       sync.Mutex
	deadline time.Time
	dl       chan struct{} // closed and replaced when the deadline changes
}

// In is the conn's receive queue, for tests that watch it directly
// (ReadFrom takes from the same queue).
func (c *Conn) In() <-chan Packet { return c.in }

// LocalAddr is the conn's name.
func (c *Conn) LocalAddr() net.Addr { return c.addr }

func (c *Conn) WriteTo(b []byte, to net.Addr) (int, error) {
	select {
	case <-c.closed:
		return 0, net.ErrClosed
	default:
	}
	c.net.mu.Lock()
	defer c.net.mu.Unlock()
	if to == Group {
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

func (c *Conn) ReadFrom(b []byte) (int, net.Addr, error) {
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
			return copy(b, p.B), p.From, nil
		case <-c.closed:
			return 0, nil, net.ErrClosed
		case <-expire:
			return 0, nil, os.ErrDeadlineExceeded
		case <-changed:
		}
	}
}

func (c *Conn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.deadline = t
	close(c.dl)
	c.dl = make(chan struct{})
	return nil
}

func (c *Conn) Close() error {
	c.once.Do(func() { close(c.closed) })
	return nil
}

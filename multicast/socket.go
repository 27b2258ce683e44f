package multicast

import (
	"context"
	"fmt"
	"net"
	"syscall"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// socketBuffer is the send and receive buffer asked of the kernel: 8 MiB
// holds ~70 ms at 900 Mbit/s, enough to ride out a scheduling hiccup
// without loss. The kernel caps it at net.core.{r,w}mem_max unless root
// uses the FORCE variants.
const socketBuffer = 8 << 20

// DefaultTTL keeps multicast on the local link unless asked otherwise.
const DefaultTTL = 1

// UDPConn is a multicast UDP socket: a Conn with batch writes.
type UDPConn struct {
	*net.UDPConn
	p *ipv4.PacketConn
}

// ReadBatch receives many datagrams in one system call where supported.
func (c *UDPConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.p.ReadBatch(ms, flags)
}

// WriteBatch sends many datagrams in one system call where supported.
func (c *UDPConn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	return c.p.WriteBatch(ms, flags)
}

// ListenGroup opens a receiver's socket: bound to the group's port on all
// addresses (so unicast replies carry a real source address), joined to
// the group on iface ("" lets the kernel choose).
func ListenGroup(group *net.UDPAddr, iface string) (*UDPConn, error) {
	lc := net.ListenConfig{Control: reuseAddr}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf(":%d", group.Port))
	if err != nil {
		return nil, fmt.Errorf("multicast: listen on port %d: %w", group.Port, err)
	}
	return setup(pc.(*net.UDPConn), group, iface, 0, true, true)
}

// DialGroup opens a sender's socket on an ephemeral port, sending to the
// group through iface with the given TTL.
func DialGroup(group *net.UDPAddr, iface string, ttl int) (*UDPConn, error) {
	c, err := net.ListenUDP("udp4", &net.UDPAddr{})
	if err != nil {
		return nil, fmt.Errorf("multicast: open sender socket: %w", err)
	}
	return setup(c, group, iface, ttl, false, true)
}

// setup is the one place that configures ipv4.PacketConn: buffers,
// interface, TTL, loopback and group membership.
func setup(c *net.UDPConn, group *net.UDPAddr, iface string, ttl int, join, loop bool) (*UDPConn, error) {
	p := ipv4.NewPacketConn(c)
	fail := func(what string, err error) (*UDPConn, error) {
		c.Close()
		return nil, fmt.Errorf("multicast: %s (group %v, iface %q): %w", what, group, iface, err)
	}
	_ = c.SetReadBuffer(socketBuffer)
	_ = c.SetWriteBuffer(socketBuffer)
	var ifi *net.Interface
	if iface != "" {
		var err error
		if ifi, err = net.InterfaceByName(iface); err != nil {
			return fail("interface", err)
		}
		if err := p.SetMulticastInterface(ifi); err != nil {
			return fail("set interface", err)
		}
	}
	if ttl > 0 {
		if err := p.SetMulticastTTL(ttl); err != nil {
			return fail("set ttl", err)
		}
	}
	if err := p.SetMulticastLoopback(loop); err != nil {
		return fail("set loopback", err)
	}
	if join {
		if err := p.JoinGroup(ifi, &net.UDPAddr{IP: group.IP}); err != nil {
			return fail("join group", err)
		}
	}
	return &UDPConn{UDPConn: c, p: p}, nil
}

func reuseAddr(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	})
	if err != nil {
		return err
	}
	return serr
}

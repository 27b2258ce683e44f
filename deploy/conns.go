package deploy

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/multicast"
)

// ControlConn is the conn commands go out on and replies come back on.
type ControlConn interface {
	multicast.Conn
	SetReadDeadline(t time.Time) error
}

// Conns are what a deploy talks over, opened by its caller: Dial opens the
// real ones; tests pass conns of an in-process network.
type Conns struct {
	Data      multicast.Conn // the transfer's: multicast to the group
	Control   ControlConn    // commands, sent to ControlTo; their replies
	ControlTo net.Addr       // the agents' control address (the group's port+1)
	// Unicast offers the transfer over TCP to hosts that hear no
	// multicast; nil offers no unicast path. The transfer closes it.
	Unicast net.Listener
}

// Dial opens a deploy's conns to group through iface: the data and
// control sockets, and with unicast the unicast path's TCP port.
func Dial(group *net.UDPAddr, iface string, ttl int, unicast bool) (Conns, error) {
	data, err := multicast.DialGroup(group, iface, ttl)
	if err != nil {
		return Conns{}, err
	}
	c := Conns{Data: data, ControlTo: control.Addr(group)}
	ctl, err := multicast.DialGroup(control.Addr(group), iface, ttl)
	if err != nil {
		c.Close()
		return Conns{}, err
	}
	c.Control = ctl
	if !unicast {
		return c, nil
	}
	ln, err := net.Listen("tcp4", ":0")
	if err != nil {
		c.Close()
		return Conns{}, fmt.Errorf("deploy: the unicast path's TCP port (--no-unicast goes without it): %w", err)
	}
	c.Unicast = ln
	return c, nil
}

// Close closes the conns that are open.
func (c Conns) Close() error {
	var errs []error
	for _, cl := range []io.Closer{c.Data, c.Control, c.Unicast} {
		if cl == nil {
			continue
		}
		if err := cl.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

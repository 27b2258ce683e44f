package deploy

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"time"

	"github.com/loopcast/loopcast/control"
)

// Retransmission of a command to hosts that have not answered: start fast
// (a LAN answers in well under 100 ms), back off to spare a large group's
// links, and stop at the command timeout.
const (
	retransmitFirst = 100 * time.Millisecond
	retransmitMax   = time.Second
	// DefaultCommandTimeout bounds how long a command waits for answers:
	// agents answer in milliseconds; activation is a rename.
	DefaultCommandTimeout = 10 * time.Second
	maxReplyPacket        = 64 << 10
)

// Commander sends signed commands to the agents of one group and collects
// their replies.
type Commander struct {
	Conn    ControlConn // sends to To, receives unicast replies
	To      net.Addr    // the agents' control address (group ADDR:PORT+1)
	Group   string      // the group as agents name it (the data ADDR:PORT)
	Key     ed25519.PrivateKey
	Timeout time.Duration // per command; DefaultCommandTimeout when zero
	// Addrs, when set, maps host ids to the IP they registered from; a
	// reply naming a host is only taken from that address, so one host
	// cannot answer for another.
	Addrs map[string]string
	// Unicast maps host ids to an IP known for them (an inventory's, or
	// the last they took part from): a retransmission also goes there, by
	// unicast, to each host that has not answered, so a host that hears
	// no multicast still gets every command. Addrs wins where both name a
	// host.
	Unicast map[string]string
	// HostKeys, if set, must accept the key a reply is signed by for the
	// host it names (a hostkey.Pins check); a reply it refuses is not
	// counted. Every reply's signature is checked whether or not it is set.
	HostKeys func(host string, key ed25519.PublicKey) error
	// Logger hears, at Warn, replies not counted and a fleet pointer not
	// sent, at Debug each retransmission. Nil discards.
	Logger *slog.Logger
}

// readWake bounds a blocking read, so a cancelled context is noticed.
const readWake = 200 * time.Millisecond

// NewEnvelope starts a command for this group addressed to targets (nil:
// every host).
func (c *Commander) NewEnvelope(deploy uint64, targets []string) control.Envelope {
	return control.NewEnvelope(c.Group, deploy, targets, time.Now())
}

// Do signs cmd, multicasts it and gathers replies until every host in
// hosts answered or the timeout passed (nil hosts: an open group, which
// gathers for the whole timeout). The tally says who answered what.
func (c *Commander) Do(ctx context.Context, cmd control.Command, hosts []string) (*control.Tally, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	pkt, err := control.Sign(cmd, c.Key)
	if err != nil {
		return nil, err
	}
	t := control.NewTally(cmd, hosts)
	timeout := c.Timeout
	if timeout == 0 {
		timeout = DefaultCommandTimeout
	}
	deadline := time.Now().Add(timeout)
	every := retransmitFirst
	buf := make([]byte, maxReplyPacket)
	for sent := 0; ; sent++ {
		if _, err := c.Conn.WriteTo(pkt, c.To); err != nil {
			if sent == 0 {
				return t, fmt.Errorf("deploy: send %s to %v: %w", cmd.Type(), c.To, err)
			}
			c.log().Debug("deploy: resend failed", "command", cmd.Type(), "addr", c.To, "err", err) // try again next round
		}
		if sent > 0 {
			c.log().Debug("deploy: resent", "command", cmd.Type(), "waiting_for", t.Missing())
			c.unicast(pkt, t.Missing())
		}
		next := earliest(time.Now().Add(every), deadline)
		if err := c.collect(ctx, t, buf, next); err != nil {
			return t, err
		}
		if t.Done() || !time.Now().Before(deadline) {
			return t, nil
		}
		every = min(2*every, retransmitMax)
	}
}

// unicast sends pkt to each host's known address at the control port.
func (c *Commander) unicast(pkt []byte, hosts []string) {
	to, ok := c.To.(*net.UDPAddr)
	if !ok {
		return
	}
	for _, h := range hosts {
		ip := c.Addrs[h]
		if ip == "" {
			ip = c.Unicast[h]
		}
		if a := net.ParseIP(ip); a != nil {
			c.Conn.WriteTo(pkt, &net.UDPAddr{IP: a, Port: to.Port})
		}
	}
}

// collect reads replies into t until until, t is done, or ctx ends.
func (c *Commander) collect(ctx context.Context, t *control.Tally, buf []byte, until time.Time) error {
	for !t.Done() {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := c.Conn.SetReadDeadline(earliest(until, time.Now().Add(readWake))); err != nil {
			return fmt.Errorf("deploy: %w", err)
		}
		n, from, err := c.Conn.ReadFrom(buf)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			if !time.Now().Before(until) {
				return nil
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("deploy: read replies: %w", err)
		}
		r, err := control.ParseReply(buf[:n])
		if err != nil {
			continue // not a reply for us: ignore
		}
		if !c.fromHost(r.Host, from) {
			c.log().Debug("deploy: reply from another address than the host's: ignored", "host", r.Host, "addr", from)
			continue
		}
		if c.HostKeys != nil {
			if err := c.HostKeys(r.Host, r.HostKey); err != nil {
				c.log().Warn("deploy: reply not counted", "addr", from, "err", err)
				t.Unverified(r.Host, err)
				continue
			}
		}
		t.Add(r)
	}
	return nil
}

// fromHost reports whether a reply naming host may come from addr.
func (c *Commander) fromHost(host string, addr net.Addr) bool {
	want, ok := c.Addrs[host]
	if c.Addrs == nil {
		return true
	}
	if !ok {
		return false
	}
	got, _, err := net.SplitHostPort(addr.String())
	return err == nil && got == want
}

func (c *Commander) log() *slog.Logger { return orDiscard(c.Logger) }

func earliest(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

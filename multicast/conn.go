package multicast

import (
	"context"
	"errors"
	"net"

	"golang.org/x/net/ipv4"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// MaxPacket is the largest datagram a session sends or accepts: an IPv4
// UDP payload on a 1500-byte Ethernet MTU.
const MaxPacket = wire.MaxPacket

// Conn is the narrow packet interface sessions use; *net.UDPConn satisfies
// it, and tests pass an in-process conn that drops packets by a function.
// Close must unblock a pending ReadFrom.
type Conn interface {
	ReadFrom(p []byte) (n int, addr net.Addr, err error)
	WriteTo(p []byte, addr net.Addr) (n int, err error)
	Close() error
}

// batchWriter is implemented by conns that can send many datagrams in one
// system call (sendmmsg via ipv4.PacketConn.WriteBatch).
type batchWriter interface {
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// batchReader is implemented by conns that can receive many datagrams in
// one system call (recvmmsg via ipv4.PacketConn.ReadBatch).
type batchReader interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
}

// readBatch is how many datagrams one ReadBatch call may return.
const readBatch = 32

// inboxDepth bounds the packets queued between a socket reader and the
// session loop: ~4,000 packets is 6 MB, a few milliseconds at line rate;
// beyond it packets are dropped (and repaired) rather than queued.
const inboxDepth = 4096

// packet is one received datagram.
type packet struct {
	b    []byte
	from net.Addr
	err  error // a stream's end (then b is nil)
}

// readLoop reads conn until it fails, parsing nothing: it copies each
// datagram into the bounded inbox and drops on overflow. It returns when
// the conn is closed or ctx is done.
func readLoop(ctx context.Context, conn Conn, inbox chan<- packet) error {
	if br, ok := conn.(batchReader); ok {
		return readBatchLoop(ctx, br, inbox)
	}
	_, lossless := conn.(losslessConn)
	buf := make([]byte, MaxPacket+1)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil && lossless && ctx.Err() == nil {
			// a stream ended: the session loop decides what that means
			// once it has handled everything read before (an
			// acknowledgement may be queued)
			select {
			case inbox <- packet{err: err}:
			case <-ctx.Done():
			}
			return nil
		}
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		if !lossless {
			enqueue(inbox, buf[:n], from)
			continue
		}
		select { // a stream: hold the sender back rather than drop
		case inbox <- packet{b: append([]byte(nil), buf[:n]...), from: from}:
		case <-ctx.Done():
			return nil
		}
	}
}

// readBatchLoop is readLoop with recvmmsg.
func readBatchLoop(ctx context.Context, br batchReader, inbox chan<- packet) error {
	ms := make([]ipv4.Message, readBatch)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, MaxPacket+1)}
	}
	for {
		n, err := br.ReadBatch(ms, 0)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		// one allocation for the batch's datagrams, not one each
		var total int
		for _, m := range ms[:n] {
			if m.N <= MaxPacket {
				total += m.N
			}
		}
		slab := make([]byte, 0, total)
		for _, m := range ms[:n] {
			if m.N > MaxPacket {
				continue // not ours
			}
			at := len(slab)
			slab = append(slab, m.Buffers[0][:m.N]...)
			offer(inbox, slab[at:len(slab):len(slab)], m.Addr)
		}
	}
}

// enqueue copies a datagram into the inbox, dropping it when the inbox
// is full or the datagram is oversized (not ours).
func enqueue(inbox chan<- packet, b []byte, from net.Addr) {
	if len(b) > MaxPacket {
		return
	}
	offer(inbox, append([]byte(nil), b...), from)
}

// offer hands a datagram the caller no longer writes to the inbox,
// dropping it when the inbox is full.
func offer(inbox chan<- packet, b []byte, from net.Addr) {
	select {
	case inbox <- packet{b: b, from: from}:
	default:
	}
}

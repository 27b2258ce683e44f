package multicast

import (
	"context"
	"errors"
	"net"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// deadliner is implemented by conns whose blocked reads can be released
// without closing them (net.UDPConn and the test conn).
type deadliner interface {
	SetReadDeadline(t time.Time) error
}

// serve runs a session loop with a socket reader beside it, and stops the
// reader when the loop returns: by a past read deadline where the conn
// allows it (so the caller may reuse the conn), else by closing it.
func serve(ctx context.Context, conn Conn, run func(ctx context.Context, inbox <-chan packet) error) error {
	inbox := make(chan packet, inboxDepth)
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopReader := context.WithCancel(gctx)
	g.Go(func() error { return readLoop(runCtx, conn, inbox) })
	g.Go(func() error {
		defer func() {
			stopReader()
			if d, ok := conn.(deadliner); ok {
				d.SetReadDeadline(time.Unix(1, 0))
			} else {
				conn.Close()
			}
		}()
		return run(gctx, inbox)
	})
	err := g.Wait()
	if d, ok := conn.(deadliner); ok {
		d.SetReadDeadline(time.Time{})
	}
	return err
}

// resetTimer arms t to fire after d (at least immediately).
func resetTimer(t *time.Timer, d time.Duration) {
	t.Stop()
	t.Reset(max(d, 0))
}

// maxVersionNotes bounds the peers a side remembers having warned about.
const maxVersionNotes = 64

// versionNotes warns once per peer address that it speaks another version.
type versionNotes map[string]bool

func (n *versionNotes) note(err error, from net.Addr, log func(msg string, args ...any)) {
	var ve *wire.VersionError
	if from == nil || !errors.As(err, &ve) || (*n)[from.String()] {
		return
	}
	if *n == nil || len(*n) >= maxVersionNotes {
		*n = versionNotes{}
	}
	(*n)[from.String()] = true
	log("multicast: packets refused", "addr", from, "err", err)
}

package agent

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/loopcast/loopcast/release"
)

// Start runs the agent's startup sequence: it reconciles the store (stray
// temporary files removed, kept releases remounted, `current` repaired)
// and then reports ready to systemd. When reconcile fails it returns the
// error without reporting ready, so systemd fails the start (and restarts
// the unit) instead of letting nginx start on a root with nothing to serve.
func Start(ctx context.Context, s *release.Store) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.Reconcile(); err != nil {
		return fmt.Errorf("agent: reconcile %s: %w", s.Root(), err)
	}
	st, err := s.Status()
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	status := "serving nothing yet"
	if !st.Current.IsZero() {
		status = "serving " + st.Current.String()
	}
	slog.Info("agent: store reconciled", "root", s.Root(), "current", st.Current,
		"previous", st.Previous, "staged", st.Staged)
	if err := notify(daemon.SdNotifyReady + "\nSTATUS=" + status); err != nil {
		return err
	}
	return nil
}

// Ready tells systemd that the agent is ready (sd_notify READY=1), for a
// Type=notify unit. Outside systemd (no NOTIFY_SOCKET) it does nothing.
func Ready() error { return notify(daemon.SdNotifyReady) }

// Stopping tells systemd that the agent is shutting down (STOPPING=1).
func Stopping() error { return notify(daemon.SdNotifyStopping) }

// notify sends state to systemd's notification socket, if there is one.
func notify(state string) error {
	sent, err := daemon.SdNotify(false, state)
	if err != nil {
		return fmt.Errorf("agent: notify systemd: %w", err)
	}
	if sent {
		slog.Debug("agent: notified systemd", "state", state)
	}
	return nil
}

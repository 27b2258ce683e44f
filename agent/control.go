package agent

import (
	"crypto/ed25519"
	"fmt"
	"log/slog"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/release"
)

// ControlConfig is what the agent's command handler needs.
type ControlConfig struct {
	Store *release.Store
	// Keys are the trusted release keys: the ones that sign manifests also
	// sign commands.
	Keys []ed25519.PublicKey
	// Host is this host's id (as the sender's --hosts names it); Group is
	// the agents' group (the multicast ADDR:PORT they join).
	Host, Group string
	// Version is the agent's version, reported by STATUS.
	Version string
	Logger  *slog.Logger
	// Fleet, when set, hears of every switch a command made (a pointer
	// issued before it is superseded) and serializes them with catch-up.
	Fleet  *Fleet
	doctor *doctorState
}

// NewControl returns the handler for the sender's commands. started is
// the agent's start time: commands issued before it are refused, because
// the replay cache of an earlier run is gone.
func NewControl(cfg ControlConfig, started time.Time) (*Handler, error) {
	v, err := control.NewVerifier(control.VerifierConfig{
		Keys: cfg.Keys, Host: cfg.Host, Group: cfg.Group, NotBefore: started,
	})
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	return NewHandler(HandlerConfig{
		Store: cfg.Store, Verifier: v, Version: cfg.Version, Logger: cfg.Logger, Fleet: cfg.Fleet, doctor: cfg.doctor,
	}), nil
}

package agent

import (
	"errors"
	"github.com/loopcast/loopcast/control"
	"log/slog"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/release"
)

// maxAnswered bounds the replies kept for retransmitted commands: a
// retransmission comes within seconds, and a sender has few commands in
// flight.
const maxAnswered = 64

// HandlerConfig configures a Handler.
type HandlerConfig struct {
	Store    *release.Store
	Verifier *control.Verifier
	// Version is the agent's version, reported by STATUS.
	Version string
	// Logger receives one line per command; slog.Default() when nil.
	Logger *slog.Logger
	// Fleet, when set, records each ACTIVATE and ROLLBACK applied.
	Fleet *Fleet
	// doctor, when set, adds `sender doctor`'s fields to STATUS replies.
	doctor *doctorState
}

// Handler applies verified commands to a release store and answers them.
// It is meant for the one goroutine that owns the agent's control socket.
type Handler struct {
	store   *release.Store
	verify  *control.Verifier
	version string
	log     *slog.Logger
	fleet   *Fleet
	doctor  *doctorState

	answered map[[control.NonceLen]byte]*control.Reply
	order    [][control.NonceLen]byte // answered, oldest first
}

// NewHandler returns a handler.
func NewHandler(cfg HandlerConfig) *Handler {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &Handler{
		store: cfg.Store, verify: cfg.Verifier, version: control.TruncateText(cfg.Version),
		log: log, answered: make(map[[control.NonceLen]byte]*control.Reply), fleet: cfg.Fleet, doctor: cfg.doctor,
	}
}

// Handle parses a packet, verifies and applies the command in it at time
// now, and returns the reply to send. It returns a nil reply, with the
// reason as error, for what deserves no answer: a malformed packet, a
// reply, or a command for another group or host. A retransmitted command
// gets the reply it got the first time and is not applied again.
func (h *Handler) Handle(pkt []byte, now time.Time) (*control.Reply, error) {
	c, err := control.ParseCommand(pkt)
	if err != nil {
		h.log.Debug("control: ignoring packet", "err", err)
		return nil, err
	}
	if err := h.verify.Verify(c, now); err != nil {
		return h.refused(c, err)
	}
	r := h.apply(c)
	h.remember(r)
	return r, nil
}

// refused answers a command the verifier refused, or ignores it when it
// was not addressed to this host or is not validly signed by a trusted
// key: anyone can send those, and an answer to a forged source address
// would turn the agent into a reflector. They are logged at debug level
// only, so a flood costs bounded work.
func (h *Handler) refused(c control.Command, err error) (*control.Reply, error) {
	e := c.Env()
	attrs := []any{"command", c.Type().String(), "deploy", e.Deploy, "key", e.KeyID(), "err", err}
	if errors.Is(err, control.ErrOtherGroup) || errors.Is(err, control.ErrNotForHost) {
		h.log.Debug("control: command not for this host", attrs...)
		return nil, err
	}
	if errors.Is(err, control.ErrUnsigned) || errors.Is(err, control.ErrBadSignature) || errors.Is(err, control.ErrUntrustedKey) {
		h.log.Debug("control: unauthenticated command ignored", attrs...)
		return nil, err
	}
	// The signature was checked before time and nonce: a retransmission of
	// an answered command, even one now too old, gets its answer again.
	if r := h.answered[e.Nonce]; r != nil && (errors.Is(err, control.ErrReplay) || errors.Is(err, control.ErrStale)) {
		h.log.Info("control: retransmitted command, answering again", attrs...)
		return r, nil
	}
	h.log.Warn("control: command refused", attrs...)
	return h.reply(c, control.OutcomeRefused, err), nil
}

// apply runs a verified command on the store.
func (h *Handler) apply(c control.Command) *control.Reply {
	e := c.Env()
	attrs := []any{"command", c.Type().String(), "deploy", e.Deploy, "key", e.KeyID()}
	var err error
	if _, status := c.(*control.StatusRequest); !status && h.fleet != nil {
		// one switch at a time with catch-up, which checks no command came
		// after its pointer before it switches
		h.fleet.switching.Lock()
		defer h.fleet.switching.Unlock()
		defer func() {
			// it obeyed when the host serves what the command named, even
			// if something after the switch failed (retention, say)
			if err == nil || h.servesCommanded(c) {
				h.fleet.NoteCommand(e.IssuedAt())
			}
		}()
	}
	switch c := c.(type) {
	case *control.Activate:
		attrs = append(attrs, "release", c.Release)
		err = h.store.Activate(c.Release)
	case *control.Rollback:
		var to image.ID
		to, err = h.store.Rollback(c.To)
		attrs = append(attrs, "release", to)
		if !c.To.IsZero() && errors.Is(err, release.ErrAlreadyCurrent) {
			err = nil // the state asked for: a re-issued rollback is not a failure
		}
	case *control.StatusRequest:
		return h.status(c, attrs)
	}
	if err != nil {
		h.log.Warn("control: command failed", append(attrs, "err", err)...)
		return h.reply(c, control.OutcomeFailed, err)
	}
	r := h.reply(c, control.OutcomeOK, nil)
	h.log.Info("control: command applied", append(attrs, "current", r.Current)...)
	return r
}

// servesCommanded reports whether the store serves the release c named.
func (h *Handler) servesCommanded(c control.Command) bool {
	st, err := h.store.State()
	if err != nil {
		return false
	}
	switch c := c.(type) {
	case *control.Activate:
		return st.Current == c.Release
	case *control.Rollback:
		return !c.To.IsZero() && st.Current == c.To
	}
	return false
}

// status answers STATUS from the store's status.
func (h *Handler) status(c control.Command, attrs []any) *control.Reply {
	st, err := h.store.Status()
	if err != nil {
		h.log.Warn("control: status failed", append(attrs, "err", err)...)
		return h.reply(c, control.OutcomeFailed, err)
	}
	r := h.reply(c, control.OutcomeOK, nil)
	r.Current = st.Current
	staged := st.Staged[max(0, len(st.Staged)-control.MaxStaged):] // the newest
	r.Status = &control.Status{
		Previous: st.Previous, FreeBytes: uint64(max(st.FreeBytes, 0)), Staged: staged,
		AgentVersion: h.version, LastError: control.TruncateText(st.LastError), LastRefusal: control.TruncateText(st.LastRefusal),
	}
	var problems string
	r.Status.Probe, r.Status.MTU, problems = h.doctor.report()
	r.Status.Problems = control.TruncateText(problems)
	h.log.Info("control: status reported", append(attrs, "current", r.Current)...)
	return r
}

// reply builds the reply to c; Current is what the store now serves.
func (h *Handler) reply(c control.Command, o control.Outcome, err error) *control.Reply {
	e := c.Env()
	r := &control.Reply{Deploy: e.Deploy, Nonce: e.Nonce, Command: c.Type(), Outcome: o, Host: h.verify.Host()}
	if err != nil {
		r.Error = control.TruncateText(err.Error())
	}
	if st, serr := h.store.State(); serr == nil {
		r.Current = st.Current
	}
	return r
}

// remember keeps r for retransmissions of its command.
func (h *Handler) remember(r *control.Reply) {
	if len(h.order) >= maxAnswered {
		delete(h.answered, h.order[0])
		h.order = h.order[1:]
	}
	h.answered[r.Nonce] = r
	h.order = append(h.order, r.Nonce)
}

package multicast

import (
	"time"
)

// progressEvery bounds how often SendOptions.Progress is called between
// phase changes: often enough for a live display, rarely enough to cost
// the session loop nothing.
const progressEvery = 100 * time.Millisecond

// SendPhase is where a session is, as SendProgress reports it.
type SendPhase int

const (
	PhaseRegistering SendPhase = iota // waiting for hosts to register
	PhaseSending                      // the first pass: every chunk some host lacks
	PhaseRepairing                    // status rounds and repair, until every host is done
	PhaseDone                         // the session is over (Send is returning)
)

func (p SendPhase) String() string {
	switch p {
	case PhaseRegistering:
		return "registering"
	case PhaseSending:
		return "sending"
	case PhaseRepairing:
		return "repairing"
	case PhaseDone:
		return "done"
	}
	return "unknown"
}

// SendProgress is a snapshot of a session for a progress display.
type SendProgress struct {
	Phase SendPhase
	// Bytes is the datagram bytes sent so far (Report.Bytes): it only grows.
	Bytes int64
	// DataBytes is the image bytes (uncompressed) of the chunks the first
	// pass sends, known once registration closes; DataQueued is how many
	// of them have been cut into packets and queued for the wire so far.
	DataBytes, DataQueued int64
	// Hosts is the closed group's size, or the hosts registered in an
	// open group; Registered and Complete count those members.
	Hosts, Registered, Complete int
	// Slowest are the members furthest from done (at most SlowestHosts),
	// least progress first: what an operator of a large group watches.
	Slowest []HostProgress
}

// SlowestHosts bounds SendProgress.Slowest.
const SlowestHosts = 5

// HostProgress is one host's progress as the sender sees it from the
// host's feedback: its phase and an estimate of how much it holds.
type HostProgress struct {
	ID    string
	Phase string  // registering, receiving, received, staged, refused, dropped
	Done  float64 // 0 to 1: of what it lacked, how much it has (from its last NACK)
	// Needed is the image bytes of the chunks it lacked when it registered.
	Needed int64
}

// progress calls SendOptions.Progress at a phase change (or the end), or
// when progressEvery has passed since the last call.
func (s *sender) progress(now time.Time, final bool) {
	if s.opts.Progress == nil {
		return
	}
	p := s.prog
	p.Phase = s.publicPhase(final)
	if p.Phase == s.prog.Phase && !s.progAt.IsZero() && now.Sub(s.progAt) < progressEvery {
		return
	}
	p.Bytes = s.stats.Bytes
	p.Hosts, p.Registered, p.Complete = s.hosts.members()
	firstPass := 0.0
	if p.DataBytes > 0 {
		firstPass = float64(p.DataQueued) / float64(p.DataBytes)
	}
	p.Slowest = s.hosts.slowest(firstPass, s.totalSym)
	s.prog, s.progAt = p, now
	s.opts.Progress(p)
}

func (s *sender) publicPhase(final bool) SendPhase {
	switch {
	case final || s.phase == phaseDone:
		return PhaseDone
	case s.phase == phaseRegister:
		return PhaseRegistering
	case s.round == 0:
		return PhaseSending
	}
	return PhaseRepairing
}

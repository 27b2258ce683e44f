package multicast

import "time"

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
}

// progress calls the Progress hook at a phase change, when final, or
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
	p.Bytes, p.Hosts, p.Registered, p.Complete = s.stats.Bytes, 0, 0, 0
	for _, h := range s.hosts {
		if h.member {
			p.Hosts++
			if h.registered || h.complete {
				p.Registered++
			}
			if h.complete {
				p.Complete++
			}
		}
	}
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

// lacking marks the non-zero chunks that some registered host still needs:
// it counts each chunk's holders over the hosts' held ranges (ascending
// and disjoint, so in work bounded by hosts × ranges + chunks) and keeps
// those not held by all. A host that already completed needs nothing.
func (s *sender) lacking() []bool {
	n := uint64(len(s.opts.Manifest.Chunks))
	holders := make([]int32, n+1) // a difference array: +1 at a range's start, -1 past its end
	hosts := int32(0)
	for _, h := range s.hosts {
		if !h.counts() {
			continue
		}
		hosts++
		for _, rg := range h.have {
			first := min(uint64(rg.First), n)
			end := min(first+uint64(rg.Count), n)
			holders[first]++
			holders[end]--
		}
	}
	lack := make([]bool, n)
	sum := int32(0)
	for i := range lack {
		sum += holders[i]
		lack[i] = sum < hosts
	}
	return lack
}

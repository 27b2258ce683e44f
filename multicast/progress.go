package multicast

import (
	"cmp"
	"slices"
	"strings"
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
	p.Slowest = s.slowest(p)
	s.prog, s.progAt = p, now
	s.opts.Progress(p)
}

// slowest picks the members furthest from done, for the progress display.
func (s *sender) slowest(p SendProgress) []HostProgress {
	firstPass := 0.0
	if p.DataBytes > 0 {
		firstPass = float64(p.DataQueued) / float64(p.DataBytes)
	}
	var out []HostProgress
	for _, h := range s.hosts {
		if !h.member || h.complete || h.keyErr != "" || h.refused != nil && h.refused.Code != RefuseBusy {
			continue
		}
		hp := HostProgress{ID: h.id, Phase: "registering", Needed: h.needed}
		switch {
		case h.failed != "" || h.dropped != "":
			hp.Phase = "dropped"
		case h.registered:
			hp.Phase, hp.Done = "receiving", firstPass
			if h.best >= 0 && s.totalSym > 0 {
				hp.Done = min(firstPass, max(0, 1-float64(h.need)/float64(s.totalSym)))
			}
		}
		out = append(out, hp)
	}
	slices.SortFunc(out, func(a, b HostProgress) int {
		return cmp.Or(cmp.Compare(a.Done, b.Done), strings.Compare(a.ID, b.ID))
	})
	return out[:min(len(out), SlowestHosts)]
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

// hostNeeds records, for each registered member, the image bytes of the
// chunks it lacked when the transfer began (what crossed the wire for it).
func (s *sender) hostNeeds() {
	m := s.opts.Manifest
	var total int64
	for i, c := range m.Chunks {
		if !c.Zero {
			_, n := m.ChunkRange(i)
			total += int64(n)
		}
	}
	for _, h := range s.hosts {
		if !h.registered {
			continue
		}
		h.needed = total
		for _, rg := range h.have {
			for c := rg.First; c < rg.First+rg.Count && int(c) < len(m.Chunks); c++ {
				if !m.Chunks[c].Zero {
					_, n := m.ChunkRange(int(c))
					h.needed -= int64(n)
				}
			}
		}
	}
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

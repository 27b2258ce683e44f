package multicast

import (
	"time"

	"github.com/loopcast/loopcast/image"
)

// HostState is how a host ended a session.
type HostState int

const (
	HostComplete HostState = iota // verified the image and said so
	HostFailed                    // reported it gave up (Reason is its own)
	HostDropped                   // registered, then went silent or the session ended
	HostMissing                   // never registered
	HostRefused                   // refused the session (Cause, Reason), or its key was refused
)

func (s HostState) String() string {
	switch s {
	case HostComplete:
		return "complete"
	case HostFailed:
		return "failed"
	case HostDropped:
		return "dropped"
	case HostMissing:
		return "missing"
	case HostRefused:
		return "refused"
	}
	return "unknown"
}

// HostReport is one host's line in a session report.
type HostReport struct {
	ID     string
	Addr   string
	Member bool // in the closed group's list, or registered in an open group
	State  HostState
	Reason string
	// Cause is a refusal's cause: a RefuseCode's name (no-space,
	// untrusted-key, version, busy, older-than-current, other), or
	// host-key when the sender refused the host's key.
	Cause string `json:",omitempty"`
	// Staged: the host staged the image as soon as it had it (its
	// COMPLETE said so); StageError: it tried and failed, and why.
	Staged     bool
	StageError string `json:",omitempty"`
	// Done is when its COMPLETE arrived (staged, for an agent), from the
	// session's start.
	Done time.Duration `json:",omitempty"`
	// StageTime is how long its staging took, as its COMPLETE said.
	StageTime time.Duration `json:",omitempty"`
	// Needed is the image bytes of the chunks it lacked when the transfer
	// began: what it received (the rest it held).
	Needed int64 `json:",omitempty"`
	// Path is how the host received the session: PathMulticast, or
	// PathUnicast (it heard no multicast and took the TCP connection);
	// UnicastBytes is what the sender wrote to that connection (handed to
	// the kernel: a connection that broke may not have delivered it all).
	Path         string
	UnicastBytes int64 `json:",omitempty"`
	// Via, with PathRelay, is the relay the host received the session
	// from, on its own subnet; Addr is then the host's own address as
	// the relay reports it.
	Via string `json:",omitempty"`
	// Feedback counts the NACK packets the sender took from the host by
	// UDP (a relayed host's go to its relay).
	Feedback int64 `json:",omitempty"`
}

// Paths a host's session can take.
const (
	PathMulticast = "multicast"
	PathUnicast   = "unicast"
	PathRelay     = "relay" // from a relay on the host's subnet (HostReport.Via)
)

// RelayReport is what a relay said of the session it ran on its subnet,
// in its last RELAY-STATUS.
type RelayReport struct {
	ID          string
	Hosts       int   // hosts that registered through it
	DownBytes   int64 // datagram bytes it sent on its subnet
	DownPackets int64
	Rounds      int // its repair rounds
}

// Report summarises a sender's session.
type Report struct {
	Session       uint32
	ReleaseID     image.ID
	Hosts         []HostReport // sorted by id
	Duration      time.Duration
	Registration  time.Duration // from the start until the transfer began (hosts registered)
	Rounds        int           // repair rounds (STATUS requests)
	Packets       int64         // datagrams sent
	Bytes         int64         // datagram bytes sent
	PayloadBytes  int64         // compressed chunk bytes in the first pass (one copy)
	DataPackets   int64         // DATA symbols, first pass and whole-chunk resends
	RepairPackets int64         // REPAIR symbols, proactive and on request
	Proactive     int64         // of those, proactive (sent with the data)
	Probes        int           // loss probes sent during the first pass (AutoFEC, or a paced rate to adapt)
	LossPermille  int           // the worst loss any host reported, per mille
	Rate          int64         // bit/s the first pass ended at: the slowest host's delivery, within SendOptions.Rate
	ChunksTotal   int           // chunks in the manifest
	ChunksZero    int           // all-zero chunks: never sent, holes at the hosts
	ChunksReused  int           // non-zero chunks every registered host held: left out of the first pass
	ChunksSent    int           // distinct chunks whose data went on the wire (first pass and whole resends)
	DeltaChunks   int           // chunks sent in the first pass as deltas against the hosts' base image
	Ignored       int64         // received packets malformed, foreign or out of place
	UnicastBytes  int64         // bytes sent over unicast connections (hosts that heard no multicast)
	// Feedback counts the NACK packets received by UDP (answers to repair
	// rounds and to loss probes; a unicast connection's answers are not
	// counted: TCP paces them); FeedbackMax is the most that answered one
	// round or probe: what the sender's socket must absorb at once.
	Feedback    int64
	FeedbackMax int
	// Relays lists the hosts that relayed the session to their subnets
	// (SendOptions.Relays), by id.
	Relays []RelayReport `json:",omitempty"`
}

// Completed counts member hosts that completed, and members in all.
func (r *Report) Completed() (done, members int) {
	for _, h := range r.Hosts {
		if h.Member {
			members++
			if h.State == HostComplete {
				done++
			}
		}
	}
	return done, members
}

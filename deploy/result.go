package deploy

import (
	"encoding/json"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
)

// Phases a host can reach, in order.
const (
	PhaseNone        = "none"        // did not complete the transfer
	PhaseRefused     = "refused"     // said why it will not take the release (Cause), or its key was refused
	PhaseTransferred = "transferred" // has the verified image
	PhaseStaged      = "staged"      // mounted it and can switch
	PhaseActive      = "active"      // serves it
)

// Outcome of a deploy as a whole.
type Outcome int

const (
	OutcomeNone    Outcome = iota // none switched (the zero value: nothing is claimed)
	OutcomePartial                // some do
	OutcomeAll                    // every host serves the release
)

func (o Outcome) String() string {
	return [...]string{"none", "partial", "all"}[o]
}

// HostResult is one host's line in the report.
type HostResult struct {
	ID      string   `json:"id"`
	Addr    string   `json:"addr,omitempty"`
	Phase   string   `json:"phase"`
	Current image.ID `json:"current,omitzero"` // the release it serves after the deploy
	Error   string   `json:"error,omitempty"`
	// Cause names why a refusing host refused: no-space, untrusted-key,
	// version, busy, older-than-current, other, or host-key (its key was
	// refused by this sender).
	Cause string `json:"cause,omitempty"`
	// Done is when it had the release (verified and staged), from the
	// start of the transfer's registration.
	Done time.Duration `json:"done_ns,omitempty"`
	// StageTime is how long it took to stage the release, as it said.
	StageTime time.Duration `json:"stage_ns,omitempty"`
	// Needed is the image bytes it lacked (what crossed the wire for it;
	// the rest it held); Path is how they reached it.
	Needed int64  `json:"needed_bytes"`
	Path   string `json:"path,omitempty"`
	// Via, with Path relay, is the relay it received the release from on
	// its own subnet (Addr is then its own address, as the relay saw it).
	Via string `json:"via,omitempty"`
}

// Result is the report of a deploy. Each fact is kept once: the
// transfer's figures are its report's, the outcome is read from the
// hosts' phases.
type Result struct {
	ReleaseID image.ID
	DeployID  uint64
	// Hosts has one line per host of the deploy, sorted by id; the deploy
	// finds a host's line by binary search (host), so there is no second
	// index to keep in step.
	Hosts []HostResult
	// Transfer is the transfer's report: bytes on the wire (multicast and
	// unicast), chunks sent, reused and sent as deltas, how long the
	// registration and the transfer took. A Result a deploy returns
	// always has one.
	Transfer *multicast.Report
	// BuildTime is how long the image took to build (Options.BuildTime);
	// StageTime and SwitchTime how long those phases took.
	BuildTime  time.Duration
	StageTime  time.Duration
	SwitchTime time.Duration
	Switched   bool // an ACTIVATE went out
	// Halted says why a rollout stopped and switched its hosts back; ""
	// when it did not.
	Halted string
	// NotBack names the hosts a halted rollout could not confirm back on
	// their earlier release: they may serve this one.
	NotBack []string
}

// Outcome says how the deploy ended: all, some or none of its hosts
// active.
func (r *Result) Outcome() Outcome {
	o, _ := OutcomeOf(r.Hosts)
	return o
}

// RegisterTime is how long hosts took to register (or --wait passed).
func (r *Result) RegisterTime() time.Duration { return r.TransferReport().Registration }

// TransferTime is the transfer from the end of the registration until
// every host completed (and staged).
func (r *Result) TransferTime() time.Duration {
	t := r.TransferReport()
	return t.Duration - t.Registration
}

// TransferReport is Transfer, or an empty report for a Result made
// without one (a test's, a dry run's): what tables and metrics read.
func (r *Result) TransferReport() *multicast.Report {
	if r.Transfer == nil {
		return &multicast.Report{}
	}
	return r.Transfer
}

// resultJSON is the report `sender deploy --json` prints: its names are
// read by scripts, so they stay.
type resultJSON struct {
	ReleaseID    image.ID      `json:"release"`
	DeployID     uint64        `json:"deploy_id"`
	Hosts        []HostResult  `json:"hosts"`
	WireBytes    int64         `json:"wire_bytes"`    // multicast datagrams, and the unicast acknowledgements
	UnicastBytes int64         `json:"unicast_bytes"` // over TCP, to hosts that heard no multicast
	ChunksTotal  int           `json:"chunks_total"`
	ChunksZero   int           `json:"chunks_zero"`
	ChunksReused int           `json:"chunks_reused"` // held by every host: not sent
	ChunksSent   int           `json:"chunks_sent"`
	ChunksDelta  int           `json:"chunks_delta"` // sent as deltas against the hosts' base image
	BuildTime    time.Duration `json:"build_ns"`
	RegisterTime time.Duration `json:"register_ns"`
	TransferTime time.Duration `json:"transfer_ns"`
	StageTime    time.Duration `json:"stage_ns"`
	SwitchTime   time.Duration `json:"switch_ns"`
	Switched     bool          `json:"switched"`
	Halted       string        `json:"halted,omitempty"`
	NotBack      []string      `json:"not_back,omitempty"`
	Outcome      string        `json:"outcome"`
}

// MarshalJSON writes the report with the transfer's figures and the
// outcome spelled out.
func (r Result) MarshalJSON() ([]byte, error) {
	t := r.TransferReport()
	return json.Marshal(resultJSON{
		ReleaseID: r.ReleaseID, DeployID: r.DeployID, Hosts: r.Hosts,
		WireBytes: t.Bytes, UnicastBytes: t.UnicastBytes, ChunksTotal: t.ChunksTotal, ChunksZero: t.ChunksZero,
		ChunksReused: t.ChunksReused, ChunksSent: t.ChunksSent, ChunksDelta: t.DeltaChunks,
		BuildTime: r.BuildTime, RegisterTime: r.RegisterTime(), TransferTime: r.TransferTime(),
		StageTime: r.StageTime, SwitchTime: r.SwitchTime, Switched: r.Switched, Halted: r.Halted, NotBack: r.NotBack,
		Outcome: r.Outcome().String(),
	})
}

// host is the line of host id (nil when it is not in the deploy).
func (r *Result) host(id string) *HostResult {
	i, ok := slices.BinarySearchFunc(r.Hosts, id, func(h HostResult, id string) int { return strings.Compare(h.ID, id) })
	if !ok {
		return nil
	}
	return &r.Hosts[i]
}

// fromTransfer records the transfer's report and a line for each member
// host, and returns those that hold the verified image: staged ones (their
// COMPLETE said so: no need to ask), and those whose staging is still to
// be asked about. A host whose COMPLETE said staging failed is neither.
func (r *Result) fromTransfer(rep *multicast.Report) (staged, ask []string) {
	r.Transfer = rep
	for _, h := range rep.Hosts {
		if h.Member {
			r.Hosts = append(r.Hosts, transferLine(h))
		}
	}
	slices.SortFunc(r.Hosts, func(a, b HostResult) int { return strings.Compare(a.ID, b.ID) })
	for _, h := range r.Hosts {
		switch {
		case h.Phase == PhaseStaged:
			staged = append(staged, h.ID)
		case h.Phase == PhaseTransferred && h.Error == "":
			ask = append(ask, h.ID)
		}
	}
	return staged, ask
}

// transferLine is a host's line as its transfer left it.
func transferLine(h multicast.HostReport) HostResult {
	hr := HostResult{ID: h.ID, Addr: h.Addr, Phase: PhaseNone, Done: h.Done, StageTime: h.StageTime, Needed: h.Needed}
	if h.State == multicast.HostComplete {
		hr.Path, hr.Via = h.Path, h.Via
	}
	switch {
	case h.State == multicast.HostComplete && h.Staged:
		hr.Phase = PhaseStaged
	case h.State == multicast.HostComplete && h.StageError != "":
		hr.Phase, hr.Error = PhaseTransferred, "staging failed: "+h.StageError
	case h.State == multicast.HostComplete:
		hr.Phase = PhaseTransferred
	case h.State == multicast.HostRefused:
		hr.Phase, hr.Cause = PhaseRefused, h.Cause
		hr.Error = refusalText(h)
	default:
		hr.Error = "transfer " + h.State.String()
		if h.Reason != "" {
			hr.Error += ": " + h.Reason
		}
	}
	return hr
}

// refusalText says, in words an operator acts on, why a host refused.
func refusalText(h multicast.HostReport) string {
	switch h.Cause {
	case "no-space":
		return "refused: not enough disk " + h.Reason
	case "untrusted-key":
		return "refused: it does not trust the key this release is signed with: " + h.Reason
	case "version":
		return "refused: another loopcast version: " + h.Reason
	case "host-key":
		return "refused by this sender: " + h.Reason
	}
	return "refused (" + h.Cause + "): " + h.Reason
}

// addrs maps each host to the address it registered from, so replies to
// commands are only taken from there: a relayed host's own, as its relay
// reported it, or else the one known (an inventory's).
func (r *Result) addrs(known map[string]string) map[string]string {
	m := map[string]string{}
	for _, h := range r.Hosts {
		if host, _, err := net.SplitHostPort(h.Addr); err == nil {
			m[h.ID] = host
		} else if ip := known[h.ID]; h.Via != "" && ip != "" {
			m[h.ID] = ip
		}
	}
	return m
}

// OutcomeOf says how a deploy or rollback ended from its hosts' phases:
// all, some or none of them active; it also returns how many are.
func OutcomeOf(hosts []HostResult) (Outcome, int) {
	active := 0
	for _, h := range hosts {
		if h.Phase == PhaseActive {
			active++
		}
	}
	switch {
	case len(hosts) > 0 && active == len(hosts):
		return OutcomeAll, active
	case active > 0:
		return OutcomePartial, active
	}
	return OutcomeNone, active
}

func hostIDs(hosts []HostResult) []string {
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.ID
	}
	return ids
}

package deploy

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
)

// Fleet addresses the agents of one group for status and rollback.
type Fleet struct {
	Group net.Addr // a *net.UDPAddr, unless Control is set
	Iface string
	TTL   int
	Hosts []string // nil: whoever answers within the timeout
	Key   ed25519.PrivateKey
	Audit string // the sender's audit log: deploy history for rollback
	// PointerFile, when set, records the group's fleet pointer: a rollback
	// that switched hosts publishes a pointer to its target.
	PointerFile string
	GroupSize   int       // the hosts the sender knows in the group, for the pointer
	Cmd         Commander // Timeout, HostKeys, Unicast and Logger are used; the rest is set by open
	// Control and ControlTo, when set, are the conn commands go out on
	// (to ControlTo) instead of a socket dialled to the group's control
	// port: tests pass an in-process network's.
	Control   ControlConn
	ControlTo net.Addr
}

// open dials the control socket, or takes f.Control.
func (f *Fleet) open() (*Commander, func(), error) {
	c := f.Cmd
	c.Group, c.Key = f.Group.String(), f.Key
	if f.Control != nil {
		c.Conn, c.To = f.Control, f.ControlTo
		return &c, func() {}, nil
	}
	g, err := f.udpGroup()
	if err != nil {
		return nil, nil, err
	}
	conn, err := multicast.DialGroup(control.Addr(g), f.Iface, f.TTL)
	if err != nil {
		return nil, nil, err
	}
	c.Conn, c.To = conn, control.Addr(g)
	return &c, func() { conn.Close() }, nil
}

// udpGroup is the group as a UDP address, for the sockets dialled to it.
func (f *Fleet) udpGroup() (*net.UDPAddr, error) {
	g, ok := f.Group.(*net.UDPAddr)
	if !ok {
		return nil, fmt.Errorf("deploy: group %v is not a UDP address", f.Group)
	}
	return g, nil
}

// probeSends is how many times Probe multicasts its probe, probeGap apart.
const (
	probeSends = 3
	probeGap   = 100 * time.Millisecond
)

// Probe multicasts a doctor probe carrying nonce to the group's data port
// (not the control port commands use), a few times: each agent that hears
// it reports the nonce in its next STATUS reply (HostStatus.Probe).
func (f *Fleet) Probe(nonce [16]byte) error {
	g, err := f.udpGroup()
	if err != nil {
		return err
	}
	conn, err := multicast.DialGroup(g, f.Iface, f.TTL)
	if err != nil {
		return err
	}
	defer conn.Close()
	pkt := multicast.AppendProbe(nil, nonce)
	for i := range probeSends {
		if i > 0 {
			time.Sleep(probeGap)
		}
		if _, err := conn.WriteTo(pkt, f.Group); err != nil {
			return fmt.Errorf("deploy: probe %v: %w", f.Group, err)
		}
	}
	return nil
}

// HostStatus is one host's answer to STATUS (Error set when none came).
// JSON writes the zero id (none) as "".
type HostStatus struct {
	ID       string     `json:"id"`
	Current  image.ID   `json:"current"`
	Previous image.ID   `json:"previous"`
	Staged   []image.ID `json:"staged"`
	Free     uint64     `json:"free_bytes"`
	Version  string     `json:"agent_version"`
	LastErr  string     `json:"last_error,omitempty"`
	// LastRefusal is the last session the host refused, and why.
	LastRefusal string `json:"last_refusal,omitempty"`
	Error       string `json:"error,omitempty"`
	OffMajor    bool   `json:"off_majority,omitempty"` // not on the release most hosts serve
	// Probe is the last doctor probe the host heard on the group's data
	// port (Fleet.Probe); MTU its group interface's (0: unknown); Problems
	// what its agent finds wrong with itself.
	Probe    [16]byte `json:"-"`
	MTU      uint16   `json:"mtu,omitempty"`
	Problems string   `json:"problems,omitempty"`
	// Behind is how long the host has not served the fleet pointer's
	// release: since the pointer was issued (MarkLag). Zero when in sync.
	Behind time.Duration `json:"behind_ns,omitempty"`
}

// MarkLag sets each answering host's lag against the fleet pointer ptr at
// now: a host not on the pointer's release is behind since the pointer
// was issued.
func MarkLag(st []HostStatus, ptr *PointerRecord, now time.Time) {
	if ptr == nil {
		return
	}
	for i := range st {
		if st[i].Error == "" && st[i].Current != ptr.Release {
			st[i].Behind = max(now.Sub(ptr.Issued), time.Nanosecond)
		}
	}
}

// Status asks every host for its state. Hosts not on the release that most
// hosts serve are flagged.
func (f *Fleet) Status(ctx context.Context) ([]HostStatus, error) {
	c, done, err := f.open()
	if err != nil {
		return nil, err
	}
	defer done()
	t, err := c.Do(ctx, &control.StatusRequest{Envelope: c.NewEnvelope(newDeployID(), nil)}, f.Hosts)
	if err != nil || t == nil {
		return nil, err
	}
	var out []HostStatus
	for h, r := range t.Replies() {
		out = append(out, statusOf(h, r))
	}
	refused := t.Refused()
	for _, h := range t.Missing() {
		why := "no answer"
		if r, ok := refused[h]; ok {
			why = "no verified answer: " + r
		}
		out = append(out, HostStatus{ID: h, Error: why})
	}
	if f.Hosts == nil { // an open group: say who answered unverified
		for h, r := range refused {
			out = append(out, HostStatus{ID: h, Error: "not counted: " + r})
		}
	}
	slices.SortFunc(out, func(a, b HostStatus) int { return strings.Compare(a.ID, b.ID) })
	flagOffMajority(out)
	return out, nil
}

func statusOf(h string, r *control.Reply) HostStatus {
	s := HostStatus{ID: h, Current: r.Current}
	if r.Outcome != control.OutcomeOK || r.Status == nil {
		s.Error = fmt.Sprintf("%s: %s", r.Outcome, r.Error)
		return s
	}
	s.Previous, s.Staged, s.Free = r.Status.Previous, r.Status.Staged, r.Status.FreeBytes
	s.Version, s.LastErr, s.LastRefusal = r.Status.AgentVersion, r.Status.LastError, r.Status.LastRefusal
	s.Probe, s.MTU, s.Problems = r.Status.Probe, r.Status.MTU, r.Status.Problems
	return s
}

// Majority returns the release most answering hosts serve (the zero id
// when none serves any); a tie goes to the id that sorts first.
func Majority(st []HostStatus) image.ID {
	count := map[image.ID]int{}
	var best image.ID
	for _, s := range st {
		if s.Error != "" || s.Current.IsZero() {
			continue
		}
		count[s.Current]++
		if c := count[s.Current]; c > count[best] || c == count[best] && s.Current.Compare(best) < 0 {
			best = s.Current
		}
	}
	return best
}

func flagOffMajority(st []HostStatus) {
	m := Majority(st)
	for i := range st {
		st[i].OffMajor = st[i].Error == "" && st[i].Current != m
	}
}

// Rollback switches the hosts to release to. With to zero it asks the
// hosts what they serve and goes to the release this sender deployed
// before the majority's current one (history: the audit log at
// f.Audit), so a second rollback goes further back, never forward again.
// It returns the target and each host's outcome.
func (f *Fleet) Rollback(ctx context.Context, to image.ID) (image.ID, []HostResult, error) {
	if to.IsZero() {
		st, err := f.Status(ctx)
		if err != nil {
			return image.ID{}, nil, err
		}
		cur := Majority(st)
		if cur.IsZero() {
			return image.ID{}, nil, fmt.Errorf("deploy: no rollback target: no host reports a current release")
		}
		if to, err = PreviousRelease(f.Audit, f.Group.String(), cur); err != nil {
			return image.ID{}, nil, fmt.Errorf("%w; name the target with --to (the hosts' previous release is %q)", err, majorityPrevious(st).Text())
		}
	}
	c, done, err := f.open()
	if err != nil {
		return to, nil, err
	}
	defer done()
	cmd := &control.Rollback{Envelope: c.NewEnvelope(newDeployID(), f.Hosts), To: to}
	t, err := c.Do(ctx, cmd, f.Hosts)
	if t == nil {
		return to, nil, err
	}
	var out []HostResult
	for h, r := range t.Replies() {
		hr := HostResult{ID: h, Current: r.Current, Phase: PhaseActive}
		if r.Outcome != control.OutcomeOK {
			hr.Phase, hr.Error = PhaseNone, fmt.Sprintf("%s: %s", r.Outcome, r.Error)
		}
		out = append(out, hr)
	}
	for _, h := range t.Missing() {
		out = append(out, HostResult{ID: h, Phase: PhaseNone, Error: "no answer to ROLLBACK"})
	}
	slices.SortFunc(out, func(a, b HostResult) int { return strings.Compare(a.ID, b.ID) })
	if o, _ := OutcomeOf(out); o != OutcomeNone && f.PointerFile != "" {
		// the sender may not hold the target's manifest: hosts check its id
		// and signature instead of a digest
		if _, perr := Publish(c, f.PointerFile, to, [32]byte{}, hostIDs(out), f.GroupSize, true, true); perr != nil {
			c.log().Warn("rollback: the fleet pointer was not published", "err", perr)
		}
	}
	return to, out, err
}

// majorityPrevious is the previous release of the hosts on the majority
// release, the most common one among them.
func majorityPrevious(st []HostStatus) image.ID {
	m := Majority(st)
	var prev []HostStatus
	for _, s := range st {
		if s.Error == "" && s.Current == m && !s.Previous.IsZero() {
			prev = append(prev, HostStatus{Current: s.Previous})
		}
	}
	return Majority(prev)
}

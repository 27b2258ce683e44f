package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
)

// Staging: an agent stages the image as soon as it has it (nothing to
// hash: every chunk was verified on arrival) and its COMPLETE says how that
// went, so a deploy asks no agent for STATUS in the usual case. Hosts whose
// COMPLETE did not say (a receiver that does not stage) are polled for
// STATUS until they report the release staged, for at most
// DefaultStageTimeout.
const (
	DefaultStageTimeout = 2 * time.Minute
	stagePoll           = 500 * time.Millisecond
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

// Options configure a deploy.
type Options struct {
	Group       *net.UDPAddr // agents' data group; control is on port+1
	Iface       string
	TTL         int
	Rate        int64    // bit/s; 0 unpaced
	Hosts       []string // closed group; nil: an open group (Wait / MinHosts)
	Wait        time.Duration
	MinHosts    int
	FECOverhead int
	// RequirePct is the percentage of hosts (1 to 100) that must have
	// staged the release for any host to switch; 100 means all.
	RequirePct int
	Key        ed25519.PrivateKey
	// HostKeys, if set, accepts or refuses each host's key (a
	// hostkey.Pins check) in the transfer and in every command's replies.
	HostKeys  func(host string, key ed25519.PublicKey) error
	Encrypt   bool // seal the chunks: only the hosts the sender accepts can read them
	ImagePath string
	Manifest  *image.Manifest // signed with Key
	// The pack beside ImagePath is what is sent: made at build (with delta
	// frames against the image the build was based on), or made here when
	// missing.
	// BuildTime is how long building the image took, if the caller built
	// it, for the report.
	BuildTime      time.Duration
	StageTimeout   time.Duration
	CommandTimeout time.Duration
	HostTimeout    time.Duration // drop a host silent this long in the transfer (multicast.DefaultHostTimeout when zero)
	Logf           func(format string, args ...any)
	Warnf          func(format string, args ...any) // what the operator must see (refusals); Logf when nil
	// Detailf, if set, hears the session's detail (hosts registering,
	// repair rounds, command retransmissions) instead of Logf.
	Detailf func(format string, args ...any)
	// Progress, when set, hears of the deploy's progress: the transfer's
	// (as multicast reports it), then staging and switching.
	Progress func(Progress)
	// Rollout switches the staged hosts in health-gated waves; the zero
	// value switches them all at once.
	Rollout Rollout
	// HostAddrs maps listed hosts to an IP known for them: a host that
	// does not register by multicast is announced to there, and takes the
	// session over TCP, and every command reaches it by unicast too.
	HostAddrs map[string]string
	// NoUnicast offers no unicast path: hosts that hear no multicast are
	// left out.
	NoUnicast bool
	// PointerFile, when set, is where the group's fleet pointer is
	// recorded: a deploy that switched hosts (and was not halted) ends by
	// publishing a pointer to its release, so hosts that missed it catch
	// up on their own.
	PointerFile string
	// CertFile, with PointerFile, records the host certificates issued
	// with the pointer, one for every host in the deploy whose key
	// HostPub knows (its pinned key): peers serve catching-up hosts only
	// on a certificate.
	CertFile string
	HostPub  func(host string) (ed25519.PublicKey, bool)
	// GroupSize is how many hosts the sender knows in the group (its
	// pinned keys), for the pointer; the deploy's hosts when fewer.
	GroupSize int
}

// Progress is a snapshot of a running deploy.
type Progress struct {
	Phase    string                 // "transfer", "stage", "switch"
	Transfer multicast.SendProgress // during the transfer
	Staged   int                    // hosts that staged the release so far
	Hosts    int                    // hosts in the deploy
}

// HostResult is one host's line in the report.
type HostResult struct {
	ID      string `json:"id"`
	Addr    string `json:"addr,omitempty"`
	Phase   string `json:"phase"`
	Current string `json:"current,omitempty"` // the release it serves after the deploy
	Error   string `json:"error,omitempty"`
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
}

// Result is the report of a deploy.
type Result struct {
	ReleaseID    string            `json:"release"`
	DeployID     uint64            `json:"deploy_id"`
	Hosts        []HostResult      `json:"hosts"`
	Transfer     *multicast.Report `json:"-"`
	WireBytes    int64             `json:"wire_bytes"`    // multicast datagrams, and the unicast acknowledgements
	UnicastBytes int64             `json:"unicast_bytes"` // over TCP, to hosts that heard no multicast
	ChunksTotal  int               `json:"chunks_total"`
	ChunksZero   int               `json:"chunks_zero"`
	ChunksReused int               `json:"chunks_reused"` // held by every host: not sent
	ChunksSent   int               `json:"chunks_sent"`
	ChunksDelta  int               `json:"chunks_delta"` // sent as deltas against the hosts' base image
	BuildTime    time.Duration     `json:"build_ns"`
	RegisterTime time.Duration     `json:"register_ns"` // until every host registered (or --wait passed)
	TransferTime time.Duration     `json:"transfer_ns"` // from then until every host completed (and staged)
	StageTime    time.Duration     `json:"stage_ns"`
	SwitchTime   time.Duration     `json:"switch_ns"`
	Switched     bool              `json:"switched"`
	// Halted says why a rollout stopped and switched its hosts back; ""
	// when it did not.
	Halted string `json:"halted,omitempty"`
	// NotBack names the hosts a halted rollout could not confirm back on
	// their earlier release: they may serve this one.
	NotBack     []string `json:"not_back,omitempty"`
	Outcome     Outcome  `json:"-"`
	OutcomeText string   `json:"outcome"`
	hosts       map[string]*HostResult
}

// Run distributes, stages and switches one release.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.RequirePct < 1 || o.RequirePct > 100 {
		return nil, fmt.Errorf("deploy: require %d%%: want 1 to 100", o.RequirePct)
	}
	res := &Result{ReleaseID: o.Manifest.ReleaseID(), DeployID: newDeployID(), hosts: map[string]*HostResult{}}
	pack, made, err := image.OpenOrMakePack(ctx, o.ImagePath, o.Manifest)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	defer pack.Close()
	if made {
		o.logf("deploy: %s had no pack: made %s%s", o.ImagePath, o.ImagePath, image.PackSuffix)
	}
	data, err := multicast.DialGroup(o.Group, o.Iface, o.TTL)
	if err != nil {
		return nil, err
	}
	defer data.Close()
	ctl, err := multicast.DialGroup(control.Addr(o.Group), o.Iface, o.TTL)
	if err != nil {
		return nil, err
	}
	defer ctl.Close()
	cmd := &Commander{Conn: ctl, To: control.Addr(o.Group), Group: o.Group.String(), Unicast: o.HostAddrs,
		Key: o.Key, Timeout: o.CommandTimeout, HostKeys: o.HostKeys, Logf: o.detail(), Warnf: o.Warnf}
	var uni net.Listener
	if !o.NoUnicast {
		if uni, err = net.Listen("tcp4", ":0"); err != nil {
			return nil, fmt.Errorf("deploy: the unicast path's TCP port (--no-unicast goes without it): %w", err)
		}
		defer uni.Close()
	}

	if err := preflight(ctx, cmd, o.Hosts); err != nil {
		return nil, err
	}
	start := time.Now()
	rep, err := multicast.Send(ctx, data, multicast.SendOptions{
		Group: o.Group, Manifest: o.Manifest, Pack: pack, BaseID: pack.BaseID, Rate: o.Rate, Hosts: o.Hosts,
		Key: o.Key, HostKeys: o.HostKeys, Encrypt: o.Encrypt,
		Wait: o.Wait, MinHosts: o.MinHosts, FECOverhead: o.FECOverhead, Logf: o.detail(), Warnf: o.Warnf,
		HostTimeout: o.HostTimeout, Unicast: uni, HostAddrs: o.dataAddrs(),
		Progress: func(p multicast.SendProgress) { o.progress(Progress{Phase: "transfer", Transfer: p}) },
	})
	res.TransferTime, res.BuildTime = time.Since(start), o.BuildTime
	if errors.Is(err, multicast.ErrAllRefused) && rep != nil {
		res.Transfer = rep
		res.fromTransfer(rep) // the report says who refused, and why
		return res.finish(), nil
	}
	if err != nil {
		return nil, err
	}
	res.RegisterTime = rep.Registration
	res.TransferTime -= rep.Registration
	res.Transfer, res.WireBytes, res.UnicastBytes = rep, rep.Bytes, rep.UnicastBytes
	res.ChunksTotal, res.ChunksZero, res.ChunksReused, res.ChunksSent = rep.ChunksTotal, rep.ChunksZero, rep.ChunksReused, rep.ChunksSent
	res.ChunksDelta = rep.DeltaChunks
	staged, ask := res.fromTransfer(rep)
	cmd.Addrs = res.addrs()
	start = time.Now()
	o.progress(Progress{Phase: "stage", Hosts: len(res.hosts), Staged: len(staged)})
	more, err := waitStaged(ctx, cmd, res, ask, o.stageTimeout())
	staged = append(staged, more...)
	res.StageTime = time.Since(start)
	if err != nil {
		return res.finish(), err
	}
	if err := ctx.Err(); err != nil { // nothing switched yet: stop here
		return res.finish(), err
	}
	members := len(res.hosts)
	need := (o.RequirePct*members + 99) / 100 // ceiling, in integers
	if len(staged) == 0 || len(staged) < need {
		o.logf("deploy: %d of %d hosts staged %s, %d required: switching none", len(staged), members, res.ReleaseID, need)
		return res.finish(), nil
	}
	start = time.Now()
	o.progress(Progress{Phase: "switch", Staged: len(staged), Hosts: members})
	// Once ACTIVATE is on the wire, finish gathering (and retransmitting to)
	// every staged host even if interrupted: stopping halfway would leave
	// the fleet split for no reason.
	if o.Rollout.staged() {
		err = o.roll(ctx, cmd, res, staged)
	} else {
		err = activate(context.WithoutCancel(ctx), cmd, res, staged)
	}
	res.SwitchTime = time.Since(start)
	res.finish()
	if o.PointerFile != "" && res.Outcome != OutcomeNone && res.Halted == "" {
		digest, derr := o.Manifest.Digest()
		if derr == nil {
			_, derr = Publish(cmd, o.PointerFile, res.ReleaseID, digest, hostIDs(res.Hosts), o.GroupSize, false, o.Encrypt)
		}
		if derr != nil {
			o.warnf("deploy: the fleet pointer was not published: %v (hosts that missed the deploy will not catch up on their own)", derr)
		} else if o.CertFile != "" && o.HostPub != nil {
			n, cerr := IssueCerts(cmd, o.CertFile, hostIDs(res.Hosts), o.HostPub)
			o.logf("deploy: %d host certificates issued", n)
			if cerr != nil {
				o.warnf("deploy: host certificates: %v (a host without one is not served by its peers)", cerr)
			}
		}
	}
	return res, err
}

func hostIDs(hosts []HostResult) []string {
	ids := make([]string, len(hosts))
	for i, h := range hosts {
		ids[i] = h.ID
	}
	return ids
}

// dataAddrs gives the hosts' known IPs at the group's port, for the
// session's unicast ANNOUNCE.
func (o *Options) dataAddrs() map[string]net.Addr {
	if o.NoUnicast {
		return nil
	}
	return multicast.UnicastAddrs(o.HostAddrs, o.Group.Port)
}

func (o *Options) stageTimeout() time.Duration {
	if o.StageTimeout == 0 {
		return DefaultStageTimeout
	}
	return o.StageTimeout
}

func (o *Options) progress(p Progress) {
	if o.Progress != nil {
		o.Progress(p)
	}
}

func (o *Options) detail() func(string, ...any) {
	if o.Detailf != nil {
		return o.Detailf
	}
	return o.Logf
}

func (o *Options) logf(format string, args ...any) {
	if o.Logf != nil {
		o.Logf(format, args...)
	}
}

func newDeployID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// fromTransfer records each member host's transfer and returns those that
// hold the verified image: staged ones (their COMPLETE said so: no need to
// ask), and those whose staging is still to be asked about. A host whose
// COMPLETE said staging failed is neither.
func (r *Result) fromTransfer(rep *multicast.Report) (staged, ask []string) {
	for _, h := range rep.Hosts {
		if !h.Member {
			continue
		}
		hr := &HostResult{ID: h.ID, Addr: h.Addr, Phase: PhaseNone, Done: h.Done, StageTime: h.StageTime, Needed: h.Needed}
		if h.State == multicast.HostComplete {
			hr.Path = h.Path
		}
		switch {
		case h.State == multicast.HostComplete && h.Staged:
			hr.Phase = PhaseStaged
			staged = append(staged, h.ID)
		case h.State == multicast.HostComplete && h.StageError != "":
			hr.Phase, hr.Error = PhaseTransferred, "staging failed: "+h.StageError
		case h.State == multicast.HostComplete:
			hr.Phase = PhaseTransferred
			ask = append(ask, h.ID)
		case h.State == multicast.HostRefused:
			hr.Phase, hr.Cause = PhaseRefused, h.Cause
			hr.Error = refusalText(h)
		default:
			hr.Error = "transfer " + h.State.String()
			if h.Reason != "" {
				hr.Error += ": " + h.Reason
			}
		}
		r.hosts[h.ID] = hr
	}
	return staged, ask
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

// preflightTimeout bounds the STATUS asked before shipping anything: hosts
// that are up answer in milliseconds; those that are down are the
// transfer's to report.
const preflightTimeout = 2 * time.Second

// preflight asks a closed group's hosts for STATUS before the image is
// sent, so a host that refuses the sender's commands (clock skew, a key
// it does not trust) fails the deploy now, not after a gigabyte.
func preflight(ctx context.Context, c *Commander, hosts []string) error {
	if hosts == nil {
		return nil
	}
	pc := *c
	if pc.Timeout == 0 || pc.Timeout > preflightTimeout {
		pc.Timeout = preflightTimeout
	}
	t, err := pc.Do(ctx, &control.StatusRequest{Envelope: pc.NewEnvelope(newDeployID(), hosts)}, hosts)
	if err != nil || t == nil {
		return err
	}
	var refused []string
	for h, r := range t.Replies() {
		if r.Outcome == control.OutcomeRefused {
			refused = append(refused, fmt.Sprintf("%s: %s", h, r.Error))
		}
	}
	if len(refused) > 0 {
		slices.Sort(refused)
		return fmt.Errorf("deploy: hosts refuse this sender's commands, nothing sent: %s", strings.Join(refused, "; "))
	}
	if m := t.Missing(); len(m) > 0 {
		c.logf("deploy: no STATUS answer yet from %v (down, or not trusting this key)", m)
	}
	return nil
}

// waitStaged asks the hosts for their STATUS until each reports the
// release staged (or current), or the timeout passes.
func waitStaged(ctx context.Context, c *Commander, r *Result, hosts []string, timeout time.Duration) ([]string, error) {
	var staged []string
	pending := slices.Clone(hosts)
	deadline := time.Now().Add(timeout)
	for len(pending) > 0 {
		env := c.NewEnvelope(r.DeployID, pending)
		t, err := c.Do(ctx, &control.StatusRequest{Envelope: env}, pending)
		if err != nil || t == nil {
			return staged, err
		}
		var still []string
		for _, h := range pending {
			rep := t.Replies()[h]
			switch {
			case rep != nil && rep.Outcome == control.OutcomeOK && isStaged(rep, r.ReleaseID):
				r.hosts[h].Phase = PhaseStaged
				r.hosts[h].Current = rep.Current
				staged = append(staged, h)
			case hopeless(rep, r.ReleaseID):
				r.hosts[h].Error = stageError(rep, r.ReleaseID) // no use asking again
			default:
				still = append(still, h)
				r.hosts[h].Error = stageError(rep, r.ReleaseID)
			}
		}
		pending = still
		if len(pending) == 0 || !time.Now().Before(deadline) {
			break
		}
		select {
		case <-ctx.Done():
			return staged, ctx.Err()
		case <-time.After(stagePoll):
		}
	}
	for _, h := range staged {
		r.hosts[h].Error = ""
	}
	return staged, nil
}

// isStaged: the host can switch to id: it is current, staged, or the
// mounted rollback target (a release rolled back from and deployed again).
// hopeless: the host refuses our commands, or reports that staging this
// release failed.
func hopeless(rep *control.Reply, id string) bool {
	return rep != nil && (rep.Outcome == control.OutcomeRefused ||
		rep.Status != nil && strings.Contains(rep.Status.LastError, id))
}

func isStaged(rep *control.Reply, id string) bool {
	return rep.Current == id || rep.Status != nil &&
		(slices.Contains(rep.Status.Staged, id) || rep.Status.Previous == id)
}

func stageError(rep *control.Reply, id string) string {
	switch {
	case rep == nil:
		return "no answer to STATUS"
	case rep.Outcome != control.OutcomeOK:
		return fmt.Sprintf("STATUS %s: %s", rep.Outcome, rep.Error)
	case rep.Status != nil && rep.Status.LastError != "":
		return "not staged: " + rep.Status.LastError
	}
	return "not staged yet: " + id
}

// activate switches every staged host with one ACTIVATE.
func activate(ctx context.Context, c *Commander, r *Result, staged []string) error {
	env := c.NewEnvelope(r.DeployID, staged)
	t, err := c.Do(ctx, &control.Activate{Envelope: env, Release: r.ReleaseID}, staged)
	if t == nil {
		return err
	}
	r.Switched = true
	for _, h := range staged {
		hr := r.hosts[h]
		switch rep := t.Replies()[h]; {
		case rep == nil:
			hr.Error = "no answer to ACTIVATE"
		case rep.Outcome == control.OutcomeOK:
			hr.Phase, hr.Current, hr.Error = PhaseActive, rep.Current, ""
		default:
			hr.Current, hr.Error = rep.Current, fmt.Sprintf("ACTIVATE %s: %s", rep.Outcome, rep.Error)
		}
	}
	return err
}

// addrs maps each host to the address it registered from, so replies to
// commands are only taken from there.
func (r *Result) addrs() map[string]string {
	m := map[string]string{}
	for id, h := range r.hosts {
		if host, _, err := net.SplitHostPort(h.Addr); err == nil {
			m[id] = host
		}
	}
	return m
}

// finish sorts the report and sets the outcome.
func (r *Result) finish() *Result {
	r.Hosts = r.Hosts[:0]
	for _, h := range r.hosts {
		r.Hosts = append(r.Hosts, *h)
	}
	slices.SortFunc(r.Hosts, func(a, b HostResult) int { return strings.Compare(a.ID, b.ID) })
	r.Outcome, _ = OutcomeOf(r.Hosts)
	r.OutcomeText = r.Outcome.String()
	return r
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

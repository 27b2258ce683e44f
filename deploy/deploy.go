package deploy

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
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

// Run distributes, stages and switches one release.
func Run(ctx context.Context, o Options) (*Result, error) {
	if o.RequirePct < 1 || o.RequirePct > 100 {
		return nil, fmt.Errorf("deploy: require %d%%: want 1 to 100", o.RequirePct)
	}
	res := &Result{ReleaseID: o.Manifest.ReleaseID(), DeployID: newDeployID(), BuildTime: o.BuildTime}
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
	rep, err := multicast.Send(ctx, data, multicast.SendOptions{
		Group: o.Group, Manifest: o.Manifest, Pack: pack, BaseID: pack.BaseID, Rate: o.Rate, Hosts: o.Hosts,
		Key: o.Key, HostKeys: o.HostKeys, Encrypt: o.Encrypt,
		Wait: o.Wait, MinHosts: o.MinHosts, FECOverhead: o.FECOverhead, Logf: o.detail(), Warnf: o.Warnf,
		HostTimeout: o.HostTimeout, Unicast: uni, HostAddrs: o.dataAddrs(),
		Progress: func(p multicast.SendProgress) { o.progress(Progress{Phase: "transfer", Transfer: p}) },
	})
	if errors.Is(err, multicast.ErrAllRefused) && rep != nil {
		res.fromTransfer(rep) // the report says who refused, and why
		return res, nil
	}
	if err != nil {
		return nil, err
	}
	staged, ask := res.fromTransfer(rep)
	cmd.Addrs = res.addrs()
	start := time.Now()
	o.progress(Progress{Phase: "stage", Hosts: len(res.Hosts), Staged: len(staged)})
	more, err := waitStaged(ctx, cmd, res, ask, o.stageTimeout())
	staged = append(staged, more...)
	res.StageTime = time.Since(start)
	if err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil { // nothing switched yet: stop here
		return res, err
	}
	members := len(res.Hosts)
	need := (o.RequirePct*members + 99) / 100 // ceiling, in integers
	if len(staged) == 0 || len(staged) < need {
		o.logf("deploy: %d of %d hosts staged %s, %d required: switching none", len(staged), members, res.ReleaseID, need)
		return res, nil
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
	if o.PointerFile != "" && res.Outcome() != OutcomeNone && res.Halted == "" {
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

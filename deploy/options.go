package deploy

import (
	"cmp"
	"crypto/ed25519"
	"log/slog"
	"net"
	"time"

	"github.com/loopcast/loopcast/multicast"
)

// Options configure a deploy.
type Options struct {
	// SendOptions are the transfer's. Those a deploy also uses:
	// Hosts (nil: an open group, Wait / MinHosts) are the hosts every
	// command is for; Key signs the commands too; HostKeys checks the
	// key of every command's reply too; HostAddrs (each listed host's IP
	// at the group's port) is also where commands reach a host that does
	// not answer the group; Logger hears the deploy too: at Info its own
	// lines, which the operator always sees (a pack made, waves
	// switching, nothing switched), at Warn what the operator must see
	// (refusals, dropped hosts, a pointer not published), at Debug the
	// session's detail and the commands' retransmissions. Group is the
	// Deployer's; Pack, BaseID, Unicast and Progress are set by the
	// deploy.
	multicast.SendOptions
	// RequirePct is the percentage of hosts (1 to 100) that must have
	// staged the release for any host to switch; 100 means all.
	RequirePct int
	// ImagePath is the image Manifest describes. The pack beside it is
	// what is sent: made at build (with delta frames against the image
	// the build was based on), or made here when missing.
	ImagePath string
	// BuildTime is how long building the image took, if the caller built
	// it, for the report.
	BuildTime      time.Duration
	StageTimeout   time.Duration
	CommandTimeout time.Duration
	// Watch, when set, hears of the deploy's progress: the transfer's (as
	// multicast reports it), then staging and switching.
	Watch func(Progress)
	// Rollout switches the staged hosts in health-gated waves; the zero
	// value switches them all at once.
	Rollout Rollout
	// NoPointer publishes no fleet pointer. Otherwise a deploy that
	// switched hosts (and was not halted) ends by publishing a pointer to
	// its release, so hosts that missed it catch up on their own, with a
	// host certificate for every host of the deploy whose key HostPub
	// knows (its pinned key): peers serve catching-up hosts only on one.
	NoPointer bool
	HostPub   func(host string) (ed25519.PublicKey, bool)
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

func (o *Options) stageTimeout() time.Duration {
	if o.StageTimeout == 0 {
		return DefaultStageTimeout
	}
	return o.StageTimeout
}

// hostIPs is the IP of each host in HostAddrs, where commands reach it by
// unicast.
func (o *Options) hostIPs() map[string]string {
	m := map[string]string{}
	for id, a := range o.HostAddrs {
		if ip, _, err := net.SplitHostPort(a.String()); err == nil {
			m[id] = ip
		}
	}
	return m
}

func (o *Options) watch(p Progress) {
	if o.Watch != nil {
		o.Watch(p)
	}
}

func (o *Options) log() *slog.Logger { return orDiscard(o.Logger) }

// orDiscard is l, or a logger that discards when l is nil.
func orDiscard(l *slog.Logger) *slog.Logger { return cmp.Or(l, slog.New(slog.DiscardHandler)) }

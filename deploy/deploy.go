package deploy

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

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

// run distributes, stages and switches one release over conns.
func (d *Deployer) run(ctx context.Context, conns Conns, o *Options) (*Result, error) {
	if o.RequirePct < 1 || o.RequirePct > 100 {
		return nil, fmt.Errorf("deploy: require %d%%: want 1 to 100", o.RequirePct)
	}
	pack, err := openPack(ctx, o)
	if err != nil {
		return nil, err
	}
	defer pack.Close()
	cmd := o.commander(conns)
	if err := preflight(ctx, cmd, o.Hosts); err != nil {
		return nil, err
	}
	res := &Result{ReleaseID: o.Manifest.ID(), DeployID: newDeployID(), BuildTime: o.BuildTime}
	staged, ask, err := o.transfer(ctx, conns, pack, res)
	switch {
	case errors.Is(err, multicast.ErrAllRefused) && res.Transfer != nil:
		return res, nil // the report says who refused, and why
	case err != nil:
		return nil, err
	}
	cmd.Addrs = res.addrs(cmd.Unicast)
	if staged, err = o.stage(ctx, cmd, res, staged, ask); err != nil {
		return res, err
	}
	if err := ctx.Err(); err != nil { // nothing switched yet: stop here
		return res, err
	}
	if !o.enough(res, staged) {
		return res, nil
	}
	err = o.switchHosts(ctx, cmd, res, staged)
	if res.Outcome() != OutcomeNone && res.Halted == "" && !o.NoPointer {
		d.publish(cmd, o, res)
	}
	return res, err
}

// openPack opens the pack beside the image, made now if it is missing.
func openPack(ctx context.Context, o *Options) (*image.Pack, error) {
	pack, made, err := image.OpenOrMakePack(ctx, o.ImagePath, o.Manifest)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	if made {
		o.log().Info("deploy: the image had no pack: made it", "image", o.ImagePath, "pack", o.ImagePath+image.PackSuffix)
	}
	return pack, nil
}

// commander is the deploy's: it speaks for o over conns' control conn.
func (o *Options) commander(conns Conns) *Commander {
	return &Commander{Conn: conns.Control, To: conns.ControlTo, Group: o.Group.String(), Unicast: o.hostIPs(),
		Key: o.Key, Timeout: o.CommandTimeout, HostKeys: o.HostKeys, Logger: o.Logger}
}

// transfer sends the image and records the hosts' part in res; it returns
// the hosts that staged it and those to ask about. A session every host
// refused is recorded too (the report says why), with ErrAllRefused.
func (o *Options) transfer(ctx context.Context, conns Conns, pack *image.Pack, res *Result) (staged, ask []string, err error) {
	so := o.SendOptions
	so.Pack, so.BaseID, so.Unicast = pack, pack.BaseID, conns.Unicast
	so.Progress = func(p multicast.SendProgress) { o.watch(Progress{Phase: "transfer", Transfer: p}) }
	rep, err := multicast.Send(ctx, conns.Data, so)
	if rep == nil || err != nil && !errors.Is(err, multicast.ErrAllRefused) {
		return nil, nil, err
	}
	staged, ask = res.fromTransfer(rep)
	return staged, ask, err
}

// stage waits for the hosts in ask to stage the release; it returns every
// host that did, those of staged included.
func (o *Options) stage(ctx context.Context, cmd *Commander, res *Result, staged, ask []string) ([]string, error) {
	start := time.Now()
	o.watch(Progress{Phase: "stage", Hosts: len(res.Hosts), Staged: len(staged)})
	more, err := waitStaged(ctx, cmd, res, ask, o.stageTimeout())
	res.StageTime = time.Since(start)
	return append(staged, more...), err
}

// enough reports whether enough hosts staged the release for any to switch
// (RequirePct), and says so when not.
func (o *Options) enough(res *Result, staged []string) bool {
	members := len(res.Hosts)
	need := (o.RequirePct*members + 99) / 100 // ceiling, in integers
	if len(staged) > 0 && len(staged) >= need {
		return true
	}
	o.log().Info("deploy: too few hosts staged the release: switching none", "release", res.ReleaseID, "staged", len(staged),
		"hosts", members, "required", need)
	return false
}

// switchHosts switches the staged hosts, all at once or by the rollout's
// waves. Once ACTIVATE is on the wire, it finishes gathering (and
// retransmitting to) every staged host even if interrupted: stopping
// halfway would leave the fleet split for no reason.
func (o *Options) switchHosts(ctx context.Context, cmd *Commander, res *Result, staged []string) error {
	start := time.Now()
	defer func() { res.SwitchTime = time.Since(start) }()
	o.watch(Progress{Phase: "switch", Staged: len(staged), Hosts: len(res.Hosts)})
	if o.Rollout.staged() {
		return o.roll(ctx, cmd, res, staged)
	}
	return activate(context.WithoutCancel(ctx), cmd, res, staged)
}

// publish ends a deploy that switched hosts: the fleet pointer to its
// release, then the host certificates. A failure is warned of, not
// returned: the hosts switched all the same.
func (d *Deployer) publish(cmd *Commander, o *Options, res *Result) {
	digest, err := o.Manifest.Digest()
	if err == nil {
		_, err = Publish(cmd, d.Pointer, res.ReleaseID, digest, hostIDs(res.Hosts), o.GroupSize, false, o.Encrypt)
	}
	if err != nil {
		o.log().Warn("deploy: the fleet pointer was not published: hosts that missed the deploy will not catch up on their own", "err", err)
		return
	}
	if o.HostPub == nil {
		return
	}
	n, err := IssueCerts(cmd, d.Certs, hostIDs(res.Hosts), o.HostPub)
	o.log().Info("deploy: host certificates issued", "hosts", n)
	if err != nil {
		o.log().Warn("deploy: host certificates not all issued: a host without one is not served by its peers", "err", err)
	}
}

func newDeployID() uint64 {
	var b [8]byte
	rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

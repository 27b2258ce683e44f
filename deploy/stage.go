package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
)

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
		c.log().Debug("deploy: no STATUS answer yet (down, or not trusting this key)", "hosts", m)
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
		now, still := r.tallyStaged(pending, t.Replies())
		staged, pending = append(staged, now...), still
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
		r.host(h).Error = ""
	}
	return staged, nil
}

// tallyStaged records the pending hosts' answers to STATUS: it returns
// those that staged the release, and those worth asking again.
func (r *Result) tallyStaged(pending []string, replies map[string]*control.Reply) (staged, still []string) {
	for _, h := range pending {
		hr, rep := r.host(h), replies[h]
		switch {
		case rep != nil && rep.Outcome == control.OutcomeOK && isStaged(rep, r.ReleaseID):
			hr.Phase, hr.Current = PhaseStaged, rep.Current
			staged = append(staged, h)
		case hopeless(rep, r.ReleaseID):
			hr.Error = stageError(rep, r.ReleaseID) // no use asking again
		default:
			hr.Error = stageError(rep, r.ReleaseID)
			still = append(still, h)
		}
	}
	return staged, still
}

// isStaged: the host can switch to id: it is current, staged, or the
// mounted rollback target (a release rolled back from and deployed again).
// hopeless: the host refuses our commands, or reports that staging this
// release failed.
func hopeless(rep *control.Reply, id image.ID) bool {
	return rep != nil && (rep.Outcome == control.OutcomeRefused ||
		rep.Status != nil && strings.Contains(rep.Status.LastError, id.String()))
}

func isStaged(rep *control.Reply, id image.ID) bool {
	return rep.Current == id || rep.Status != nil &&
		(slices.Contains(rep.Status.Staged, id) || rep.Status.Previous == id)
}

func stageError(rep *control.Reply, id image.ID) string {
	switch {
	case rep == nil:
		return "no answer to STATUS"
	case rep.Outcome != control.OutcomeOK:
		return fmt.Sprintf("STATUS %s: %s", rep.Outcome, rep.Error)
	case rep.Status != nil && rep.Status.LastError != "":
		return "not staged: " + rep.Status.LastError
	}
	return "not staged yet: " + id.String()
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
		hr := r.host(h)
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

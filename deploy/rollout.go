package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
)

// PhaseRolledBack is a host a halted rollout switched back: it serves the
// release it served before the deploy.
const PhaseRolledBack = "rolled back"

// Rollout shapes the switch of a staged release: a canary wave, then
// waves, each switched only when every host switched before it is healthy.
// The zero value switches every staged host at once (no probe).
type Rollout struct {
	// Canary is how many staged hosts switch first (the first by id).
	Canary int
	// Waves are cumulative shares of the staged hosts, in percent,
	// ascending, switched after the canary; every host is switched after
	// the last one.
	Waves []int
	// Soak is how long each wave serves before the next one: every host
	// switched so far is probed again at its end.
	Soak time.Duration
	// Health probes one switched host (its id and the address it
	// registered from); nil: hosts are not probed.
	Health func(ctx context.Context, host, addr string) error
}

// staged reports whether r does anything but switch every host at once.
func (r *Rollout) staged() bool { return r.Canary > 0 || len(r.Waves) > 0 || r.Health != nil }

// ParseWaves reads "10%,50%" (the % optional) into ascending percentages
// below 100.
func ParseWaves(s string) ([]int, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSuffix(strings.TrimSpace(f), "%")
		p, err := strconv.Atoi(f)
		switch {
		case err != nil:
			return nil, fmt.Errorf("wave %q: want a percentage like 10%%", f)
		case p < 1 || p > 99:
			return nil, fmt.Errorf("wave %d%%: want 1%% to 99%% (every host switches after the last wave)", p)
		case len(out) > 0 && p <= out[len(out)-1]:
			return nil, fmt.Errorf("waves %s: want ascending shares", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// waves splits the staged hosts into the rollout's waves: the canary, then
// each share of them, then the rest; empty waves are left out.
func (r *Rollout) waves(staged []string) [][]string {
	hosts := slices.Sorted(slices.Values(staged))
	var out [][]string
	done := 0
	cut := func(upTo int) {
		upTo = min(upTo, len(hosts))
		if upTo > done {
			out = append(out, hosts[done:upTo])
			done = upTo
		}
	}
	cut(r.Canary)
	for _, p := range r.Waves {
		cut((p*len(hosts) + 99) / 100)
	}
	cut(len(hosts))
	return out
}

// Probe timing: a host just switched may take a moment to serve (php-fpm
// spawning workers); a probe is tried this often, this many times.
const (
	probeTries   = 3
	probePause   = time.Second
	probeTimeout = 5 * time.Second
)

// HTTPHealth returns a probe that GETs path on port of the host's address,
// with Host vhost ("" : the address), straight (no proxy): any 2xx is
// healthy. Each try is bounded by probeTimeout.
func HTTPHealth(path string, port int, vhost string) func(ctx context.Context, host, addr string) error {
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	client := &http.Client{Timeout: probeTimeout, Transport: &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse // a redirect is an answer, not a hop
		}}
	return func(ctx context.Context, host, addr string) error {
		ip, _, err := net.SplitHostPort(addr)
		if err != nil {
			return fmt.Errorf("health %s: no address to probe (%q)", host, addr)
		}
		url := "http://" + net.JoinHostPort(ip, strconv.Itoa(port)) + path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("health %s: %w", host, err)
		}
		if vhost != "" {
			req.Host = vhost
		}
		resp, err := client.Do(req)
		if err != nil {
			return fmt.Errorf("health %s: GET %s: %w", host, url, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 200))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("health %s: GET %s: %s: %q", host, url, resp.Status, strings.TrimSpace(string(body)))
		}
		return nil
	}
}

// probe checks hosts with the rollout's Health, each up to probeTries
// times; it returns the failures by host.
func (r *Rollout) probe(ctx context.Context, res *Result, hosts []string) map[string]error {
	if r.Health == nil {
		return nil
	}
	bad := map[string]error{}
	for _, h := range hosts {
		var err error
		for try := 1; try <= probeTries; try++ {
			if err = r.Health(ctx, h, res.host(h).Addr); err == nil || ctx.Err() != nil {
				break
			}
			if try < probeTries {
				sleep(ctx, probePause)
			}
		}
		if err != nil {
			bad[h] = err
		}
	}
	return bad
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// roll switches the staged hosts wave by wave. When a host of a wave does
// not switch, or any switched host fails its probe, it stops and switches
// every host it switched back to the release each served before (a signed
// ROLLBACK), and says why in r.Halted. ctx ending (Ctrl-C) aborts the
// rollout the same way: a rollout is all or nothing.
func (o *Options) roll(ctx context.Context, c *Commander, res *Result, staged []string) error {
	waves := o.Rollout.waves(staged)
	if o.Rollout.Canary >= len(staged) {
		o.log().Warn("deploy: --canary covers all the staged hosts: they switch at once", "canary", o.Rollout.Canary, "staged", len(staged))
	}
	var switched []string
	prior := map[string]image.ID{} // host -> the release it served before its switch
	abort := func(where string) error {
		return errors.Join(ctx.Err(), o.halt(c, res, switched, prior, "interrupted "+where, nil))
	}
	for i, wave := range waves {
		name := waveName(i, len(waves), o.Rollout.Canary > 0)
		if ctx.Err() != nil {
			return abort("before " + name)
		}
		if err := priorReleases(ctx, c, res, wave, prior); ctx.Err() != nil {
			return abort("before " + name)
		} else if err != nil {
			return o.halt(c, res, switched, prior, fmt.Sprintf("%s: %v", name, err), nil)
		}
		o.log().Info("deploy: switching", "wave", name, "hosts", strings.Join(wave, ","))
		err := activate(context.WithoutCancel(ctx), c, res, wave)
		var failed []string
		for _, h := range wave {
			if res.host(h).Phase == PhaseActive {
				switched = append(switched, h)
			} else {
				failed = append(failed, h)
			}
		}
		if err != nil || len(failed) > 0 {
			why := fmt.Sprintf("%s: %s did not switch", name, strings.Join(failed, ", "))
			if err != nil {
				why = fmt.Sprintf("%s: %v", name, err)
			}
			// a host whose answer was lost, or that failed after its flip,
			// may serve the new release: it goes back too (a ROLLBACK to
			// what it serves already is no change)
			return o.halt(c, res, append(switched, failed...), prior, why, nil)
		}
		bad := o.Rollout.probe(ctx, res, wave)
		if ctx.Err() != nil {
			return abort("while probing " + name)
		}
		if len(bad) > 0 {
			return o.halt(c, res, switched, prior, name+" unhealthy", bad)
		}
		if i == len(waves)-1 || o.Rollout.Soak <= 0 {
			continue
		}
		o.log().Info("deploy: healthy: soaking", "wave", name, "soak", o.Rollout.Soak)
		sleep(ctx, o.Rollout.Soak)
		if ctx.Err() != nil {
			return abort("while " + name + " soaked")
		}
		if bad := o.Rollout.probe(ctx, res, switched); ctx.Err() != nil {
			return abort("while probing after the soak of " + name)
		} else if len(bad) > 0 {
			return o.halt(c, res, switched, prior, "unhealthy after the soak of "+name, bad)
		}
	}
	return nil
}

func waveName(i, n int, canary bool) string {
	switch {
	case canary && i == 0:
		return "the canary"
	case canary:
		return fmt.Sprintf("wave %d of %d", i, n-1)
	}
	return fmt.Sprintf("wave %d of %d", i+1, n)
}

// priorReleases asks the hosts of a wave what they serve, before it
// switches: what a halt switches each back to.
func priorReleases(ctx context.Context, c *Commander, res *Result, hosts []string, prior map[string]image.ID) error {
	t, err := c.Do(ctx, &control.StatusRequest{Envelope: c.NewEnvelope(res.DeployID, hosts)}, hosts)
	if t == nil {
		return err
	}
	var silent []string
	for _, h := range hosts {
		if rep := t.Replies()[h]; rep != nil && rep.Outcome == control.OutcomeOK {
			prior[h] = rep.Current
		} else {
			silent = append(silent, h)
		}
	}
	if len(silent) > 0 {
		return fmt.Errorf("no STATUS answer from %s before its switch", strings.Join(silent, ", "))
	}
	return err
}

// halt switches the switched hosts back, each to the release it served
// before (a signed ROLLBACK naming it), and records why. A host that
// served nothing before, or already served this release, stays.
func (o *Options) halt(c *Commander, res *Result, switched []string, prior map[string]image.ID, why string, bad map[string]error) error {
	res.Halted = why
	for h, err := range bad {
		res.host(h).Error = err.Error()
	}
	o.log().Warn("deploy: rollout halted: switching the switched hosts back", "why", why, "hosts", len(switched))
	if len(switched) == 0 {
		return nil
	}
	// The rollback must reach every switched host even if interrupted.
	var left []string // hosts not confirmed back
	ctx := context.Background()
	byTo := map[image.ID][]string{}
	for _, h := range switched {
		switch to := prior[h]; to {
		case image.ID{}:
			hr := res.host(h)
			hr.Error = joinErr(hr.Error, "served nothing before this deploy: left on it")
			if hr.Phase == PhaseActive {
				left = append(left, h)
			}
		case res.ReleaseID:
			// it served this release already: nothing to undo
		default:
			byTo[to] = append(byTo[to], h)
		}
	}
	var errs []error
	for _, to := range slices.SortedFunc(maps.Keys(byTo), image.ID.Compare) {
		hosts := byTo[to]
		t, err := c.Do(ctx, &control.Rollback{Envelope: c.NewEnvelope(res.DeployID, hosts), To: to}, hosts)
		for _, h := range hosts {
			hr := res.host(h)
			var rep *control.Reply
			if t != nil {
				rep = t.Replies()[h]
			}
			switch {
			case rep == nil:
				hr.Error = joinErr(hr.Error, "no answer to the ROLLBACK to "+to.String()+": it may still serve the new release")
				left = append(left, h)
			case rep.Outcome == control.OutcomeOK:
				if hr.Phase == PhaseActive {
					hr.Phase = PhaseRolledBack
				}
				hr.Current = rep.Current
			default:
				hr.Current = rep.Current
				hr.Error = joinErr(hr.Error, fmt.Sprintf("ROLLBACK to %s %s: %s", to, rep.Outcome, rep.Error))
				if rep.Current == res.ReleaseID {
					left = append(left, h)
				}
			}
		}
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("deploy: rollback to %s after the halt: %w", to, err))
		}
	}
	if len(left) > 0 {
		slices.Sort(left)
		res.NotBack = left
		errs = append(errs, fmt.Errorf("deploy: rollout halted, but %s may still serve %s", strings.Join(left, ", "), res.ReleaseID))
	}
	return errors.Join(errs...)
}

func joinErr(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

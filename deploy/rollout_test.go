package deploy

import (
	"context"
	"errors"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
)

// fleetSim is a fleet of agents that obey: each host serves a release
// (by its label: see rel),
// ACTIVATE switches the targeted hosts, ROLLBACK switches them to the
// named release (or their previous), STATUS reports. It logs every
// command it obeys.
type fleetSim struct {
	mu   sync.Mutex
	cur  map[string]string
	prev map[string]string
	log  []string // "ACTIVATE r2 a,b"
	*replyQueue
	noSwitch map[string]bool // hosts whose ACTIVATE fails
	lostAck  map[string]bool // hosts that switch but whose ACTIVATE reply is lost
	deafBack map[string]bool // hosts that ignore ROLLBACK
}

func newFleetSim(cur map[string]string) *fleetSim {
	return &fleetSim{cur: maps.Clone(cur), prev: map[string]string{}, replyQueue: newReplyQueue(), noSwitch: map[string]bool{},
		lostAck: map[string]bool{}, deafBack: map[string]bool{}}
}

func (f *fleetSim) WriteTo(p []byte, _ net.Addr) (int, error) {
	c, err := control.ParseCommand(p)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var out [][]byte
	e := c.Env()
	targets := slices.Sorted(slices.Values(e.Targets))
	for _, h := range targets {
		r := &control.Reply{Deploy: e.Deploy, Nonce: e.Nonce, Command: c.Type(), Outcome: control.OutcomeOK, Host: h}
		if _, ok := c.(*control.Rollback); ok && f.deafBack[h] {
			continue
		}
		switch cmd := c.(type) {
		case *control.Activate:
			if f.noSwitch[h] {
				r.Outcome, r.Error = control.OutcomeFailed, "mount failed"
				break
			}
			if f.cur[h] != labelOf(cmd.Release) {
				f.prev[h], f.cur[h] = f.cur[h], labelOf(cmd.Release)
			}
		case *control.Rollback:
			to := labelOf(cmd.To)
			if cmd.To.IsZero() {
				to = f.prev[h]
			}
			f.prev[h], f.cur[h] = f.cur[h], to
		case *control.StatusRequest:
			r.Status = &control.Status{Previous: rel(f.prev[h])}
		}
		r.Current = rel(f.cur[h])
		if _, ok := c.(*control.Activate); ok && f.lostAck[h] {
			continue
		}
		b, err := control.SignReply(r, hostKey(h))
		if err != nil {
			return 0, err
		}
		out = append(out, b)
	}
	if c.Type() != control.TypeStatus {
		what := map[control.Type]string{control.TypeActivate: "ACTIVATE", control.TypeRollback: "ROLLBACK"}[c.Type()]
		switch cmd := c.(type) {
		case *control.Activate:
			what += " " + labelOf(cmd.Release)
		case *control.Rollback:
			what += " " + labelOf(cmd.To)
		}
		f.log = append(f.log, what+" "+strings.Join(targets, ","))
	}
	f.push(out...)
	return len(p), nil
}

// rollResult runs a rollout of release "new" over staged hosts.
func rollResult(t *testing.T, f *fleetSim, r Rollout, hosts ...string) (*Result, error) {
	t.Helper()
	return rollResultCtx(t, context.Background(), f, r, hosts...)
}

func rollResultCtx(t *testing.T, ctx context.Context, f *fleetSim, r Rollout, hosts ...string) (*Result, error) {
	t.Helper()
	c := &Commander{Conn: f, To: &net.UDPAddr{}, Group: "239.192.0.1:5000", Key: testKey, Timeout: time.Second}
	res := &Result{ReleaseID: rel("new"), DeployID: 7}
	for _, h := range slices.Sorted(slices.Values(hosts)) {
		res.Hosts = append(res.Hosts, HostResult{ID: h, Addr: "10.0.0.1:5000", Phase: PhaseStaged})
	}
	o := &Options{Rollout: r}
	err := o.roll(ctx, c, res, hosts)
	return res, err
}

// TestRolloutInterrupted: Ctrl-C while the canary is probed switches it
// back; no other host switches.
func TestRolloutInterrupted(t *testing.T) {
	f := newFleetSim(map[string]string{"a": "old", "b": "old"})
	ctx, cancel := context.WithCancel(context.Background())
	r := Rollout{Canary: 1, Health: func(context.Context, string, string) error { cancel(); return context.Canceled }}
	res, err := rollResultCtx(t, ctx, f, r, "a", "b")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted rollout: %v", err)
	}
	if want := []string{"ACTIVATE new a", "ROLLBACK old a"}; !slices.Equal(f.log, want) {
		t.Fatalf("commands %q, want %q", f.log, want)
	}
	if !strings.Contains(res.Halted, "interrupted while probing the canary") || res.host("a").Phase != PhaseRolledBack {
		t.Fatalf("halted %q, a %+v", res.Halted, res.host("a"))
	}
}

func TestWaves(t *testing.T) {
	hosts := []string{"h10", "h01", "h02", "h03", "h04", "h05", "h06", "h07", "h08", "h09"}
	for _, tc := range []struct {
		r    Rollout
		want []int
	}{
		{Rollout{}, []int{10}},
		{Rollout{Canary: 1}, []int{1, 9}},
		{Rollout{Canary: 1, Waves: []int{10, 50}}, []int{1, 4, 5}}, // 10% is the canary already
		{Rollout{Waves: []int{25, 50}}, []int{3, 2, 5}},
		{Rollout{Canary: 20}, []int{10}},
	} {
		var got []int
		all := []string{}
		for _, w := range tc.r.waves(hosts) {
			got = append(got, len(w))
			all = append(all, w...)
		}
		if !slices.Equal(got, tc.want) || !slices.IsSorted(all) || len(all) != len(hosts) {
			t.Errorf("%+v: waves %v (%v), want sizes %v, every host once, by id", tc.r, got, all, tc.want)
		}
	}
	if _, err := ParseWaves("50%,10%"); err == nil {
		t.Error("descending waves accepted")
	}
	if _, err := ParseWaves("100%"); err == nil {
		t.Error("a 100% wave accepted")
	}
	if w, err := ParseWaves("10%, 50"); err != nil || !slices.Equal(w, []int{10, 50}) {
		t.Errorf("ParseWaves = %v, %v", w, err)
	}
}

// TestRolloutHealthy switches the canary, then the rest, probing each.
func TestRolloutHealthy(t *testing.T) {
	f := newFleetSim(map[string]string{"a": "old", "b": "old", "c": "old"})
	var probed []string
	r := Rollout{Canary: 1, Health: func(_ context.Context, h, _ string) error { probed = append(probed, h); return nil }}
	res, err := rollResult(t, f, r, "a", "b", "c")
	if err != nil || res.Halted != "" || res.Outcome() != OutcomeAll {
		t.Fatalf("healthy rollout: %v, halted %q, outcome %v", err, res.Halted, res.Outcome())
	}
	if want := []string{"ACTIVATE new a", "ACTIVATE new b,c"}; !slices.Equal(f.log, want) {
		t.Fatalf("commands %q, want %q", f.log, want)
	}
	if !slices.Equal(probed, []string{"a", "b", "c"}) {
		t.Fatalf("probed %v", probed)
	}
}

// TestRolloutHaltsOnUnhealthyCanary: a canary failing its probe is
// switched back to the release it served, and no other host switches.
func TestRolloutHaltsOnUnhealthyCanary(t *testing.T) {
	f := newFleetSim(map[string]string{"a": "old", "b": "old", "c": "old"})
	r := Rollout{Canary: 1, Health: func(context.Context, string, string) error { return errors.New("status 500") }}
	res, err := rollResult(t, f, r, "a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"ACTIVATE new a", "ROLLBACK old a"}; !slices.Equal(f.log, want) {
		t.Fatalf("commands %q, want %q", f.log, want)
	}
	if !maps.Equal(f.cur, map[string]string{"a": "old", "b": "old", "c": "old"}) {
		t.Fatalf("fleet after the halt: %v", f.cur)
	}
	if res.Outcome() != OutcomeNone || !strings.Contains(res.Halted, "canary unhealthy") {
		t.Fatalf("outcome %v, halted %q", res.Outcome(), res.Halted)
	}
	a := res.host("a")
	if a.Phase != PhaseRolledBack || a.Current != rel("old") || !strings.Contains(a.Error, "status 500") {
		t.Fatalf("canary's line: %+v", a)
	}
	if b := res.host("b"); b.Phase != PhaseStaged {
		t.Fatalf("b: %+v; want staged, never switched", b)
	}
}

// TestRolloutHaltsAfterSoak: a wave healthy at first but not after the
// soak switches back every host switched so far, each to its own release;
// a host that served the new release already stays.
func TestRolloutHaltsAfterSoak(t *testing.T) {
	f := newFleetSim(map[string]string{"a": "old", "b": "older", "c": "new", "d": "old"})
	probes := 0
	r := Rollout{Canary: 1, Waves: []int{75}, Soak: time.Millisecond, Health: func(_ context.Context, h, _ string) error {
		probes++
		if probes > 4 && h == "b" { // healthy in its wave, not after its soak
			return errors.New("status 503")
		}
		return nil
	}}
	res, err := rollResult(t, f, r, "a", "b", "c", "d")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"ACTIVATE new a", "ACTIVATE new b,c", "ROLLBACK old a", "ROLLBACK older b"}
	if !slices.Equal(f.log, want) {
		t.Fatalf("commands %q, want %q", f.log, want)
	}
	if !maps.Equal(f.cur, map[string]string{"a": "old", "b": "older", "c": "new", "d": "old"}) {
		t.Fatalf("fleet after the halt: %v", f.cur)
	}
	if !strings.Contains(res.Halted, "after the soak") {
		t.Fatalf("halted %q", res.Halted)
	}
}

// TestRolloutHaltsWhenAHostDoesNotSwitch: a wave in which a host fails its
// ACTIVATE stops the rollout.
func TestRolloutHaltsWhenAHostDoesNotSwitch(t *testing.T) {
	f := newFleetSim(map[string]string{"a": "old", "b": "old", "c": "old"})
	f.noSwitch["b"] = true
	res, err := rollResult(t, f, Rollout{Canary: 1}, "a", "b", "c")
	if err != nil {
		t.Fatal(err)
	}
	// c switched in b's wave: it goes back too
	want := []string{"ACTIVATE new a", "ACTIVATE new b,c", "ROLLBACK old a,b,c"}
	if !slices.Equal(f.log, want) || !strings.Contains(res.Halted, "b did not switch") {
		t.Fatalf("commands %q, halted %q", f.log, res.Halted)
	}
}

// TestRolloutLostAnswers: a host that switched but whose answer was lost
// goes back too; a host that never answers the ROLLBACK is named as not
// confirmed back, with an error.
func TestRolloutLostAnswers(t *testing.T) {
	f := newFleetSim(map[string]string{"a": "old", "b": "old", "c": "old"})
	f.lostAck["b"] = true
	res, err := rollResult(t, f, Rollout{Canary: 1}, "a", "b", "c")
	if err != nil || f.cur["b"] != "old" || len(res.NotBack) != 0 {
		t.Fatalf("lost ACTIVATE answer: err %v, b serves %s, not back %v", err, f.cur["b"], res.NotBack)
	}
	f = newFleetSim(map[string]string{"a": "old", "b": "old"})
	f.deafBack["a"] = true
	r := Rollout{Canary: 1, Health: func(context.Context, string, string) error { return errors.New("500") }}
	res, err = rollResult(t, f, r, "a", "b")
	if err == nil || !slices.Equal(res.NotBack, []string{"a"}) || f.cur["a"] != "new" {
		t.Fatalf("a deaf to ROLLBACK: err %v, not back %v, a serves %s", err, res.NotBack, f.cur["a"])
	}
}

func TestHTTPHealth(t *testing.T) {
	status := 200
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health.php" {
			http.NotFound(w, r)
			return
		}
		w.WriteHeader(status)
		w.Write([]byte("release says hi"))
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	var p int
	for _, c := range port {
		p = p*10 + int(c-'0')
	}
	probe := HTTPHealth("health.php", p, "")
	if err := probe(context.Background(), "a", "127.0.0.1:5000"); err != nil {
		t.Fatal(err)
	}
	status = 500
	err := probe(context.Background(), "a", "127.0.0.1:5000")
	if err == nil || !strings.Contains(err.Error(), "500") || !strings.Contains(err.Error(), "release says hi") {
		t.Fatalf("unhealthy probe: %v", err)
	}
	if err := probe(context.Background(), "a", "no-port"); err == nil {
		t.Fatal("a host without an address probed healthy")
	}
}

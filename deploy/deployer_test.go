package deploy

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/memnet"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/multicast"
)

// agentSim is one host of an in-process fleet: it takes the release with
// the real multicast.Receive over memnet, stages it in memory, and obeys
// the commands a control.Verifier accepts, with control's signed replies.
type agentSim struct {
	id, ip    string
	deaf      bool // hears no multicast: never registers
	lateStage bool // its COMPLETE does not say it staged; STATUS says so after
	verify    *control.Verifier

	mu       sync.Mutex
	staged   []image.ID
	cur      image.ID
	prev     image.ID                          // the release it served before cur, still mounted
	obeyed   []string                          // "ACTIVATE <release>", in order
	answered map[[control.NonceLen]byte][]byte // a retransmission gets the same answer
}

// answer obeys one command and returns its signed reply; nil when there is
// none to give (not a command, or not for this host).
func (a *agentSim) answer(b []byte) []byte {
	c, err := control.ParseCommand(b)
	if err != nil {
		return nil // a fleet pointer or a certificate: not simulated
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := c.Env()
	if err := a.verify.Verify(c, time.Now()); err != nil {
		return a.answered[e.Nonce]
	}
	r := &control.Reply{Deploy: e.Deploy, Nonce: e.Nonce, Command: c.Type(), Outcome: control.OutcomeOK, Host: a.id}
	switch cmd := c.(type) {
	case *control.Activate:
		a.activate(cmd.Release, r)
	case *control.StatusRequest:
		r.Status = &control.Status{Staged: slices.Clone(a.staged), Previous: a.prev}
	case *control.Rollback:
		a.rollback(cmd.To, r)
	default:
		r.Outcome, r.Error = control.OutcomeFailed, "not simulated"
	}
	r.Current = a.cur
	out, err := control.SignReply(r, hostKey(a.id))
	if err != nil {
		panic(err)
	}
	a.answered[e.Nonce] = out
	return out
}

func (a *agentSim) activate(release image.ID, r *control.Reply) {
	if !slices.Contains(a.staged, release) {
		r.Outcome, r.Error = control.OutcomeFailed, "not staged: "+release.String()
		return
	}
	a.cur, a.prev = release, a.cur
	a.staged = slices.DeleteFunc(a.staged, func(id image.ID) bool { return id == release })
	a.obeyed = append(a.obeyed, "ACTIVATE "+release.String())
}

// rollback goes back to the release it served before, when that is the
// one named.
func (a *agentSim) rollback(to image.ID, r *control.Reply) {
	if to != a.prev || to.IsZero() {
		r.Outcome, r.Error = control.OutcomeFailed, "not held: "+to.String()
		return
	}
	a.cur, a.prev = a.prev, a.cur
	a.obeyed = append(a.obeyed, "ROLLBACK "+to.String())
}

// state is the release the host serves and the switches it obeyed.
func (a *agentSim) state() (cur image.ID, obeyed []string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cur, slices.Clone(a.obeyed)
}

func (a *agentSim) stage(release image.ID) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.staged = append(a.staged, release)
}

// serve answers the commands that reach conn until it is closed.
func (a *agentSim) serve(conn *memnet.Conn) {
	buf := make([]byte, maxReplyPacket)
	for {
		n, from, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if out := a.answer(buf[:n]); out != nil {
			conn.WriteTo(out, from)
		}
	}
}

// receive takes one release from conn into out, as an agent does.
func (a *agentSim) receive(ctx context.Context, t *testing.T, conn *memnet.Conn, out string) {
	o := multicast.ReceiveOptions{HostID: a.id, HostKey: hostKey(a.id), Out: out,
		Trusted: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)}, SenderTimeout: 5 * time.Second,
		AnnounceTimeout: 30 * time.Second, Logger: testLogger(t).With("host", a.id)}
	if !a.lateStage {
		o.Stage = func(r *multicast.Result) error { a.stage(r.Manifest.ID()); return nil }
	}
	r, err := multicast.Receive(ctx, conn, o)
	switch {
	case err != nil && ctx.Err() == nil:
		t.Errorf("%s: receive: %v", a.id, err)
	case err == nil && a.lateStage:
		a.stage(r.Manifest.ID())
	}
}

// simFleet is an in-process fleet: a data network and a control network
// (internal/memnet), and an agentSim per host.
type simFleet struct {
	data, ctl *memnet.Net
	ids       []string
	agents    map[string]*agentSim
}

func newSimFleet(t *testing.T, ids ...string) *simFleet {
	f := &simFleet{data: memnet.New(nil), ctl: memnet.New(nil), ids: ids, agents: map[string]*agentSim{}}
	for i, id := range ids {
		v, err := control.NewVerifier(control.VerifierConfig{Keys: []ed25519.PublicKey{testKey.Public().(ed25519.PublicKey)},
			Host: id, Group: memnet.Group.String()})
		if err != nil {
			t.Fatal(err)
		}
		f.agents[id] = &agentSim{id: id, ip: fmt.Sprintf("10.0.0.%d", i+1), verify: v, answered: map[[control.NonceLen]byte][]byte{}}
	}
	return f
}

// start runs the agents until the test ends.
func (f *simFleet) start(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var conns []*memnet.Conn
	dir := t.TempDir()
	for _, a := range f.agents {
		ctl := f.ctl.Conn(a.ip+":5001", true)
		conns = append(conns, ctl)
		wg.Go(func() { a.serve(ctl) })
		if a.deaf {
			continue
		}
		data := f.data.Conn(a.ip+":5000", true)
		conns = append(conns, data)
		wg.Go(func() { a.receive(ctx, t, data, filepath.Join(dir, a.id+".img")) })
	}
	t.Cleanup(func() {
		cancel()
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
	})
}

// deploy runs d.Deploy over the fleet's networks.
func (f *simFleet) deploy(d *Deployer, o Options) (*Result, error) {
	conns := Conns{Data: f.data.Conn("10.0.0.100:5000", false), Control: f.ctl.Conn("10.0.0.100:5001", false), ControlTo: memnet.Group}
	defer conns.Close()
	return d.Deploy(context.Background(), conns, o)
}

// buildRelease builds a small tree for the group of d.
func buildRelease(t *testing.T, d *Deployer) *Built {
	src := t.TempDir()
	os.MkdirAll(filepath.Join(src, "lib"), 0o755)
	os.WriteFile(filepath.Join(src, "index.php"), []byte("<?php require 'lib/app.php';"), 0o644)
	os.WriteFile(filepath.Join(src, "lib", "app.php"), []byte(strings.Repeat("<?php echo 'hello';\n", 500)), 0o644)
	blob := make([]byte, 2<<20) // a few chunks that do not compress
	rand.NewChaCha8([32]byte{1}).Read(blob)
	os.WriteFile(filepath.Join(src, "lib", "blob.bin"), blob, 0o644)
	epoch := int64(1_700_000_000)
	b, err := d.Build(context.Background(), src, image.Options{Key: testKey, Label: "test", Epoch: &epoch, HeadroomPct: image.DefaultHeadroomPct})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func openDeployer(t *testing.T) *Deployer {
	d, err := Open(t.TempDir(), memnet.Group)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

// testOptions deploys b to hosts, requiring all of them.
func testOptions(t *testing.T, b *Built, hosts []string) Options {
	o := Options{SendOptions: multicast.SendOptions{Key: testKey, Hosts: hosts, Rate: 100e6, Wait: 5 * time.Second,
		HostTimeout: 2 * time.Second, Logger: testLogger(t)}, RequirePct: 100, ImagePath: b.Path, BuildTime: b.Time,
		CommandTimeout: time.Second, StageTimeout: 5 * time.Second}
	o.Manifest = b.Manifest
	return o
}

// testLogger writes a deploy's records, detail included, to the test's log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// readAudit returns the audit log's entries.
func readAudit(t *testing.T, path string) []AuditEntry {
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	var out []AuditEntry
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var e AuditEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("audit line %q: %v", sc.Text(), err)
		}
		out = append(out, e)
	}
	return out
}

// TestDeployAllHostsSwitch runs the whole deploy over the in-process
// network: every host takes the image, stages it (one says so only when
// asked), and switches; the image becomes the group's base, the audit log
// has the deploy, and the fleet pointer names the release.
func TestDeployAllHostsSwitch(t *testing.T) {
	f := newSimFleet(t, "web1", "web2", "web3")
	f.agents["web3"].lateStage = true
	f.start(t)
	d := openDeployer(t)
	b := buildRelease(t, d)
	id := b.ID
	res, err := f.deploy(d, testOptions(t, b, f.ids))
	if err != nil {
		t.Fatal(err)
	}
	if res.Outcome() != OutcomeAll || !res.Switched {
		t.Fatalf("outcome %v, switched %v, want all: %+v", res.Outcome(), res.Switched, res.Hosts)
	}
	for _, h := range f.ids {
		line := res.host(h)
		if cur, _ := f.agents[h].state(); line.Phase != PhaseActive || line.Current != id || cur != id {
			t.Errorf("%s: line %+v, agent serves %q; want active on %s", h, line, cur, id)
		}
	}
	if got, _ := os.ReadFile(d.LastBuild); string(got) != b.Path+"\n" {
		t.Errorf("base record %q, want %s", got, b.Path)
	}
	log := readAudit(t, d.Audit)
	want := AuditEntry{Action: "deploy", Group: "group", Release: id, Label: "test", Hosts: f.ids, Outcome: "all", DeployID: res.DeployID}
	if len(log) != 1 || !sameAudit(log[0], want) {
		t.Errorf("audit log %+v, want one line %+v", log, want)
	}
	if p, err := ReadPointer(d.Pointer); err != nil || p == nil || p.Release != id {
		t.Errorf("fleet pointer %+v, %v; want one naming %s", p, err, id)
	}
}

func sameAudit(got, want AuditEntry) bool {
	got.Time, got.User = time.Time{}, ""
	return got.Action == want.Action && got.Group == want.Group && got.Release == want.Release && got.Label == want.Label &&
		slices.Equal(got.Hosts, want.Hosts) && got.Outcome == want.Outcome && got.DeployID == want.DeployID && got.Error == want.Error
}

// TestDeployHostNeverRegisters: a listed host that hears no multicast
// never registers. With --require all no host switches, no base is
// recorded and no pointer published; with 50% the others switch.
func TestDeployHostNeverRegisters(t *testing.T) {
	for _, tc := range []struct {
		require  int
		want     Outcome
		switched bool // web1 and web2 switch, and the image becomes the base
	}{
		{100, OutcomeNone, false},
		{50, OutcomePartial, true},
	} {
		t.Run(fmt.Sprintf("require %d%%", tc.require), func(t *testing.T) {
			f := newSimFleet(t, "web1", "web2", "web3")
			f.agents["web3"].deaf = true
			f.start(t)
			d := openDeployer(t)
			b := buildRelease(t, d)
			o := testOptions(t, b, f.ids)
			o.Wait, o.RequirePct = time.Second, tc.require
			res, err := f.deploy(d, o)
			if err != nil {
				t.Fatal(err)
			}
			if res.Outcome() != tc.want {
				t.Fatalf("outcome %v, want %v: %+v", res.Outcome(), tc.want, res.Hosts)
			}
			if w3 := res.host("web3"); w3.Phase != PhaseNone || !strings.Contains(w3.Error, "never registered") {
				t.Errorf("web3: %+v, want phase none, never registered", w3)
			}
			for _, h := range []string{"web1", "web2"} {
				if _, obeyed := f.agents[h].state(); (len(obeyed) == 1) != tc.switched {
					t.Errorf("%s obeyed %q, want a switch: %v", h, obeyed, tc.switched)
				}
			}
			_, err = os.Stat(d.LastBuild)
			if recorded := err == nil; recorded != tc.switched {
				t.Errorf("base recorded: %v, want %v", recorded, tc.switched)
			}
			if p, _ := ReadPointer(d.Pointer); (p != nil) != tc.switched {
				t.Errorf("fleet pointer %+v; want one: %v", p, tc.switched)
			}
			if log := readAudit(t, d.Audit); len(log) != 1 || log[0].Outcome != tc.want.String() {
				t.Errorf("audit log %+v, want one line, outcome %v", log, tc.want)
			}
		})
	}
}

// TestDeployLockRefusesSecond: while one deploy holds a group's lock, a
// second to the same group is refused, naming the holder; another group is
// not held up, and the lock is free again once closed.
func TestDeployLockRefusesSecond(t *testing.T) {
	dir := t.TempDir()
	d, err := Open(dir, memnet.Group)
	if err != nil {
		t.Fatal(err)
	}
	_, err = Open(dir, memnet.Group)
	if err == nil || !strings.Contains(err.Error(), "another deploy to group is running") ||
		!strings.Contains(err.Error(), fmt.Sprintf("pid %d", os.Getpid())) {
		t.Fatalf("second deploy to the group: %v, want refused naming this pid", err)
	}
	other, err := Open(dir, memnet.Addr("other"))
	if err != nil {
		t.Fatalf("a deploy to another group: %v", err)
	}
	other.Close()
	d.Close()
	d, err = Open(dir, memnet.Group)
	if err != nil {
		t.Fatalf("after the first closed: %v", err)
	}
	d.Close()
}

// TestDeployFailRecorded: a deploy whose sockets did not open is in the
// audit log, as an error, and records no base.
func TestDeployFailRecorded(t *testing.T) {
	d := openDeployer(t)
	b := buildRelease(t, d)
	d.Fail(testOptions(t, b, []string{"web1"}), errors.New("multicast: no route"))
	log := readAudit(t, d.Audit)
	want := AuditEntry{Action: "deploy", Group: "group", Release: b.ID, Label: "test", Hosts: []string{"web1"},
		Outcome: "error", Error: "multicast: no route"}
	if len(log) != 1 || !sameAudit(log[0], want) {
		t.Errorf("audit log %+v, want %+v", log, want)
	}
	if _, err := os.Stat(d.LastBuild); err == nil {
		t.Error("a failed deploy recorded a base")
	}
}

// TestRollbackOverFleet: with no target named, a rollback asks the hosts
// what they serve, takes the release deployed before it from the audit
// log, switches every host there with one signed ROLLBACK, and logs it.
func TestRollbackOverFleet(t *testing.T) {
	f := newSimFleet(t, "web1", "web2", "web3")
	f.start(t)
	d := openDeployer(t)
	older, newer := testid.Of("v1"), testid.Of("v2")
	for _, id := range []image.ID{older, newer} {
		if err := AppendAudit(d.Audit, AuditEntry{Action: "deploy", Group: "group", Release: id, Hosts: f.ids, Outcome: "all"}); err != nil {
			t.Fatal(err)
		}
	}
	for _, a := range f.agents {
		a.cur, a.prev = newer, older
	}
	fl := &Fleet{Group: memnet.Group, Hosts: f.ids, Key: testKey,
		Control: f.ctl.Conn("10.0.0.100:5001", false), ControlTo: memnet.Group}
	fl.Cmd.Logger = testLogger(t)
	to, res, err := d.Rollback(context.Background(), fl, image.ID{})
	if err != nil || to != older {
		t.Fatalf("rollback to %s, %v; want %s", to, err, older)
	}
	for _, h := range res {
		if cur, obeyed := f.agents[h.ID].state(); h.Phase != PhaseActive || cur != older || len(obeyed) != 1 {
			t.Errorf("%s: line %+v, serves %s after %v; want active on %s after one ROLLBACK", h.ID, h, cur, obeyed, older)
		}
	}
	if len(res) != len(f.ids) {
		t.Errorf("%d hosts in the result, want %d", len(res), len(f.ids))
	}
	log := readAudit(t, d.Audit)
	if last := log[len(log)-1]; len(log) != 3 || last.Action != "rollback" || last.Release != older || last.Outcome != "all" {
		t.Errorf("audit log ends %+v (%d lines), want a third line: rollback to %s, all", last, len(log), older)
	}
}

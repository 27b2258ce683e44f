package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"github.com/loopcast/loopcast/control"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/mounttest"

	"github.com/google/go-cmp/cmp"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testenv"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/release"
)

// agent is a handler on a store under a temporary directory.
type agent struct {
	t     *testing.T
	dir   string
	store *release.Store
	h     *Handler
	now   time.Time
	logs  *bytes.Buffer
	names map[image.ID]string // release id -> the name in its id.txt
}

func newAgent(t *testing.T) *agent {
	t.Helper()
	dir, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	logs := new(bytes.Buffer)
	log := slog.New(slog.NewJSONHandler(logs, nil))
	s, err := release.Open(filepath.Join(dir, "root"), release.Options{
		TrustedKeys: []ed25519.PublicKey{trustedPub}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, control.VerifierConfig{NotBefore: t0})
	h := NewHandler(HandlerConfig{Store: s, Verifier: v, Version: "v9.9.9-test", Logger: log})
	return &agent{t: t, dir: dir, store: s, h: h, now: t0, logs: logs, names: map[image.ID]string{}}
}

// send signs c, hands it to the handler and checks that the reply, if
// any, encodes and parses back equal.
func (a *agent) send(c control.Command, key ed25519.PrivateKey) (*control.Reply, error) {
	a.t.Helper()
	a.now = a.now.Add(time.Second)
	c.Env().Issued = a.now.UnixMilli()
	wire, err := control.Sign(c, key)
	if err != nil {
		a.t.Fatal(err)
	}
	return a.deliver(wire)
}

func (a *agent) deliver(wire []byte) (*control.Reply, error) {
	a.t.Helper()
	r, err := a.h.Handle(wire, a.now)
	if r != nil {
		b, eerr := control.SignReply(r, testHostKey)
		if eerr != nil {
			a.t.Fatalf("reply %+v does not encode: %v", r, eerr)
		}
		back, perr := control.ParseReply(b)
		if perr == nil && !back.HostKey.Equal(testHostKey.Public()) {
			a.t.Fatalf("reply parsed with key %x, signed by %x", back.HostKey, testHostKey.Public())
		}
		if perr == nil {
			back.HostKey = nil
		}
		b[len(b)-1] ^= 1
		if _, err := control.ParseReply(b); !errors.Is(err, control.ErrBadReplySignature) {
			a.t.Fatalf("reply with a flipped signature bit: %v, want control.ErrBadReplySignature", err)
		}
		if perr != nil || !cmp.Equal(back, r) {
			a.t.Fatalf("reply does not round trip: %v\n%s", perr, cmp.Diff(r, back))
		}
	}
	return r, err
}

// testHostKey signs the test agent's replies.
var testHostKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))

func cmdEnv(targets ...string) control.Envelope {
	return control.NewEnvelope("web", 99, targets, time.Time{})
}

// TestHandlerRefusals needs no root: refused commands never reach the store.
func TestHandlerRefusals(t *testing.T) {
	a := newAgent(t)
	_, otherKey, _ := ed25519.GenerateKey(rand.Reader)

	// Commands not validly signed by a trusted key get no answer (an answer
	// to a forged source would make the agent a reflector), only an error.
	r, err := a.send(&control.Activate{Envelope: cmdEnv(), Release: testid.Parse("0123456789abcdef")}, otherKey)
	if r != nil || !errors.Is(err, control.ErrUntrustedKey) || !strings.Contains(err.Error(), "ACTIVATE") ||
		!strings.Contains(err.Error(), image.KeyID(otherKey.Public().(ed25519.PublicKey))) {
		t.Errorf("untrusted ACTIVATE: reply %+v, %v; want no reply and an error naming the command and key", r, err)
	}

	unsigned := &control.Rollback{Envelope: cmdEnv()}
	unsigned.Issued = a.now.UnixMilli()
	wire, _ := unsigned.AppendBinary(nil)
	if r, err := a.deliver(wire); r != nil || !errors.Is(err, control.ErrUnsigned) {
		t.Errorf("unsigned ROLLBACK: reply %+v, %v; want no reply, control.ErrUnsigned", r, err)
	}

	// A trusted but stale command is answered "refused", naming host and deploy.
	stale := &control.Activate{Envelope: cmdEnv(), Release: testid.Parse("0123456789abcdef")}
	stale.Issued = a.now.Add(-time.Hour).UnixMilli()
	staleWire, _ := control.Sign(stale, goldenKey)
	if r, _ := a.deliver(staleWire); r == nil || r.Outcome != control.OutcomeRefused || r.Host != "web01" || r.Deploy != 99 || r.Command != control.TypeActivate {
		t.Errorf("stale ACTIVATE: reply %+v; want refused, identifying host, deploy and command", r)
	}

	if r, err := a.send(&control.Activate{Envelope: cmdEnv("web02"), Release: testid.Parse("0123456789abcdef")}, goldenKey); r != nil || !errors.Is(err, control.ErrNotForHost) {
		t.Errorf("command for web02: reply %+v, %v; want no reply, control.ErrNotForHost", r, err)
	}
	if r, err := a.deliver([]byte("LCCP garbage")); r != nil || !errors.Is(err, control.ErrMalformed) {
		t.Errorf("garbage: reply %+v, %v; want no reply, control.ErrMalformed", r, err)
	}
	reply, _ := (&control.Reply{Command: control.TypeStatus, Outcome: control.OutcomeFailed, Host: "x", Error: "e"}).AppendBinary(nil)
	if r, err := a.deliver(reply); r != nil || !errors.Is(err, control.ErrMalformed) {
		t.Errorf("a reply sent to the agent: reply %+v, %v; want no reply", r, err)
	}

	// A replayed STATUS that was answered gets the same answer again.
	st := &control.StatusRequest{Envelope: cmdEnv()}
	st.Issued = a.now.UnixMilli()
	wire, _ = control.Sign(st, goldenKey)
	r1, err := a.deliver(wire)
	if err != nil || r1.Outcome != control.OutcomeOK || r1.Status == nil || r1.Status.AgentVersion != "v9.9.9-test" || r1.Status.FreeBytes == 0 {
		t.Fatalf("STATUS on an empty store: %+v, %v", r1, err)
	}
	if r2, err := a.deliver(wire); err != nil || r2 != r1 {
		t.Errorf("retransmitted STATUS: %+v, %v; want the first reply again", r2, err)
	}

	// Once its answer is forgotten, the same STATUS is refused as a replay.
	var last *control.Reply
	var lastWire []byte
	for range maxAnswered {
		c := &control.StatusRequest{Envelope: cmdEnv()}
		a.now = a.now.Add(time.Second)
		c.Issued = a.now.UnixMilli()
		lastWire, _ = control.Sign(c, goldenKey)
		if last, err = a.deliver(lastWire); err != nil || last.Outcome != control.OutcomeOK {
			t.Fatalf("STATUS: %+v, %v", last, err)
		}
	}
	if r, err := a.deliver(wire); err != nil || r.Outcome != control.OutcomeRefused || !strings.Contains(r.Error, "replayed") {
		t.Errorf("replayed STATUS after its answer was forgotten: %+v, %v; want refused", r, err)
	}
	// A remembered one retransmitted after the time window is answered again.
	a.now = a.now.Add(control.MaxClockSkew + time.Second)
	if r, err := a.deliver(lastWire); err != nil || r != last {
		t.Errorf("STATUS retransmitted after the window: %+v, %v; want its first reply", r, err)
	}
	if !strings.Contains(a.logs.String(), `"msg":"control: command refused"`) {
		t.Errorf("refusals not logged:\n%s", a.logs)
	}
	if cur, _ := os.Readlink(a.store.CurrentPath()); cur != "" {
		t.Errorf("refused commands made current -> %s", cur)
	}
}

// TestHandlerApplies runs the commands against a real store.
func TestHandlerApplies(t *testing.T) {
	a := newAgent(t)
	a.needLoop()
	relA, relB, relC := a.stage("A"), a.stage("B"), a.stage("C")

	ok := func(r *control.Reply, err error, current image.ID) {
		t.Helper()
		if err != nil || r == nil || r.Outcome != control.OutcomeOK || r.Current != current {
			t.Fatalf("reply %+v, %v; want ok with current %s", r, err, current)
		}
		if got := a.served(); got != current {
			t.Fatalf("store serves %s, want %s", got, current)
		}
	}
	sendOK := func(c control.Command, current image.ID) {
		t.Helper()
		r, err := a.send(c, goldenKey)
		ok(r, err, current)
	}
	sendOK(&control.Activate{Envelope: cmdEnv(), Release: relA}, relA)
	act := &control.Activate{Envelope: cmdEnv("web00", "web01"), Release: relB}
	act.Issued = a.now.Add(time.Second).UnixMilli()
	a.now = a.now.Add(time.Second)
	wireB, _ := control.Sign(act, goldenKey)
	first, err := a.deliver(wireB)
	ok(first, err, relB)

	// The retransmitted ACTIVATE B, after a local rollback to A, answers as
	// before and does not switch again.
	if _, err := a.store.Rollback(image.ID{}); err != nil {
		t.Fatal(err)
	}
	if again, err := a.deliver(wireB); err != nil || again != first || a.served() != relA {
		t.Errorf("retransmitted ACTIVATE: %+v, %v, serving %s; want the first reply and A still served", again, err, a.served())
	}
	sendOK(&control.Activate{Envelope: cmdEnv(), Release: relB}, relB)

	// Downgrade: ACTIVATE A with B current fails; only ROLLBACK may name A.
	r, err := a.send(&control.Activate{Envelope: cmdEnv(), Release: relA}, goldenKey)
	if err != nil || r.Outcome != control.OutcomeFailed || !strings.Contains(r.Error, "older than current") || r.Current != relB {
		t.Errorf("downgrade ACTIVATE: %+v, %v; want failed, B still current", r, err)
	}
	sendOK(&control.Rollback{Envelope: cmdEnv(), To: relA}, relA)
	sendOK(&control.Rollback{Envelope: cmdEnv(), To: relA}, relA) // re-issued with a new nonce: already there
	sendOK(&control.Rollback{Envelope: cmdEnv()}, relB)

	r, err = a.send(&control.Activate{Envelope: cmdEnv(), Release: testid.Parse("0123456789abcdef")}, goldenKey)
	if err != nil || r.Outcome != control.OutcomeFailed || !strings.Contains(r.Error, "not staged") {
		t.Errorf("ACTIVATE of an unknown release: %+v, %v; want failed", r, err)
	}

	r, err = a.send(&control.StatusRequest{Envelope: cmdEnv()}, goldenKey)
	if err != nil || r.Outcome != control.OutcomeOK || r.Status == nil {
		t.Fatalf("STATUS: %+v, %v", r, err)
	}
	want := &control.Status{Previous: relA, FreeBytes: r.Status.FreeBytes, Staged: []image.ID{relC},
		AgentVersion: "v9.9.9-test", LastError: r.Status.LastError}
	if diff := cmp.Diff(want, r.Status); diff != "" || r.Current != relB || r.Status.FreeBytes == 0 {
		t.Errorf("STATUS reply current %s (-want +got):\n%s", r.Current, diff)
	}
	if !strings.Contains(r.Status.LastError, "not staged") {
		t.Errorf("STATUS last error %q, want the failed ACTIVATE", r.Status.LastError)
	}
	for _, msg := range []string{"control: command applied", "control: command failed", "control: status reported",
		"control: retransmitted command, answering again"} {
		if !strings.Contains(a.logs.String(), msg) {
			t.Errorf("log lacks %q", msg)
		}
	}
}

// needLoop gates the test and unmounts everything below the agent's
// directory when it ends, then waits until its loop devices are gone.
func (a *agent) needLoop() {
	t := a.t
	testenv.RequireLoop(t)
	t.Cleanup(func() { mounttest.Cleanup(t, a.dir) })
}

// stage builds an image whose id.txt says name, signs its manifest and
// stages it.
func (a *agent) stage(name string) image.ID {
	t := a.t
	img, man := buildImage(t, a.dir, name, goldenKey)
	id, err := a.store.Stage(context.Background(), image.ID{}, img, man)
	if err != nil {
		t.Fatal(err)
	}
	a.names[id] = name
	return id
}

// served returns the release id current resolves to, after checking that
// the mounted tree there is that release's.
func (a *agent) served() image.ID {
	real, err := filepath.EvalSymlinks(a.store.CurrentPath())
	if err != nil {
		return image.ID{}
	}
	id, err := image.ParseID(filepath.Base(real))
	if err != nil {
		a.t.Fatalf("current -> %s: %v", real, err)
	}
	if b, err := os.ReadFile(filepath.Join(real, "id.txt")); err != nil || string(b) != a.names[id] {
		a.t.Fatalf("current -> %s holds id.txt %q, %v; want %q", id, b, err, a.names[id])
	}
	return id
}

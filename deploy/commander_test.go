package deploy

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"maps"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testid"
)

var testKey = ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, ed25519.SeedSize))

// hostKey is host h's key in these tests.
func hostKey(h string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("host " + h))
	return ed25519.NewKeyFromSeed(seed[:])
}

// fakeAgents answers commands written to it as agents would, except that
// each host ignores the first `deaf[host]` transmissions it sees, and hosts
// in `silent` never answer.
type fakeAgents struct {
	mu     sync.Mutex
	hosts  []string
	deaf   map[string]int
	silent map[string]bool
	refuse map[string]string // host -> why it refuses every command
	// impostor: host -> the key its replies are signed with, instead of
	// its own (another machine answering in its name)
	impostor map[string]ed25519.PrivateKey
	seen     map[string]int
	sends    int
	// noGroup: host -> its IP; it hears no multicast, only what is sent
	// to that IP
	noGroup map[string]string
	*replyQueue
}

func newFakeAgents(hosts ...string) *fakeAgents {
	return &fakeAgents{hosts: hosts, deaf: map[string]int{}, silent: map[string]bool{}, refuse: map[string]string{}, seen: map[string]int{},
		replyQueue: newReplyQueue()}
}

// replyQueue is the read side of a fake control connection: the replies
// its WriteTo queued, read in order, with a read deadline. The fakes of
// these tests embed it.
type replyQueue struct {
	mu      sync.Mutex
	replies [][]byte
	wake    chan struct{}
	dl      time.Time
}

func newReplyQueue() *replyQueue { return &replyQueue{wake: make(chan struct{}, 1)} }

// push queues signed replies and wakes a reader.
func (q *replyQueue) push(bs ...[]byte) {
	q.mu.Lock()
	q.replies = append(q.replies, bs...)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *replyQueue) ReadFrom(p []byte) (int, net.Addr, error) {
	for {
		q.mu.Lock()
		if len(q.replies) > 0 {
			n := copy(p, q.replies[0])
			q.replies = q.replies[1:]
			q.mu.Unlock()
			return n, &net.UDPAddr{}, nil
		}
		dl := q.dl
		q.mu.Unlock()
		wait := time.Until(dl)
		if wait <= 0 {
			return 0, nil, os.ErrDeadlineExceeded
		}
		select {
		case <-q.wake:
		case <-time.After(wait):
		}
	}
}

func (q *replyQueue) SetReadDeadline(t time.Time) error {
	q.mu.Lock()
	q.dl = t
	q.mu.Unlock()
	return nil
}

func (q *replyQueue) Close() error { return nil }

func (f *fakeAgents) WriteTo(p []byte, to net.Addr) (int, error) {
	c, err := control.ParseCommand(p)
	if err != nil {
		return 0, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.sends++
	var out [][]byte
	ua, _ := to.(*net.UDPAddr)
	toGroup := ua == nil || ua.IP == nil
	for _, h := range f.hosts {
		if ip, deaf := f.noGroup[h]; deaf && (toGroup || ua.IP.String() != ip) || !deaf && !toGroup {
			continue // not for it, or it cannot hear it
		}
		f.seen[h]++
		if f.silent[h] || f.seen[h] <= f.deaf[h] {
			continue
		}
		e := c.Env()
		r := &control.Reply{Deploy: e.Deploy, Nonce: e.Nonce, Command: c.Type(), Outcome: control.OutcomeOK, Host: h, Current: rel("r1")}
		if why, ok := f.refuse[h]; ok {
			r.Outcome, r.Error, r.Current = control.OutcomeRefused, why, image.ID{}
		} else if c.Type() == control.TypeStatus {
			r.Status = &control.Status{Previous: rel("r0")}
		}
		key := hostKey(h)
		if k, ok := f.impostor[h]; ok {
			key = k
		}
		b, err := control.SignReply(r, key)
		if err != nil {
			return 0, err
		}
		out = append(out, b)
	}
	f.push(out...)
	return len(p), nil
}

func commander(f *fakeAgents, timeout time.Duration) *Commander {
	return &Commander{Conn: f, To: &net.UDPAddr{}, Group: "239.192.0.1:5000", Key: testKey, Timeout: timeout}
}

func TestCommanderRetransmitsToMissingHosts(t *testing.T) {
	f := newFakeAgents("a", "b", "c")
	f.deaf["b"] = 2 // b hears the third transmission
	c := commander(f, 5*time.Second)
	cmd := &control.Activate{Envelope: c.NewEnvelope(1, nil), Release: rel("r1")}
	tally, err := c.Do(context.Background(), cmd, []string{"a", "b", "c"})
	if err != nil {
		t.Fatal(err)
	}
	if !tally.Done() {
		t.Fatalf("missing %v", tally.Missing())
	}
	if f.sends != 3 {
		t.Errorf("sent the command %d times, want 3 (first + 2 retransmissions)", f.sends)
	}
}

// A host that hears no multicast gets the retransmissions by unicast at
// its known address, and answers; one with no known address stays
// missing.
func TestCommanderUnicastToDeafHost(t *testing.T) {
	f := newFakeAgents("a", "deaf", "lost")
	f.noGroup = map[string]string{"deaf": "10.0.0.7", "lost": "10.0.0.8"}
	c := commander(f, 500*time.Millisecond)
	c.To = &net.UDPAddr{Port: 5001}
	c.Unicast = map[string]string{"deaf": "10.0.0.7"}
	tally, err := c.Do(context.Background(), &control.StatusRequest{Envelope: c.NewEnvelope(1, nil)}, []string{"a", "deaf", "lost"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tally.Missing(); len(got) != 1 || got[0] != "lost" {
		t.Errorf("missing %v, want only lost (no address known)", got)
	}
}

func TestCommanderGivesUpOnSilentHost(t *testing.T) {
	f := newFakeAgents("a", "b")
	f.silent["b"] = true
	c := commander(f, 300*time.Millisecond)
	tally, err := c.Do(context.Background(), &control.StatusRequest{Envelope: c.NewEnvelope(1, nil)}, []string{"a", "b"})
	if err != nil {
		t.Fatal(err)
	}
	if got := tally.Missing(); len(got) != 1 || got[0] != "b" {
		t.Errorf("missing %v, want [b]", got)
	}
	if f.sends < 2 {
		t.Errorf("sent %d times; a silent host should be asked again", f.sends)
	}
}

// Attack: replies from made-up hosts, or in a real host's name signed by
// another key, would choose a rollback target. Only replies signed by the
// pinned key count; the others are named in the tally.
func TestCommanderCountsOnlyPinnedReplies(t *testing.T) {
	f := newFakeAgents("a", "b", "ghost")
	_, other, _ := ed25519.GenerateKey(nil)
	f.impostor = map[string]ed25519.PrivateKey{"b": other}
	pins, _ := hostkey.OpenPins("")
	for _, h := range []string{"a", "b"} {
		pins.Pin(h, hostKey(h).Public().(ed25519.PublicKey))
	}
	c := commander(f, 300*time.Millisecond)
	c.HostKeys = func(h string, k ed25519.PublicKey) error { return pins.Check(h, k, false) }
	tally, err := c.Do(context.Background(), &control.StatusRequest{Envelope: c.NewEnvelope(1, nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := tally.Replies(); len(got) != 1 || got["a"] == nil {
		t.Errorf("counted replies from %v, want only a", slices.Sorted(maps.Keys(got)))
	}
	ref := tally.Refused()
	if !strings.Contains(ref["b"], "pins key") || !strings.Contains(ref["ghost"], "not pinned") {
		t.Errorf("refused replies %q: want b's changed key and ghost's unknown one named", ref)
	}
}

func TestCommanderOpenGroupCollectsAll(t *testing.T) {
	f := newFakeAgents("x", "y", "z")
	c := commander(f, 200*time.Millisecond)
	tally, err := c.Do(context.Background(), &control.StatusRequest{Envelope: c.NewEnvelope(1, nil)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(tally.Replies()); n != 3 {
		t.Errorf("%d replies in an open group, want 3", n)
	}
}

func TestCommanderStopsOnCancel(t *testing.T) {
	f := newFakeAgents("a")
	f.silent["a"] = true
	c := commander(f, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Do(ctx, &control.StatusRequest{Envelope: c.NewEnvelope(1, nil)}, []string{"a"}); err == nil {
		t.Error("Do returned no error after its context ended")
	}
}

func TestMajorityAndRollbackTarget(t *testing.T) {
	st := []HostStatus{
		{ID: "a", Current: rel("r2"), Previous: rel("r1")},
		{ID: "b", Current: rel("r2"), Previous: rel("r1")},
		{ID: "c", Current: rel("r1"), Previous: rel("r0")},
		{ID: "d", Error: "no answer"},
	}
	if m := Majority(st); m != rel("r2") {
		t.Errorf("majority %q, want r2", m)
	}
	if p := majorityPrevious(st); p != rel("r1") {
		t.Errorf("rollback target %q, want r1", p)
	}
	flagOffMajority(st)
	for _, s := range st {
		if want := s.ID == "c"; s.OffMajor != want {
			t.Errorf("%s flagged off-majority = %v, want %v", s.ID, s.OffMajor, want)
		}
	}
}

func TestResultOutcome(t *testing.T) {
	for _, tc := range []struct {
		phases []string
		want   Outcome
	}{
		{[]string{PhaseActive, PhaseActive}, OutcomeAll},
		{[]string{PhaseActive, PhaseStaged}, OutcomePartial},
		{[]string{PhaseStaged, PhaseNone}, OutcomeNone},
		{nil, OutcomeNone},
	} {
		r := &Result{}
		for i, p := range tc.phases {
			r.Hosts = append(r.Hosts, HostResult{ID: string(rune('a' + i)), Phase: p})
		}
		if got := r.Outcome(); got != tc.want {
			t.Errorf("phases %v: outcome %v, want %v", tc.phases, got, tc.want)
		}
	}
}

func TestPreflightStopsOnRefusal(t *testing.T) {
	f := newFakeAgents("a", "b", "c")
	f.refuse["b"] = "control: command issued 3m0s in the future"
	f.silent["c"] = true
	err := preflight(context.Background(), commander(f, 300*time.Millisecond), []string{"a", "b", "c"})
	if err == nil || !strings.Contains(err.Error(), "b: control: command issued 3m0s in the future") {
		t.Errorf("preflight with a refusing host: %v; want an error naming b and why", err)
	}
	f = newFakeAgents("a", "b")
	f.silent["b"] = true // down hosts are the transfer's to report
	if err := preflight(context.Background(), commander(f, 300*time.Millisecond), []string{"a", "b"}); err != nil {
		t.Errorf("preflight with a silent host: %v, want nil", err)
	}
	if err := preflight(context.Background(), commander(newFakeAgents(), 300*time.Millisecond), nil); err != nil {
		t.Errorf("preflight of an open group: %v, want nil", err)
	}
}

func TestHopeless(t *testing.T) {
	abc := testid.Parse("00000000000000bc")
	for _, tc := range []struct {
		r    *control.Reply
		want bool
	}{
		{nil, false},
		{&control.Reply{Outcome: control.OutcomeRefused}, true},
		{&control.Reply{Outcome: control.OutcomeOK, Status: &control.Status{LastError: "release: stage 00000000000000bc: corrupt"}}, true},
		{&control.Reply{Outcome: control.OutcomeOK, Status: &control.Status{LastError: "release: stage 00000000000000ef: corrupt"}}, false},
		{&control.Reply{Outcome: control.OutcomeOK, Status: &control.Status{}}, false},
	} {
		if got := hopeless(tc.r, abc); got != tc.want {
			t.Errorf("hopeless(%+v) = %v, want %v", tc.r, got, tc.want)
		}
	}
}

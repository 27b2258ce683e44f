package multicast

import (
	"context"
	"crypto/ed25519"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/memnet"
)

// relayLab is a session with a relay: the sender and hosts a* on the
// session's network; the relay "rb" on it too, deaf to its multicast (a
// router between carries none), so it takes the unicast path; and hosts
// b* on the relay's own network, which nothing of the sender's reaches.
type relayLab struct {
	ts    *testSession
	down  *memnet.Net
	a, b  []string
	relay RelayOptions
	// results, by host: b* and the relay ("rb")
	mu   sync.Mutex
	res  map[string]*Result
	errs map[string]error
	rep  *Report // the relay's own session's
}

func newRelayLab(t *testing.T, downDrop func(from, to string, b []byte) bool) *relayLab {
	return newRelayLabOn(newTestSession(t, nil), downDrop)
}

// newRelayLabOn makes the lab of session ts.
func newRelayLabOn(ts *testSession, downDrop func(from, to string, b []byte) bool) *relayLab {
	t := ts.t
	ts.net.SetDrop(deafTo("rb"))
	l := &relayLab{ts: ts, down: memnet.New(downDrop), a: []string{"a1", "a2"}, b: []string{"b1", "b2", "b3"},
		res: map[string]*Result{}, errs: map[string]error{}}
	ts.send.Hosts, ts.send.Relays = append(append(slices.Clone(l.a), "rb"), l.b...), []string{"rb"}
	ts.send.HostKeys = pinnedTestKeys(ts.send.Hosts)
	ts.send.HostTimeout = 10 * time.Second // a relay fsyncing its image on a loaded test machine may be slow to answer
	uni := withUnicast(t, ts, ts.send.Hosts)
	l.relay = RelayOptions{ReceiveOptions: l.recvOptions("rb"), Down: l.down.Conn("rb-down", false), DownGroup: memnet.Group,
		HostTimeout: 2 * time.Second}
	uni("rb", &l.relay.ReceiveOptions)
	return l
}

// pinnedTestKeys accepts, for each host, only its test key: a relayed
// host counts only for what its own key signed.
func pinnedTestKeys(hosts []string) func(string, ed25519.PublicKey) error {
	return func(id string, k ed25519.PublicKey) error {
		if !slices.Contains(hosts, id) || !testHostKey(id).Public().(ed25519.PublicKey).Equal(k) {
			return &refusedKey{id}
		}
		return nil
	}
}

func (l *relayLab) recvOptions(h string) ReceiveOptions {
	return ReceiveOptions{HostID: h, HostKey: testHostKey(h), Out: filepath.Join(l.ts.dir, h+".img"), Trusted: []ed25519.PublicKey{l.ts.pub},
		SenderTimeout: 5 * time.Second, AnnounceTimeout: 15 * time.Second, Logger: testLogger(l.ts.t).With("host", h)}
}

// run runs the session: the sender and a* (ts.run), the relay, and b*,
// each host's options (the relay's too) from recv.
func (l *relayLab) run(recv func(h string, o *ReceiveOptions)) {
	if recv != nil {
		recv("rb", &l.relay.ReceiveOptions)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() {
		res, rep, err := Relay(ctx, l.ts.net.Conn("rb", true), l.relay)
		l.mu.Lock()
		l.res["rb"], l.rep, l.errs["rb"] = res, rep, err
		l.mu.Unlock()
	})
	for _, h := range l.b {
		o := l.recvOptions(h)
		if recv != nil {
			recv(h, &o)
		}
		conn := l.down.Conn(h, true)
		wg.Go(func() {
			res, err := Receive(ctx, conn, o)
			l.mu.Lock()
			l.res[h], l.errs[h] = res, err
			l.mu.Unlock()
		})
	}
	_, errs := l.ts.run(ctx, l.a, recv)
	wg.Wait()
	for _, h := range l.a {
		l.errs[h] = errs[h]
	}
}

// checkAll asserts every host completed with the right image, b* through
// the relay (their COMPLETE reached the sender signed by their own keys:
// HostKeys pins them), rb over the unicast path, a* by multicast.
func (l *relayLab) checkAll() {
	t := l.ts.t
	t.Helper()
	for _, h := range l.ts.send.Hosts {
		if l.errs[h] != nil {
			t.Fatalf("%s: %v", h, l.errs[h])
		}
		l.ts.checkImage(h)
	}
	if done, all := l.ts.report.Completed(); done != all || all != len(l.ts.send.Hosts) {
		t.Fatalf("report: %d of %d complete: %+v", done, all, l.ts.report.Hosts)
	}
	for _, hr := range l.ts.report.Hosts {
		want, via := PathMulticast, ""
		switch {
		case hr.ID == "rb":
			want = PathUnicast
		case slices.Contains(l.b, hr.ID):
			want, via = PathRelay, "rb"
		}
		if hr.Path != want || hr.Via != via {
			t.Errorf("%s: path %q via %q, want %q via %q", hr.ID, hr.Path, hr.Via, want, via)
		}
		if via != "" && hr.Feedback != 0 {
			t.Errorf("%s: the sender took %d NACKs from a host behind the relay", hr.ID, hr.Feedback)
		}
	}
}

// A relay takes the session over the unicast path and runs it on its own
// network: the hosts there complete with the right image, their COMPLETE
// reaches the sender signed by their own keys, and their loss (5%) is
// repaired by the relay: the sender hears none of their NACKs.
func TestRelay(t *testing.T) {
	l := newRelayLab(t, lossy(0.05, 5))
	l.run(nil)
	l.checkAll()
	r := l.ts.report
	if len(r.Relays) != 1 || r.Relays[0].ID != "rb" || r.Relays[0].Hosts != len(l.b) || r.Relays[0].DownBytes == 0 {
		t.Errorf("relays reported: %+v, want rb with %d hosts and the bytes it sent", r.Relays, len(l.b))
	}
	if l.rep == nil || l.rep.RepairPackets == 0 || l.rep.Rounds == 0 {
		t.Fatalf("the relay's session repaired nothing at 5%% loss: %+v", l.rep)
	}
	if done, all := l.rep.Completed(); done != len(l.b) || all != len(l.b) {
		t.Errorf("the relay's report: %d of %d complete", done, all)
	}
	t.Logf("sender: %d B multicast + %d B unicast; relay: %d B, %d data + %d repair packets, %d rounds",
		r.Bytes, r.UnicastBytes, l.rep.Bytes, l.rep.DataPackets, l.rep.RepairPackets, l.rep.Rounds)
}

// A relay tells the sender it holds only what it holds and every host
// behind it holds too. When they all hold the base, the sender pushes it
// only the changed chunks; a host that registers with it late, lacking
// the base, still gets every chunk: the relay asks the sender again for
// the frames of chunks it held but was never sent (relayWants).
func TestRelayHeldChunks(t *testing.T) {
	for _, late := range []bool{false, true} {
		t.Run(map[bool]string{false: "all hold the base", true: "a late host lacks it"}[late], func(t *testing.T) {
			ts, base, basePath := deltaSession(t, true)
			gate := time.Now().Add(2 * time.Second) // b3 hears the relay only from here, b1 its data
			l := newRelayLabOn(ts, func(from, to string, p []byte) bool {
				return late && from == "rb-down" && time.Now().Before(gate) &&
					(to == "b3" || to == "b1" && len(p) > 5 && (p[5] == 4 || p[5] == 7)) // DATA, REPAIR
			})
			if late {
				ts.send.Wait = time.Second // the transfer begins without b3
			}
			l.run(func(h string, o *ReceiveOptions) {
				if h != "b3" || !late {
					hostBase(t, ts, base, basePath, h, o, nil)
				}
			})
			l.checkAll()
			rb := hostReport(ts.report, "rb")
			changed := int64(len(deltaChanged)) * testChunk
			switch {
			case !late && rb.UnicastBytes > changed:
				t.Errorf("the relay took %d B over the unicast path, more than the %d B of changed chunks", rb.UnicastBytes, changed)
			case late && rb.UnicastBytes <= changed:
				t.Errorf("the relay took %d B over the unicast path: no frame asked again for the late host", rb.UnicastBytes)
			}
			t.Logf("the relay took %d B over the unicast path (%d changed chunks: at most %d B)", rb.UnicastBytes, len(deltaChanged), changed)
		})
	}
}

// Once the sender's session has ended, a frame the relay's subnet
// session waits for can no longer come: framesReady says so (an error
// naming the chunk) instead of leaving the subnet's session gated for
// ever; a frame in the store is still ready.
func TestRelayLinkStarvedAfterUpstream(t *testing.T) {
	l := newRelayLink()
	l.frames = make(chunkSet, 1)
	l.arrived(1)
	if ok, err := l.framesReady([]repairJob{{chunk: 2, whole: true}}); ok || err != nil {
		t.Fatalf("upstream running, frame 2 missing: ready %v, err %v; want to wait", ok, err)
	}
	l.endUp()
	if ok, err := l.framesReady([]repairJob{{chunk: 1, whole: true}}); !ok || err != nil {
		t.Errorf("upstream ended, frame 1 in the store: ready %v, err %v", ok, err)
	}
	ok, err := l.framesReady([]repairJob{{chunk: 2, whole: true}})
	if ok || err == nil || !strings.Contains(err.Error(), "chunk 2") {
		t.Errorf("upstream ended, frame 2 missing: ready %v, err %v; want an error naming chunk 2", ok, err)
	}
}

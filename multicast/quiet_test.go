package multicast

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/loopcast/loopcast/multicast/internal/wire"
)

// A group larger than quietHosts runs quiet rounds: every host completes
// under loss, with clearly less feedback than the same session with every
// host answering every round (in a small group every host answers every
// round: TestTransferLossy). Both sessions run here, one after the other,
// so the machine's load weighs on both: how well summaries silence hosts
// depends on when they reach them.
func TestQuietRounds(t *testing.T) {
	if testing.Short() {
		t.Skip("100 receivers in one process")
	}
	n := 2*quietHosts + 8
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("q%03d", i)
	}
	session := func() (*Report, int) {
		ts := newTestSession(t, lossy(0.02, 11))
		ts.send.Hosts, ts.send.Rate, ts.send.FECOverhead, ts.send.Wait = hosts, 20e6, AutoFEC, 20*time.Second
		ts.send.Logger = nil
		res, errs := ts.run(context.Background(), hosts, func(_ string, o *ReceiveOptions) {
			o.Logger, o.SenderTimeout, o.AnnounceTimeout = nil, 20*time.Second, 30*time.Second
		})
		suppressed := 0
		for _, h := range hosts {
			if errs[h] != nil {
				t.Fatalf("%s: %v", h, errs[h])
			}
			suppressed += res[h].Suppressed
		}
		if done, all := ts.report.Completed(); done != n || all != n {
			t.Fatalf("%d of %d complete", done, all)
		}
		return ts.report, suppressed
	}
	saved := quietHosts
	quietHosts = n + 1 // every host answers every round
	loud, _ := session()
	quietHosts = saved
	quiet, suppressed := session()
	t.Logf("%d hosts: %d NACK packets, at most %d in one round or probe, %d rounds, %d answers suppressed; every host answering: %d, at most %d",
		n, quiet.Feedback, quiet.FeedbackMax, quiet.Rounds, suppressed, loud.Feedback, loud.FeedbackMax)
	// Measured: quiet 76-297 NACK packets, every host answering 433-503.
	// A loss probe is answered by a sample of quietSample (64, about half
	// of this group by design), so the most in one round stays under n.
	if quiet.Feedback*4 >= loud.Feedback*3 || suppressed == 0 || quiet.FeedbackMax >= n {
		t.Errorf("%d NACK packets (at most %d in one round or probe) from %d hosts, %d suppressed, against %d with every host answering: not quiet",
			quiet.Feedback, quiet.FeedbackMax, n, suppressed, loud.Feedback)
	}
}

// A summary covers a host only when it asks at least as much for every
// block the host lacks and names every chunk the host lacks whole.
func TestSummaryCovers(t *testing.T) {
	ts := newTestSession(t, nil)
	r := &receiver{st: newStore(ts.m, &wire.Announce{SymbolSize: 1408, BlockSymbols: 64}, nil, nil)}
	st := r.st
	// chunk 0: nothing yet (asked whole); chunk 1: one block missing 2
	st.chunks[1].clen = 1408 * 10
	st.chunks[1].blocks = make([]blockState, 1)
	st.chunks[1].blocks[0].slots = make([]uint16, 8)
	for i := 2; i < len(st.chunks); i++ {
		st.chunks[i].done = true
	}
	for _, tc := range []struct {
		s    wire.Status
		want bool
	}{
		{wire.Status{Summary: true, Chunks: []wire.Range{{First: 0, Count: 1}}, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 2}}}, true},
		{wire.Status{Summary: true, Chunks: []wire.Range{{First: 0, Count: 3}}, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 5}}}, true},
		{wire.Status{Summary: true, Chunks: []wire.Range{{First: 0, Count: 1}}, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 1}}}, false}, // asks less
		{wire.Status{Summary: true, Blocks: []wire.BlockNeed{{Chunk: 1, Block: 0, Missing: 2}}}, false},                                             // chunk 0 not named
		{wire.Status{Summary: true, Chunks: []wire.Range{{First: 0, Count: 1}}}, false},                                                             // block not named
	} {
		if got := r.covered(&tc.s); got != tc.want {
			t.Errorf("covered(%+v) = %v, want %v", tc.s, got, tc.want)
		}
	}
}

// A covering summary silences a host's answer, but not when it has sent
// nothing for silencedHeartbeat: that answer is its heartbeat, without which
// the sender drops it.
func TestSummarySparesHeartbeat(t *testing.T) {
	ts := newTestSession(t, nil)
	r := &receiver{st: newStore(ts.m, &wire.Announce{SymbolSize: 1408, BlockSymbols: 64}, nil, nil), phase: recvReceiving,
		hbAfter: silencedHeartbeat - heartbeatEvery/2}
	for i := 1; i < len(r.st.chunks); i++ {
		r.st.chunks[i].done = true // chunk 0 lacked whole
	}
	now := time.Now()
	// a summary covering the host's needs silences it, however long it
	// has been silent: its own heartbeat keeps the sender hearing it
	for _, ago := range []time.Duration{time.Second, heartbeatEvery + time.Second, silencedHeartbeat + time.Second} {
		r.nackAt, r.nackDone, r.res.Suppressed = time.Time{}, 0, 0
		r.lastAnswer = now.Add(-ago)
		r.onQuietStatus(&wire.Status{Round: 7, Quiet: true, Hosts: 200}, now)
		if r.nackAt.IsZero() {
			t.Fatal("a host lacking a chunk does not plan an answer to a quiet round")
		}
		r.onQuietStatus(&wire.Status{Round: 7, Quiet: true, Hosts: 200, Summary: true, Chunks: []wire.Range{{First: 0, Count: 1}}}, now)
		if !r.nackAt.IsZero() {
			t.Errorf("last answer %v ago: not suppressed by a covering summary", ago)
		}
		if due := r.heartbeatDue(now); due != (ago >= r.hbAfter) {
			t.Errorf("last answer %v ago (heartbeat after %v): heartbeat due %v", ago, r.hbAfter, due)
		}
	}
	// the heartbeat's round is none the sender runs: it counts as life,
	// not in a round's feedback
	s := &sender{round: 3}
	s.countFeedback(heartbeatRound)
	if s.stats.Feedback != 1 || s.stats.FeedbackMax != 0 {
		t.Errorf("a heartbeat counted %d in all, %d in a round; want 1, 0", s.stats.Feedback, s.stats.FeedbackMax)
	}
}

// Of n hosts drawing a backoff, about one answers within the first tenth
// of the spread, most in its last part.
func TestBackoffSkew(t *testing.T) {
	const n = 2000
	early, late := 0, 0
	for range n {
		d := backoff(n)
		if d < 0 || d > quietSpread {
			t.Fatalf("backoff %v outside [0, %v]", d, quietSpread)
		}
		if d < quietSpread/10 {
			early++
		}
		if d > quietSpread*8/10 {
			late++
		}
	}
	if early > 10 || late < n/2 {
		t.Errorf("of %d backoffs, %d in the first tenth (want a handful) and %d in the last fifth (want most)", n, early, late)
	}
}

package control

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTally(t *testing.T) {
	c := &Activate{Envelope: env("h1", "h2", "h3"), Release: relA}
	tl := NewTally(c, c.Targets)
	reply := func(host string, o Outcome) *Reply {
		r := &Reply{Deploy: 42, Nonce: goldenNonce, Command: TypeActivate, Outcome: o, Host: host}
		if o != OutcomeOK {
			r.Error = "x"
		}
		return r
	}
	other := reply("h1", OutcomeOK)
	other.Nonce[0] ^= 1
	for _, tc := range []struct {
		r    *Reply
		want bool
	}{
		{other, false},                      // another command
		{reply("h9", OutcomeOK), false},     // not expected
		{reply("h1", OutcomeOK), true},      //
		{reply("h1", OutcomeFailed), false}, // the first reply counts
		{reply("h2", OutcomeRefused), true}, //
	} {
		if got := tl.Add(tc.r); got != tc.want {
			t.Errorf("Add(%+v) = %v, want %v", tc.r, got, tc.want)
		}
	}
	if got := tl.Missing(); !cmp.Equal(got, []string{"h3"}) || tl.Done() {
		t.Errorf("missing %v, done %v; want [h3], not done", got, tl.Done())
	}
	tl.Add(reply("h3", OutcomeOK))
	if !tl.Done() || !cmp.Equal(tl.Count(), map[Outcome]int{OutcomeOK: 2, OutcomeRefused: 1}) {
		t.Errorf("done %v, count %v", tl.Done(), tl.Count())
	}
	open := NewTally(c, nil)
	if !open.Add(reply("anyone", OutcomeOK)) || open.Done() || len(open.Missing()) != 0 {
		t.Error("an open tally takes any host and is never done")
	}
}

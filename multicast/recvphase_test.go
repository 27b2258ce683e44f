package multicast

import (
	"testing"
	"time"
)

// A receiver goes seeking → fetching → registering → receiving → done,
// or through verified when every chunk was local; a refused candidate
// sends it back to seeking, forgetting the session; an event that does not
// apply changes nothing.
func TestRecvPhases(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		events []recvEvent
		want   recvPhase
	}{
		{[]recvEvent{evCandidate, evManifest, evAcked, evInPlace}, recvDone},
		{[]recvEvent{evCandidate, evManifest, evInPlace}, recvVerified},
		{[]recvEvent{evCandidate, evManifest, evInPlace, evAcked}, recvDone},
		{[]recvEvent{evCandidate, evRefused}, recvSeeking},
		{[]recvEvent{evCandidate, evManifest, evRefused, evAcked, evAcked}, recvReceiving},
		{[]recvEvent{evManifest, evAcked, evInPlace}, recvSeeking},
	} {
		r := &receiver{}
		for _, e := range tc.events {
			r.on(e, now)
		}
		if r.phase != tc.want {
			t.Errorf("after %v: %v, want %v", tc.events, r.phase, tc.want)
		}
		if r.phase.inPlace() != !r.doneAt.IsZero() {
			t.Errorf("after %v: %v with doneAt %v", tc.events, r.phase, r.doneAt)
		}
	}
	if got := recvPhase(9).String(); got != "recvPhase(9)" {
		t.Errorf("got %q, want recvPhase(9)", got)
	}
}

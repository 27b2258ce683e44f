package control

import (
	"maps"
	"slices"
)

// Tally collects the replies to one command on the sender's side: which
// hosts answered and how, and which are still missing (to retransmit the
// command to, unchanged, until they answer or the sender gives up).
type Tally struct {
	cmd     Command
	hosts   map[string]bool // expected hosts; nil: any host may answer
	replies map[string]*Reply
	refused map[string]string // replies not counted, by host: why (an unpinned or changed host key)
}

// NewTally starts a tally for c, expecting replies from hosts (nil: from
// whoever answers, for an open group).
func NewTally(c Command, hosts []string) *Tally {
	t := &Tally{cmd: c, replies: make(map[string]*Reply)}
	if hosts != nil {
		t.hosts = make(map[string]bool, len(hosts))
		for _, h := range hosts {
			t.hosts[h] = true
		}
	}
	return t
}

// Add records r if it answers the tallied command from an expected host;
// it reports whether r was recorded. A host's first reply counts: a
// retransmission is answered with the same reply anyway.
func (t *Tally) Add(r *Reply) bool {
	e := t.cmd.Env()
	switch {
	case r.Nonce != e.Nonce || r.Deploy != e.Deploy || r.Command != t.cmd.Type():
		return false
	case t.hosts != nil && !t.hosts[r.Host]:
		return false
	case t.replies[r.Host] != nil:
		return false
	}
	t.replies[r.Host] = r
	return true
}

// Unverified notes a reply from host that was not counted because its
// host key was refused; the first reason per host is kept.
func (t *Tally) Unverified(host string, why error) {
	if t.refused == nil {
		t.refused = map[string]string{}
	}
	if _, ok := t.refused[host]; !ok && len(t.refused) < MaxTargets {
		t.refused[host] = why.Error()
	}
}

// Refused returns the hosts whose replies were not counted, and why.
func (t *Tally) Refused() map[string]string { return t.refused }

// Replies returns the replies by host.
func (t *Tally) Replies() map[string]*Reply { return t.replies }

// Missing returns the expected hosts that have not answered, sorted.
func (t *Tally) Missing() []string {
	var out []string
	for h := range t.hosts {
		if t.replies[h] == nil {
			out = append(out, h)
		}
	}
	slices.Sort(out)
	return out
}

// Done reports whether every expected host answered.
func (t *Tally) Done() bool { return t.hosts != nil && len(t.Missing()) == 0 }

// Count returns how many answered with each outcome.
func (t *Tally) Count() map[Outcome]int {
	n := map[Outcome]int{}
	for r := range maps.Values(t.replies) {
		n[r.Outcome]++
	}
	return n
}

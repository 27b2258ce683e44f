package agent

import (
	"crypto/ed25519"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/control"
)

// TestNewControl: the handler answers STATUS for its host and group, and
// refuses a command issued before the agent started.
func TestNewControl(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	started := time.Date(2026, 11, 22, 5, 0, 0, 0, time.UTC)
	h, err := NewControl(ControlConfig{
		Store: openStore(t, t.TempDir()), Keys: []ed25519.PublicKey{pub},
		Host: "web01", Group: "239.192.0.1:5000", Version: "test",
	}, started)
	if err != nil {
		t.Fatal(err)
	}
	status := func(issued time.Time) *control.Reply {
		t.Helper()
		wire, err := control.Sign(&control.StatusRequest{
			Envelope: control.NewEnvelope("239.192.0.1:5000", 1, nil, issued)}, key)
		if err != nil {
			t.Fatal(err)
		}
		r, err := h.Handle(wire, started.Add(time.Second))
		if err != nil || r == nil {
			t.Fatalf("Handle: %v, %v", r, err)
		}
		return r
	}
	if r := status(started.Add(time.Second)); r.Outcome != control.OutcomeOK || r.Host != "web01" || r.Status.AgentVersion != "test" {
		t.Errorf("STATUS: %+v", r)
	}
	if r := status(started.Add(-time.Second)); r.Outcome != control.OutcomeRefused || !strings.Contains(r.Error, "replay") {
		t.Errorf("STATUS issued before the start: %+v, want refused", r)
	}
	if _, err := NewControl(ControlConfig{Host: "web01", Group: "g"}, started); err == nil {
		t.Error("NewControl without keys succeeded")
	}
}

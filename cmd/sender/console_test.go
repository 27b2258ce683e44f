package main

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/multicast"
)

// Not a terminal: one plain line per event, with the time since the start;
// the session's detail only when verbose; phases once each.
func TestConsolePlain(t *testing.T) {
	var w bytes.Buffer
	k := &console{w: &w, start: time.Now()}
	log := k.Logger()
	log.Info("deploy: built release", "release", "abc")
	log.Debug("multicast: repair round", "session", "00000001", "round", 3, "chunks", 0)
	log.Warn("multicast: host refuses the session", "host", "r2", "detail", "does not trust the key")
	for _, ph := range []multicast.SendPhase{multicast.PhaseRegistering, multicast.PhaseSending, multicast.PhaseSending, multicast.PhaseRepairing, multicast.PhaseDone} {
		k.Progress(deploy.Progress{Phase: "transfer", Transfer: multicast.SendProgress{Phase: ph}})
	}
	k.Progress(deploy.Progress{Phase: "stage"})
	k.Close()
	out := w.String()
	stamped := regexp.MustCompile(`(?m)^\[ *[0-9]+\.[0-9]{3}s\] `)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for _, l := range lines {
		if !stamped.MatchString(l) {
			t.Errorf("line without a timestamp: %q", l)
		}
		if strings.Contains(l, "\x1b") {
			t.Errorf("a control sequence off a terminal: %q", l)
		}
	}
	if strings.Contains(out, "round=3") {
		t.Errorf("detail printed without -v:\n%s", out)
	}
	for _, want := range []string{"deploy: built release release=abc", `warning: multicast: host refuses the session host=r2 detail="does not trust the key"`, "transfer registering:", "transfer sending:", "transfer repairing:", "stage:"} {
		if strings.Count(out, want) != 1 {
			t.Errorf("%q printed %d times, want once:\n%s", want, strings.Count(out, want), out)
		}
	}
}

// --json-events: every event one JSON object, the detail included.
func TestConsoleEvents(t *testing.T) {
	var w, events bytes.Buffer
	k := &console{w: &w, start: time.Now(), events: json.NewEncoder(&events)}
	log := k.Logger()
	log.Info("deploy: built release", "release", "abc")
	log.Debug("multicast: repair round", "round", 1)
	k.Progress(deploy.Progress{Phase: "transfer"})
	k.Report(&w, &deploy.Result{ReleaseID: testid.Of("abc")}, false)
	kinds, texts := []string{}, []string{}
	dec := json.NewDecoder(&events)
	for dec.More() {
		var e event
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		kinds, texts = append(kinds, e.Kind), append(texts, e.Text)
	}
	if got := strings.Join(kinds, ","); got != "log,detail,progress,report" {
		t.Errorf("events %s, want log,detail,progress,report", got)
	}
	if len(texts) < 2 || texts[0] != "deploy: built release release=abc" || texts[1] != "multicast: repair round round=1" {
		t.Errorf("event texts %q, want each record's message and attributes", texts)
	}
	if strings.Contains(w.String(), "repair round") {
		t.Errorf("detail printed without -v:\n%s", w.String())
	}
}

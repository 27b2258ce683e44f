package deploy

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/multicast"
)

// TestResultJSON: the report `sender deploy --json` prints keeps its names
// and meaning; the transfer's figures come from its report. The golden
// texts were printed by the Result before it kept them once.
func TestResultJSON(t *testing.T) {
	id := testid.Parse("00112233aabbccdd")
	r := &Result{ReleaseID: id, DeployID: 42, BuildTime: time.Second, StageTime: 4 * time.Second, SwitchTime: 5 * time.Second,
		Transfer: &multicast.Report{Bytes: 4096, UnicastBytes: 512, ChunksTotal: 10, ChunksZero: 2, ChunksReused: 3, ChunksSent: 5,
			DeltaChunks: 1, Registration: 2 * time.Second, Duration: 5 * time.Second},
		Switched: true, Halted: "the canary unhealthy", NotBack: []string{"b"}, Hosts: []HostResult{
			{ID: "a", Addr: "10.0.0.1:5000", Phase: PhaseActive, Current: id, Done: time.Second, StageTime: time.Millisecond, Needed: 100, Path: "multicast"},
			{ID: "b", Phase: PhaseRefused, Error: "refused: x", Cause: "no-space"},
		}}
	for _, tc := range []struct {
		r    *Result
		want string
	}{{r, goldenResult}, {&Result{ReleaseID: id}, goldenEmptyResult}} {
		b, err := json.MarshalIndent(tc.r, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(tc.want, string(b)); d != "" {
			t.Errorf("JSON report (-want +got):\n%s", d)
		}
	}
}

const goldenResult = `{
  "release": "00112233aabbccdd",
  "deploy_id": 42,
  "hosts": [
    {
      "id": "a",
      "addr": "10.0.0.1:5000",
      "phase": "active",
      "current": "00112233aabbccdd",
      "done_ns": 1000000000,
      "stage_ns": 1000000,
      "needed_bytes": 100,
      "path": "multicast"
    },
    {
      "id": "b",
      "phase": "refused",
      "error": "refused: x",
      "cause": "no-space",
      "needed_bytes": 0
    }
  ],
  "wire_bytes": 4096,
  "unicast_bytes": 512,
  "chunks_total": 10,
  "chunks_zero": 2,
  "chunks_reused": 3,
  "chunks_sent": 5,
  "chunks_delta": 1,
  "build_ns": 1000000000,
  "register_ns": 2000000000,
  "transfer_ns": 3000000000,
  "stage_ns": 4000000000,
  "switch_ns": 5000000000,
  "switched": true,
  "halted": "the canary unhealthy",
  "not_back": [
    "b"
  ],
  "outcome": "partial"
}`

const goldenEmptyResult = `{
  "release": "00112233aabbccdd",
  "deploy_id": 0,
  "hosts": null,
  "wire_bytes": 0,
  "unicast_bytes": 0,
  "chunks_total": 0,
  "chunks_zero": 0,
  "chunks_reused": 0,
  "chunks_sent": 0,
  "chunks_delta": 0,
  "build_ns": 0,
  "register_ns": 0,
  "transfer_ns": 0,
  "stage_ns": 0,
  "switch_ns": 0,
  "switched": false,
  "outcome": "none"
}`

// A host reached through a relay keeps its relay in its line, staged by
// its own COMPLETE; commands' replies are taken from its own address, as
// the relay reported it, or else the one known for it.
func TestRelayedHostLine(t *testing.T) {
	r := &Result{}
	staged, ask := r.fromTransfer(&multicast.Report{Hosts: []multicast.HostReport{
		{ID: "b1", Member: true, State: multicast.HostComplete, Staged: true, Path: multicast.PathRelay, Via: "rb", Addr: "10.0.2.11:5000"},
		{ID: "b2", Member: true, State: multicast.HostComplete, Staged: true, Path: multicast.PathRelay, Via: "rb"},
		{ID: "rb", Member: true, State: multicast.HostComplete, Staged: true, Path: multicast.PathUnicast, Addr: "10.0.2.10:40000"},
	}})
	if len(staged) != 3 || len(ask) != 0 {
		t.Errorf("staged %v, to ask %v: want all three staged by their COMPLETE", staged, ask)
	}
	if h := r.host("b1"); h.Path != multicast.PathRelay || h.Via != "rb" || h.Addr != "10.0.2.11:5000" {
		t.Errorf("b1's line: %+v", *h)
	}
	got := r.addrs(map[string]string{"b2": "10.0.2.12", "rb": "10.9.9.9"})
	want := map[string]string{"b1": "10.0.2.11", "b2": "10.0.2.12", "rb": "10.0.2.10"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("reply addresses (-want +got):\n%s", d)
	}
}

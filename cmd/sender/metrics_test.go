package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/internal/testid"
	"github.com/loopcast/loopcast/multicast"
)

func TestWriteDeployMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), "loopcast.prom")
	res := &deploy.Result{ReleaseID: testid.Parse("00112233aabbccdd"), Transfer: &multicast.Report{Bytes: 4096, ChunksSent: 3}, BuildTime: 1500 * time.Millisecond,
		Hosts: []deploy.HostResult{{ID: "a", Phase: deploy.PhaseActive}, {ID: "b", Phase: deploy.PhaseActive}, {ID: "c", Phase: deploy.PhaseRefused}}}
	if err := writeDeployMetrics(path, "239.192.0.1:5000", "v42", res, time.Unix(1_700_000_000, 0)); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`loopcast_deploy_release_info{group="239.192.0.1:5000",label="v42",release="00112233aabbccdd"} 1`,
		`loopcast_deploy_outcome{group="239.192.0.1:5000",outcome="partial"} 1`,
		`loopcast_deploy_outcome{group="239.192.0.1:5000",outcome="all"} 0`,
		`loopcast_deploy_hosts{group="239.192.0.1:5000",phase="active"} 2`,
		`loopcast_deploy_hosts{group="239.192.0.1:5000",phase="refused"} 1`,
		`loopcast_deploy_phase_seconds{group="239.192.0.1:5000",phase="build"} 1.5`,
		`loopcast_deploy_wire_bytes{group="239.192.0.1:5000"} 4096`,
		`loopcast_deploy_timestamp_seconds{group="239.192.0.1:5000"} 1.7e+09`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics file lacks %s:\n%s", want, b)
		}
	}
}

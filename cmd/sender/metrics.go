package main

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/loopcast/loopcast/deploy"
)

// writeDeployMetrics writes a deploy's report to path in Prometheus's text
// format, for node_exporter's textfile collector; the file is replaced
// atomically (client_golang writes a temporary file and renames it).
func writeDeployMetrics(path, group, label string, res *deploy.Result, at time.Time) error {
	reg := prometheus.NewRegistry()
	g := prometheus.Labels{"group": group}
	gauge := func(name, help string, labels prometheus.Labels, v float64) {
		all := prometheus.Labels{}
		for k, x := range g {
			all[k] = x
		}
		for k, x := range labels {
			all[k] = x
		}
		m := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help, ConstLabels: all})
		m.Set(v)
		reg.MustRegister(m)
	}
	gauge("loopcast_deploy_timestamp_seconds", "When the last deploy to the group ended.", nil, float64(at.Unix()))
	gauge("loopcast_deploy_release_info", "The release the last deploy shipped.", prometheus.Labels{"release": res.ReleaseID.String(), "label": label}, 1)
	outcome := res.Outcome().String()
	if res.Halted != "" {
		outcome = "halted"
	}
	for _, o := range []string{"all", "partial", "none", "halted"} {
		v := 0.0
		if o == outcome {
			v = 1
		}
		gauge("loopcast_deploy_outcome", "1 for how the last deploy ended: all, partial, none (hosts switched), halted (a health gate).",
			prometheus.Labels{"outcome": o}, v)
	}
	phases := map[string]int{}
	for _, h := range res.Hosts {
		phases[h.Phase]++
	}
	for _, p := range []string{deploy.PhaseNone, deploy.PhaseRefused, deploy.PhaseTransferred, deploy.PhaseStaged, deploy.PhaseActive, deploy.PhaseRolledBack} {
		gauge("loopcast_deploy_hosts", "Hosts of the last deploy by the phase they reached.", prometheus.Labels{"phase": p}, float64(phases[p]))
	}
	for phase, d := range map[string]time.Duration{
		"build": res.BuildTime, "register": res.RegisterTime(), "transfer": res.TransferTime(), "stage": res.StageTime, "switch": res.SwitchTime,
	} {
		gauge("loopcast_deploy_phase_seconds", "How long each phase of the last deploy took.", prometheus.Labels{"phase": phase}, d.Seconds())
	}
	t := res.TransferReport()
	gauge("loopcast_deploy_wire_bytes", "Bytes the last deploy put on the wire.", nil, float64(t.Bytes))
	gauge("loopcast_deploy_unicast_bytes", "Bytes the last deploy sent over TCP to hosts that heard no multicast.", nil, float64(t.UnicastBytes))
	gauge("loopcast_deploy_chunks_sent", "Chunks the last deploy sent (the rest the hosts held, or were all zeros).", nil, float64(t.ChunksSent))
	if err := prometheus.WriteToTextfile(path, reg); err != nil {
		return fmt.Errorf("deploy: --metrics-file: %w", err)
	}
	return nil
}

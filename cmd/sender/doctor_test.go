package main

import (
	"net"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/deploy"
)

// TestHostFindings: a host that answers on the control port but missed
// the data-port probe, one with a small MTU and one whose agent reports a
// problem are each named with the fix; a healthy one passes.
func TestHostFindings(t *testing.T) {
	group := &net.UDPAddr{IP: net.IPv4(239, 192, 0, 1), Port: 5000}
	probe := [16]byte{9}
	st := []deploy.HostStatus{
		{ID: "good", Probe: probe, MTU: 1500, Version: "dev"},
		{ID: "deafdata", MTU: 1500, Version: "dev"},
		{ID: "smallmtu", Probe: probe, MTU: 1280, Version: "dev"},
		{ID: "noloop", Probe: probe, Version: "dev", Problems: "no loop devices: /dev/loop-control: not found (modprobe loop)"},
	}
	fail := map[string]string{}
	for _, f := range hostFindings(st, nil, group, probe, 0) {
		if f.Level == "FAIL" {
			fail[f.Host] += f.Check + ": " + f.Detail + " / " + f.Fix + "\n"
		}
	}
	if fail["good"] != "" {
		t.Errorf("a healthy host fails: %s", fail["good"])
	}
	for host, want := range map[string]string{
		"deafdata": "data port: answers commands on port 5001 but heard no probe multicast to 239.192.0.1:5000",
		"smallmtu": "mtu: its group interface has MTU 1280",
		"noloop":   "agent: no loop devices",
	} {
		if !strings.Contains(fail[host], want) {
			t.Errorf("%s: findings %q, want %q", host, fail[host], want)
		}
	}
}

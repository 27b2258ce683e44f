package agent

import (
	"net"
	"os"
	"sync"
)

// doctorState is what the agent tells `sender doctor` in its STATUS
// replies: the last probe heard on the group's data port, the MTU of the
// interface it joined the group on, and what it finds wrong with itself.
type doctorState struct {
	iface string

	mu    sync.Mutex
	probe [16]byte
}

func (d *doctorState) heard(nonce [16]byte) {
	if d == nil {
		return
	}
	d.mu.Lock()
	d.probe = nonce
	d.mu.Unlock()
}

// report returns the last probe's nonce, the interface's MTU (0 when the
// agent joined on the default interface) and the problems found.
func (d *doctorState) report() (probe [16]byte, mtu uint16, problems string) {
	if d == nil {
		return probe, 0, ""
	}
	d.mu.Lock()
	probe = d.probe
	d.mu.Unlock()
	if d.iface != "" {
		if ifi, err := net.InterfaceByName(d.iface); err == nil && ifi.MTU > 0 && ifi.MTU < 1<<16 {
			mtu = uint16(ifi.MTU)
		} else if err != nil {
			problems = "interface " + d.iface + ": " + err.Error()
		}
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		problems = join(problems, "no loop devices: /dev/loop-control: "+err.Error()+" (modprobe loop)")
	}
	return probe, mtu, problems
}

func join(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

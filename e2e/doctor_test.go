package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestReceiverDoctor: on a healthy cluster host `receiver doctor` finds
// nothing; with the group's port dropped by the host's firewall it names
// the rule and the fix, and exits 1.
func TestReceiverDoctor(t *testing.T) {
	c, _, _ := newTestCluster(t, "x")
	doctor := func(i int) (string, error) {
		h := c.name + "-r" + string(rune('0'+i))
		r := filepath.Join(c.dir, "r"+string(rune('0'+i)))
		out, err := c.script("exec", h, filepath.Join(c.bin, "receiver"), "doctor", "--root", r, "--iface", "eth0",
			"--trust", filepath.Join(c.dir, "trust.pub"), "--php-fpm", filepath.Join(c.dir, "web-r"+string(rune('0'+i)), "php.sock"))
		return string(out), err
	}
	if out, err := doctor(2); err != nil {
		t.Fatalf("doctor on a healthy host: %v\n%s", err, out)
	} else {
		for _, want := range []string{"ok  group membership", "239.192.0.1 joined on eth0", "pool answers"} {
			if !strings.Contains(out, want) {
				t.Errorf("doctor output lacks %q:\n%s", want, out)
			}
		}
	}
	if out, err := c.script("exec", c.name+"-r1", "iptables", "-A", "INPUT", "-p", "udp", "--dport", "5000", "-j", "DROP"); err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}
	out, err := doctor(1)
	if code := exitCode(err); code != 1 {
		t.Fatalf("doctor with the group's port dropped: exit %d, want 1\n%s", code, out)
	}
	for _, want := range []string{"FAIL  firewall", "--dport 5000 -j DROP", "fix: accept UDP to 239.192.0.1 ports 5000-5001"} {
		if !strings.Contains(out, want) {
			t.Errorf("doctor output lacks %q:\n%s", want, out)
		}
	}
}

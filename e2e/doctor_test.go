package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestDoctors: on a healthy cluster `sender doctor` and `receiver doctor`
// find nothing; with the group's data port dropped by a host's firewall
// `receiver doctor` there names the rule and the fix and `sender doctor`
// names the host's data port, and with the group dropped altogether
// `sender doctor` names the host; both exit 1.
func TestDoctors(t *testing.T) {
	c, work, key := newTestCluster(t, "x")
	senderDoctor := func() (string, error) {
		out, log, err := c.sender("doctor", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3", "--state-dir", filepath.Join(work, "state"))
		return out + log, err
	}
	// the agents are up once they answer (they join the group after their
	// store is ready, which is all cluster.sh waits for)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		_, _, err := c.sender("status", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3", "--state-dir", filepath.Join(work, "state"), "--timeout", "1s")
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the agents do not answer STATUS: %v", err)
		}
	}
	if out, err := senderDoctor(); err != nil {
		t.Fatalf("sender doctor on a healthy cluster: %v\n%s", err, out)
	} else if n := len(regexp.MustCompile(`(?m)^ok\s+r[123]\s+hears the group`).FindAllString(out, -1)); n != 3 {
		t.Errorf("sender doctor reports %d hosts hearing the group, want 3:\n%s", n, out)
	} else if n := len(regexp.MustCompile(`(?m)^ok\s+r[123]\s+data port`).FindAllString(out, -1)); n != 3 {
		t.Errorf("sender doctor reports %d hosts hearing the data port, want 3:\n%s", n, out)
	}
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
	// r1 drops the data port only, r3 hears nothing of the group: the
	// sender's doctor names both, each for what it lacks
	if out, err := c.script("exec", c.name+"-r3", "iptables", "-A", "INPUT", "-d", "239.192.0.1", "-j", "DROP"); err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}
	out, err = senderDoctor()
	if code := exitCode(err); code != 1 {
		t.Fatalf("sender doctor with r3 deaf: exit %d, want 1\n%s", code, out)
	}
	if !regexp.MustCompile(`FAIL\s+r3\s+hears the group`).MatchString(out) || regexp.MustCompile(`FAIL\s+r2`).MatchString(out) ||
		!regexp.MustCompile(`FAIL\s+r1\s+data port\s+answers commands on port 5001 but heard no probe`).MatchString(out) ||
		!strings.Contains(out, "fix: on r1: accept UDP to 239.192.0.1 ports 5000-5001") {
		t.Errorf("sender doctor should name r1 (data port) and r3 (the group), and not r2:\n%s", out)
	}
}

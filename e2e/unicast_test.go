package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUnicastFallbackOnCluster: r3's firewall drops the multicast group
// (iptables, in its own namespace). The deploy still switches all three
// hosts, r3 by the unicast path (announced to at the address it took part
// from in the last deploy, the release fetched over TCP, every command
// retransmitted to it by unicast); a rollback reaches it the same way; with
// --no-unicast it is left out, as before.
func TestUnicastFallbackOnCluster(t *testing.T) {
	c, work, key := newTestCluster(t, "u")
	app := filepath.Join(work, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(work, "state")
	release := func(v string) {
		if err := os.WriteFile(filepath.Join(app, "index.php"), []byte("<?php echo '"+v+"';\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	common := []string{"--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3", "--state-dir", state}
	deploy := func(extra ...string) (string, time.Duration, int) {
		args := append(append([]string{"deploy", "--wait", "5s", "--epoch", "1700000000"}, common...), extra...)
		start := time.Now()
		out, log, err := c.sender(append(args, app)...)
		return out + log, time.Since(start), exitCode(err)
	}
	release("v1")
	out, full, code := deploy()
	if code != 0 {
		t.Fatalf("deploy v1: exit %d\n%s", code, out)
	}
	if addrs, err := os.ReadFile(filepath.Join(state, "known_addrs")); err != nil || !strings.Contains(string(addrs), "r3 10.77.0.13") {
		t.Fatalf("known_addrs after a deploy: %v\n%s", err, addrs)
	}
	drop := []string{"iptables", "-I", "INPUT", "-d", "224.0.0.0/4", "-j", "DROP"}
	if out, err := c.script(append([]string{"exec", c.name + "-r3"}, drop...)...); err != nil {
		t.Fatalf("iptables on r3: %v\n%s", err, out)
	}

	release("v2")
	out, deaf, code := deploy()
	t.Logf("deploy with every host hearing multicast: %v; with r3 deaf to it: %v\n%s", full, deaf, out)
	if code != 0 {
		t.Fatalf("deploy v2 with r3 deaf to multicast: exit %d, want 0 (all switched)\n%s", code, out)
	}
	if !hostLine(out, "r3", "active", "unicast") || !hostLine(out, "r1", "active", "multicast") {
		t.Errorf("report: want r3 active by unicast and r1 by multicast:\n%s", out)
	}
	if !strings.Contains(out, "unicast to 1 host that heard no multicast") {
		t.Errorf("report does not say what the unicast path carried:\n%s", out)
	}
	for _, h := range []string{"r1", "r3"} {
		if got := c.current(h); !strings.Contains(got, "v2") {
			t.Errorf("%s serves %q after the deploy, want v2", h, got)
		}
	}

	// sender doctor tells a host that answers only by unicast from one that
	// is down: it does not hear the group
	dout, dlog, derr := c.sender(append([]string{"doctor"}, common...)...)
	if exitCode(derr) != 1 || !strings.Contains(dout, "answers one sent by unicast to 10.77.0.13") {
		t.Errorf("sender doctor with r3 deaf to multicast: exit %d, want 1 naming r3 as not hearing the group:\n%s%s", exitCode(derr), dout, dlog)
	}

	if out, log, err := c.sender(append([]string{"rollback"}, common...)...); err != nil {
		t.Fatalf("rollback with r3 deaf to multicast: %v\n%s%s", err, out, log)
	}
	if got := c.current("r3"); !strings.Contains(got, "v1") {
		t.Errorf("r3 serves %q after the rollback, want v1", got)
	}

	release("v3")
	out, _, code = deploy("--no-unicast", "--require", "60%")
	if code != 2 || !hostLine(out, "r3", "none") || !strings.Contains(out, "never registered") {
		t.Errorf("deploy --no-unicast: exit %d, want 2 (partial) with r3 never registered:\n%s", code, out)
	}
}

// hostLine reports whether the report's line for host holds every word.
func hostLine(report, host string, words ...string) bool {
	for _, l := range strings.Split(report, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 || f[0] != host {
			continue
		}
		ok := true
		for _, w := range words {
			ok = ok && strings.Contains(l, w)
		}
		if ok {
			return true
		}
	}
	return false
}

// current is what host rI's web root serves: index.php of its current
// release, read through the current symlink.
func (c *cluster) current(host string) string {
	b, err := os.ReadFile(filepath.Join(c.dir, host, "current", "index.php"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

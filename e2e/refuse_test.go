package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestRefusalsOnCluster: a sender signing with a key the agents do not
// trust, then an impostor under a pinned host's id. The report names each
// cause instead of "never registered", and the deploy claims nothing.
func TestRefusalsOnCluster(t *testing.T) {
	c, work, key := newTestCluster(t, "f")
	app := filepath.Join(work, "app")
	if err := os.MkdirAll(app, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(app, "index.php"), []byte("<?php echo 1;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(work, "other.key")
	if out, err := exec.Command(filepath.Join(c.bin, "sender"), "keygen", "--out", other).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	state := filepath.Join(work, "state")
	deploy := func(key string, extra ...string) (string, int) {
		args := append([]string{"deploy", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3", "--wait", "5s",
			"--state-dir", state, "--epoch", "1700000000"}, extra...)
		out, log, err := c.sender(append(args, app)...)
		return out + log, exitCode(err)
	}
	out, code := deploy(other)
	if code != 3 || strings.Contains(out, "never registered") || strings.Count(out, "does not trust the key") < 3 {
		t.Errorf("deploy signed by an untrusted key: exit %d; want 3 and every host refusing for the key:\n%s", code, out)
	}
	// a host whose disk cannot hold the release (its agent keeps a reserve
	// larger than the disk) says so; the others are unaffected
	wipe := func(env ...string) {
		if out, err := c.scriptEnv(env, "wipe", "2"); err != nil {
			t.Fatalf("wipe r2: %v\n%s", err, out)
		}
	}
	wipe("LOOPCAST_RESERVE=1000000000000000")
	out, code = deploy(key, "--require", "60%")
	if code != 0 && code != 2 || !strings.Contains(out, "refused: not enough disk on") || !strings.Contains(out, "TiB reserve, ") {
		t.Errorf("deploy with r2's disk too small: exit %d; want r2 refused for disk, naming the reserve:\n%s", code, out)
	}
	if n := strings.Count(out, " staged ") + strings.Count(out, " active "); n < 2 {
		t.Errorf("the healthy hosts did not take the release beside the full one:\n%s", out)
	}
	wipe()
	// the agent says so too: receiver status shows its last refusal
	st, err := exec.Command(filepath.Join(c.bin, "receiver"), "status", "--root", filepath.Join(c.dir, "r1")).CombinedOutput()
	if err != nil || !strings.Contains(string(st), "last refusal") || !strings.Contains(string(st), "untrusted-key") {
		t.Errorf("receiver status on r1 after refusing: %v\n%s", err, st)
	}
	// pin the real hosts' keys, then let another key answer as r3
	if out, code := deploy(key); code != 0 {
		t.Fatalf("deploy: exit %d\n%s", code, out)
	}
	known, err := os.ReadFile(filepath.Join(state, "known_hosts"))
	if err != nil || strings.Count(string(known), "ed25519:") != 3 {
		t.Fatalf("known_hosts after a deploy to 3 hosts: %v\n%s", err, known)
	}
	// pin another key for r3: r3's real agent is then the impostor
	if err := os.WriteFile(filepath.Join(state, "known_hosts"), []byte(replaceKey(string(known), "r3")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(app+"/index.php", []byte("<?php echo 2;\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = deploy(key)
	if code != 3 || !strings.Contains(out, "refused by this sender: host r3 presented key") {
		t.Errorf("deploy with r3's key changed: exit %d; want 3 (require all) and r3 refused for its key:\n%s", code, out)
	}
}

// replaceKey pins another key for host in a known_hosts text.
func replaceKey(known, host string) string {
	var out []string
	for _, l := range strings.Split(known, "\n") {
		if strings.HasPrefix(l, host+" ") {
			l = host + " ed25519:" + strings.Repeat("A", 43) + "="
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCanaryRollout deploys with a canary and a health gate: a release
// whose health page fails is switched on the canary only, then switched
// back, every host ends on the old release and the deploy exits 4; a
// healthy release goes out wave by wave to every host.
func TestCanaryRollout(t *testing.T) {
	c, work, key := newTestCluster(t, "c")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialIn(c.name + "-s")}}
	var hosts []string
	for i := 1; i <= c.n; i++ {
		hosts = append(hosts, c.hostAddr(i))
	}
	deploy := func(label, health string, extra ...string) (string, error) {
		app := appVersion(t, c.repo, work, label)
		if err := os.WriteFile(filepath.Join(app, "public", "health.php"), []byte(health), 0o644); err != nil {
			t.Fatal(err)
		}
		args := append([]string{"deploy", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3",
			"--state-dir", filepath.Join(work, "state"), "--epoch", "1700000000"}, extra...)
		out, log, err := c.sender(append(args, app)...)
		return out + log, err
	}
	const healthy = "<?php echo \"ok\\n\";"
	const failing = "<?php http_response_code(500); echo \"database unreachable\\n\";"
	gate := []string{"--canary", "1", "--waves", "50%", "--health", "/health.php"}

	if out, err := deploy("v1", healthy); err != nil {
		t.Fatalf("deploy v1: %v\n%s", err, out)
	}
	checkServing(t, client, hosts, "v1", "after v1")

	out, err := deploy("bad", failing, gate...)
	if code := exitCode(err); code != 4 {
		t.Fatalf("deploy of an unhealthy release: exit %d, want 4 (halted)\n%s", code, out)
	}
	for _, want := range []string{"rollout halted", "the canary unhealthy", "database unreachable", "rolled back"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	checkServing(t, client, hosts, "v1", "after the halted rollout")
	audit, _ := os.ReadFile(filepath.Join(work, "state", "audit.log"))
	if !strings.Contains(string(audit), `"halted":"the canary unhealthy"`) {
		t.Errorf("audit log does not record the halt:\n%s", audit)
	}

	out, err = deploy("v2", healthy, append(gate, "--soak", "1s")...)
	if err != nil {
		t.Fatalf("healthy canary rollout: %v\n%s", err, out)
	}
	for _, want := range []string{`switching wave="the canary" hosts=r1`, `switching wave="wave 1 of 2" hosts=r2`, `switching wave="wave 2 of 2" hosts=r3`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
	checkServing(t, client, hosts, "v2", "after the healthy rollout")
}

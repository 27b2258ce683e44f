package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/synth"
)

// TestRelayOnCluster: r1, r2 on the sender's subnet; r3, r4, r5 on a
// second subnet behind a router that carries no multicast, r3's agent run
// with --relay and the inventory marking it a relay, 3% UDP loss at r4
// and r5. The deploy switches every host of both subnets: r3 takes the
// release over the unicast path and relays it, r4 and r5 get it from r3
// (the report names it, and their own addresses), every command reaches
// them by unicast; the router's link into the relayed subnet carries the
// release about once (at most 1.15× what the sender multicast), the
// sender's own link about twice (its subnet's copy and the relay's).
func TestRelayOnCluster(t *testing.T) {
	requireCluster(t)
	repo, _ := filepath.Abs("..")
	bin := buildBinaries(t, repo)
	work := t.TempDir()
	key := filepath.Join(work, "release.key")
	if out, err := exec.Command(filepath.Join(bin, "sender"), "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	c := startCluster(t, uniqueName("rl"), 5, bin, filepath.Join(work, "release.pub"), "--routed", "3", "--relay", "3")
	for _, h := range []string{"r4", "r5"} {
		if out, err := c.script("loss", c.name+"-"+h, "3"); err != nil {
			t.Fatalf("loss at %s: %v\n%s", h, err, out)
		}
	}
	inv := filepath.Join(work, "hosts")
	os.WriteFile(inv, []byte("r1 10.77.0.11\nr2 10.77.0.12\nr3 10.77.1.13 relay\nr4 10.77.1.14\nr5 10.77.1.15\n"), 0o644)
	app := filepath.Join(work, "app")
	if _, err := synth.Generate(context.Background(), app, synth.Options{Seed: 11, Files: synth.SmallFiles, Bytes: 16 << 20}); err != nil {
		t.Fatal(err)
	}
	into0, link0 := c.txBytes("rt", "eth-b"), c.txBytes("s", "eth0")
	out, log, err := c.sender("deploy", "--key", key, "--iface", "eth0", "--hosts", "@"+inv, "--state-dir", filepath.Join(work, "state"),
		"--wait", "10s", "--epoch", "1700000000", "--json", app)
	if err != nil {
		t.Fatalf("deploy: %v\n%s%s", err, out, log)
	}
	into, link := c.txBytes("rt", "eth-b")-into0, c.txBytes("s", "eth0")-link0
	var res struct {
		Hosts []struct{ ID, Addr, Phase, Path, Via string }
		Wire  int64 `json:"wire_bytes"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("deploy report: %v\n%s", err, out)
	}
	checkRelayedDeploy(t, c, app, res.Hosts)
	t.Logf("multicast %d B; into the relayed subnet %d B (%.3f×); the sender's link %d B (%.3f×)", res.Wire,
		into, float64(into)/float64(res.Wire), link, float64(link)/float64(res.Wire))
	if float64(into) > 1.15*float64(res.Wire) || float64(link) > 2.2*float64(res.Wire) {
		t.Errorf("into the relayed subnet %d B, the sender's link %d B: want at most 1.15× and 2.2× the %d B multicast", into, link, res.Wire)
	}
}

// checkRelayedDeploy: every host active and serving the release (a file
// of app, through current), r4 and r5 through r3 at their own addresses,
// r3 over the unicast path, r1 and r2 by multicast.
func checkRelayedDeploy(t *testing.T, c *cluster, app string, hosts []struct{ ID, Addr, Phase, Path, Via string }) {
	want := map[string]string{"r1": "multicast", "r2": "multicast", "r3": "unicast", "r4": "relay r3", "r5": "relay r3"}
	file, content := aFile(t, app)
	for _, h := range hosts {
		path := strings.TrimSpace(h.Path + " " + h.Via)
		if h.Phase != "active" || path != want[h.ID] || h.Via != "" && !strings.HasPrefix(h.Addr, "10.77.1.") {
			t.Errorf("%s: %s by %q at %s, want active by %q at its own address", h.ID, h.Phase, path, h.Addr, want[h.ID])
		}
		if got, err := os.ReadFile(filepath.Join(c.dir, h.ID, "current", file)); err != nil || !bytes.Equal(got, content) {
			t.Errorf("%s does not serve the release's %s after the deploy: %v", h.ID, file, err)
		}
		delete(want, h.ID)
	}
	if len(want) > 0 {
		t.Errorf("hosts missing from the report: %v", want)
	}
}

// aFile returns a regular file of tree (its path inside) and its bytes.
func aFile(t *testing.T, tree string) (string, []byte) {
	var rel string
	filepath.WalkDir(tree, func(p string, d fs.DirEntry, err error) error {
		if err == nil && rel == "" && d.Type().IsRegular() {
			rel, _ = filepath.Rel(tree, p)
		}
		return err
	})
	b, err := os.ReadFile(filepath.Join(tree, rel))
	if err != nil {
		t.Fatal(err)
	}
	return rel, b
}

// txBytes reads the bytes interface ifname of the cluster's node (s, rt,
// rI) has sent.
func (c *cluster) txBytes(node, ifname string) int64 {
	out, err := exec.Command("ip", "netns", "exec", c.name+"-"+node, "cat", "/sys/class/net/"+ifname+"/statistics/tx_bytes").Output()
	if err != nil {
		c.t.Fatalf("counters of %s in %s: %v", ifname, node, err)
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	return n
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopcast/loopcast/agent"
	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/internal/synth"
	"github.com/loopcast/loopcast/peer"
)

// TestFleetHeals: hosts that missed a deploy converge to the fleet's
// release on their own, with no sender running: one whose agent was down
// (and could not reach its peers for a while: unhealthy meanwhile), one
// whose store was wiped (every chunk from its peers). A replayed older
// pointer changes nothing. With every peer down, `sender serve` is the
// source of last resort.
func TestFleetHeals(t *testing.T) {
	c, work, key := newTestCluster(t, "h")
	tree := filepath.Join(work, "tree")
	synthTree(t, tree, "small", 5)
	state := filepath.Join(work, "state")
	deployTo := func(what, hosts string) {
		t.Helper()
		out, log, err := c.sender("deploy", "--key", key, "--iface", "eth0", "--hosts", hosts,
			"--state-dir", state, "--epoch", "1700000000", tree)
		if err != nil {
			t.Fatalf("deploy %s: %v\n%s\n%s", what, err, out, log)
		}
	}
	pointerFile := filepath.Join(state, "pointer-239.192.0.1_5000.json")
	deployTo("A", "r1,r2,r3")
	first, err := deploy.ReadPointer(pointerFile)
	if err != nil || first == nil {
		t.Fatalf("no fleet pointer recorded after deploy A: %v", err)
	}

	// r3 is down while B is deployed to the others
	if out, err := c.script("stop", "3"); err != nil {
		t.Fatalf("stop r3: %v\n%s", err, out)
	}
	if _, err := synth.ApplyChanges(tree, synth.ChangeSet{Seed: 3, Modify: 30, Add: 5, Delete: 5}); err != nil {
		t.Fatal(err)
	}
	deployTo("B", "r1,r2")
	ptr, err := deploy.ReadPointer(pointerFile)
	if err != nil || ptr == nil || ptr.Seq <= first.Seq || ptr.Release == first.Release {
		t.Fatalf("pointer after B: %+v (err %v); after A: %+v", ptr, err, first)
	}
	relB := ptr.Release
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dialIn(c.name + "-s")}}
	health := func(i int) (int, string) {
		resp, err := client.Get(fmt.Sprintf("http://10.77.0.%d:9172/healthz", 10+i))
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := health(1); code != http.StatusOK {
		t.Errorf("r1 on the fleet's release: health %d %q, want 200", code, body)
	}

	// r3 comes back but cannot reach its peers' release port yet: it learns
	// the pointer, lags, and says so to the load balancer
	block := []string{"OUTPUT", "-p", "tcp", "--dport", "5001", "-j", "REJECT"}
	if out, err := c.script(append([]string{"exec", c.name + "-r3", "iptables", "-A"}, block...)...); err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}
	if out, err := c.script("start", "3"); err != nil {
		t.Fatalf("start r3: %v\n%s", err, out)
	}
	var body string
	if !waitFor(30*time.Second, func() bool {
		var code int
		code, body = health(3)
		return code == http.StatusServiceUnavailable && strings.Contains(body, "behind")
	}) {
		t.Fatalf("r3 lagging: health never unhealthy/behind; last %q", body)
	}
	if got := storeCurrent(t, c, 3); got == relB.String() {
		t.Fatalf("r3 switched to %s with its peers out of reach", relB)
	}
	start := time.Now()
	if out, err := c.script(append([]string{"exec", c.name + "-r3", "iptables", "-D"}, block...)...); err != nil {
		t.Fatalf("iptables: %v\n%s", err, out)
	}
	if !waitFor(90*time.Second, func() bool { return storeCurrent(t, c, 3) == relB.String() }) {
		t.Fatalf("r3 did not catch up with %s; it serves %s\n%s", relB, storeCurrent(t, c, 3), agentLog(c, 3))
	}
	t.Logf("r3 (agent down during the deploy) converged %.1f s after its peers became reachable (retry backoff included)", time.Since(start).Seconds())
	if code, body := health(3); code != http.StatusOK {
		t.Errorf("r3 caught up: health %d %q, want 200", code, body)
	}

	// r2 loses its whole store: it takes the release from its peers
	start = time.Now()
	if out, err := c.script("wipe", "2"); err != nil {
		t.Fatalf("wipe r2: %v\n%s", err, out)
	}
	if !waitFor(90*time.Second, func() bool { return storeCurrent(t, c, 2) == relB.String() }) {
		t.Fatalf("wiped r2 did not catch up with %s\n%s", relB, agentLog(c, 2))
	}
	t.Logf("r2 (store wiped) converged %.1f s after its agent was restarted", time.Since(start).Seconds())
	m := caughtUp.FindStringSubmatch(agentLog(c, 2))
	if m == nil {
		t.Fatalf("r2's log has no catch-up line:\n%s", agentLog(c, 2))
	}
	t.Logf("r2 took %s bytes from %s peers, %s from its own store, none from the sender (not running)", m[1], m[3], m[2])
	if atoi(m[1]) == 0 || atoi(m[3]) == 0 {
		t.Errorf("wiped r2 took %s bytes from %s peers; want every chunk from peers", m[1], m[3])
	}
	checkServesTree(t, c, tree, "B after catch-up")

	// a replayed older pointer (deploy A's, validly signed) changes nothing
	replay := filepath.Join(work, "pointer-a.bin")
	if err := os.WriteFile(replay, first.Pointer, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := c.script("exec", c.name+"-s", "bash", "-c", "cat "+replay+" >/dev/udp/239.192.0.1/5001"); err != nil {
		t.Fatalf("replay: %v\n%s", err, out)
	}
	time.Sleep(5 * time.Second)
	for i := 1; i <= 3; i++ {
		if got := storeCurrent(t, c, i); got != relB.String() {
			t.Errorf("after the replayed pointer r%d serves %s, want %s", i, got, relB)
		}
		s, err := agent.ReadSync(filepath.Join(c.dir, fmt.Sprintf("r%d", i)), relB, time.Now())
		if err != nil || s.Seq != ptr.Seq {
			t.Errorf("r%d holds pointer #%d after the replay (err %v), want #%d", i, s.Seq, err, ptr.Seq)
		}
	}
	// the sender's status shows every host in sync
	out, log, err := c.sender("status", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3", "--state-dir", state)
	if err != nil || strings.Count(out, "in sync") != 3 {
		t.Errorf("sender status: want 3 hosts in sync: %v\n%s\n%s", err, out, log)
	}

	// a stranger on the LAN (no host certificate) gets nothing from a peer
	_, _, err = peer.Fetch(context.Background(), peer.FetchOptions{Release: relB, Peers: []string{"10.77.0.11:5001"},
		Out: filepath.Join(work, "stranger.img"), Dial: func(ctx context.Context, addr string) (net.Conn, error) {
			return dialIn(c.name+"-s")(ctx, "tcp", addr)
		}})
	if err == nil || !strings.Contains(err.Error(), "no valid certificate") {
		t.Errorf("a fetch without a host certificate: %v, want refused", err)
	}

	// every peer down and r2 wiped again: `sender serve`, the source of
	// last resort, gives it the release
	for _, i := range []string{"1", "3"} {
		if out, err := c.script("stop", i); err != nil {
			t.Fatalf("stop r%s: %v\n%s", i, err, out)
		}
	}
	serve := exec.Command(filepath.Join(c.repo, "scripts/cluster.sh"), "--name", c.name, "exec", c.name+"-s",
		filepath.Join(c.bin, "sender"), "serve", "--iface", "eth0", "--state-dir", state)
	var serveLog strings.Builder
	serve.Stdout, serve.Stderr = &serveLog, &serveLog
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		serve.Process.Signal(syscall.SIGTERM) // the sender serve we started, by its pid
		serve.Wait()
	}()
	time.Sleep(500 * time.Millisecond) // it joins the group
	start = time.Now()
	if out, err := c.script("wipe", "2"); err != nil {
		t.Fatalf("wipe r2: %v\n%s", err, out)
	}
	if !waitFor(90*time.Second, func() bool { return storeCurrent(t, c, 2) == relB.String() }) {
		t.Fatalf("wiped r2, its peers down, did not catch up from sender serve\n%s\nserve: %s", agentLog(c, 2), serveLog.String())
	}
	logs := agentLog(c, 2)
	m = caughtUp.FindStringSubmatch(logs[strings.LastIndex(logs, "agent: running"):])
	if m == nil || atoi(m[1]) == 0 || m[3] != "1" || !strings.Contains(logs, "10.77.0.1:5001") {
		t.Errorf("r2 should have taken the release from the sender (10.77.0.1:5001) alone: %v\n%s", m, logs)
	}
	t.Logf("r2 (wiped, every peer down) converged %.1f s after its agent was restarted, %s bytes from sender serve", time.Since(start).Seconds(), m[1])
}

var caughtUp = regexp.MustCompile(`caught up with the fleet".*"peer_bytes":(\d+),"local_bytes":(\d+),"peers":(\d+)`)

// storeCurrent is the release id host rI's store has current.
func storeCurrent(t *testing.T, c *cluster, i int) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("r%d", i), "state"))
	if err != nil {
		return err.Error()
	}
	m := regexp.MustCompile(`"current":\s*"([0-9a-f]+)"`).FindSubmatch(b)
	if m == nil {
		return ""
	}
	return string(m[1])
}

func agentLog(c *cluster, i int) string {
	b, _ := os.ReadFile(filepath.Join(c.dir, fmt.Sprintf("agent-r%d.log", i)))
	return string(b)
}

// waitFor polls cond every 200 ms until it holds or d passes.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); ; time.Sleep(200 * time.Millisecond) {
		if cond() {
			return true
		}
		if time.Now().After(end) {
			return false
		}
	}
}

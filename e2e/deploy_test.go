package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/mounttest"
)

// page matches the sample app's answer: the label each included file was
// built with.
var page = regexp.MustCompile(`^index=(\S+) header=(\S+) body=(\S+)\n`)

// load hits every host's page in a loop and checks each response is whole:
// status 200 and one label throughout.
type load struct {
	mu     sync.Mutex
	ok     int
	failed []string // first failures, for the report
	fails  int
	mixed  int
	last   map[string]string // host -> label of its last response
	seen   map[string]int    // host -> responses so far
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails++
	if len(l.failed) < 10 {
		l.failed = append(l.failed, fmt.Sprintf(format, args...))
	}
}

// run requests the page until ctx ends; pause makes each request wait
// that long between two of its includes.
func (l *load) run(ctx context.Context, client *http.Client, host string, pause time.Duration) {
	for ctx.Err() == nil {
		label, err := getPaused(ctx, client, host, pause)
		if ctx.Err() != nil {
			return
		}
		if err != nil {
			l.fail("%s: %v", host, err)
			continue
		}
		l.mu.Lock()
		if label == "" {
			l.mixed++
		} else {
			l.ok++
			l.last[host] = label
			l.seen[host]++
		}
		l.mu.Unlock()
	}
}

// responses returns how many whole responses each host gave so far.
func (l *load) responses() map[string]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return maps.Clone(l.seen)
}

// get fetches the page; label is "" when the files disagree.
func get(ctx context.Context, client *http.Client, host string) (string, error) {
	return getPaused(ctx, client, host, 0)
}

func getPaused(ctx context.Context, client *http.Client, host string, pause time.Duration) (string, error) {
	url := "http://" + host + "/index.php"
	if pause > 0 {
		url += fmt.Sprintf("?pause=%d", pause.Milliseconds())
	}
	req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != 200 {
		return "", fmt.Errorf("status %d: %.200s", resp.StatusCode, body)
	}
	m := page.FindStringSubmatch(string(body))
	if m == nil {
		return "", fmt.Errorf("unexpected page %.200q", body)
	}
	if m[1] != m[2] || m[2] != m[3] {
		return "", nil
	}
	return m[1], nil
}

// appVersion writes examples/app with every file labelled label.
func appVersion(t *testing.T, repo, dir, label string) string {
	out := filepath.Join(dir, "app-"+label)
	os.RemoveAll(out) // a redeploy of label: the same tree again, not one nested in it
	if b, err := exec.Command("cp", "-a", filepath.Join(repo, "examples/app"), out).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v %s", err, b)
	}
	files, _ := filepath.Glob(filepath.Join(out, "src", "*.php"))
	for _, f := range files {
		b, _ := os.ReadFile(f)
		os.WriteFile(f, []byte(strings.ReplaceAll(string(b), "'v1'", "'"+label+"'")), 0o644)
	}
	return out
}

var releaseLine = regexp.MustCompile(`(?m)^release ([0-9a-f]{16}): (\w+)`)

// TestDeployUnderLoad runs 20 deploys and rollbacks to 3 web hosts while
// every host is under continuous HTTP load: no request may fail, no
// response may mix two releases, and after each step every host serves
// the expected release. The steps include redeploying a release that was
// rolled back and two rollbacks in a row (which must go further back, not
// forward). Then the switch policy: with a listed host absent nothing
// switches (exit 3), and --require 75% switches the others (exit 2).
func TestDeployUnderLoad(t *testing.T) {
	// Retention by count alone (no --keep-for), so only the in-use check
	// keeps v1 for the long-running workers below.
	t.Setenv("LOOPCAST_KEEP_FOR", "0")
	c, work, key := newTestCluster(t, "e")
	repo := c.repo
	common := []string{"--key", key, "--iface", "eth0", "--state-dir", filepath.Join(work, "state")}
	hostsFlag := []string{"--hosts", "r1,r2,r3"}
	ids := map[string]string{} // label -> release id
	deploy := func(label string, extra ...string) (string, error) {
		args := append(append([]string{"deploy"}, common...), "--epoch", "1700000000")
		args = append(append(args, extra...), appVersion(t, repo, work, label))
		out, log, err := c.sender(args...)
		if m := releaseLine.FindStringSubmatch(out); m != nil {
			ids[label] = m[1]
		}
		if err != nil {
			return out, fmt.Errorf("deploy %s: %w\n%s\n%s", label, err, out, log)
		}
		return out, nil
	}
	rollback := func() {
		if out, log, err := c.sender(append(append([]string{"rollback"}, common...), hostsFlag...)...); err != nil {
			audit, _ := os.ReadFile(filepath.Join(work, "state", "audit.log"))
			st, _ := exec.Command(filepath.Join(c.bin, "receiver"), "status", "--root", filepath.Join(c.dir, "r1")).CombinedOutput()
			t.Fatalf("rollback: %v\n%s\n%s\naudit log:\n%s\nr1:\n%s", err, out, log, audit, st)
		}
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: dialIn(c.name + "-s"), MaxIdleConnsPerHost: 4,
	}}
	var hosts []string
	for i := 1; i <= c.n; i++ {
		hosts = append(hosts, c.hostAddr(i))
	}
	if _, err := deploy("v1", hostsFlag...); err != nil {
		t.Fatal(err)
	}
	// Two long-running PHP workers start on v1: one from `current` on r1,
	// one under `receiver exec` on r2. After 19 more steps (far beyond
	// --keep) they load the rest of their code by absolute path.
	workers := []*worker{
		startWorker(t, "sh", "-c", "cd "+filepath.Join(c.dir, "r1", "current")+" && exec php bin/worker.php"),
		startWorker(t, filepath.Join(c.bin, "receiver"), "exec", "--root", filepath.Join(c.dir, "r2"), "--", "php", "bin/worker.php"),
	}
	l := &load{last: map[string]string{}, seen: map[string]int{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { stop(); wg.Wait() })
	for _, h := range hosts {
		// two clients per host: one as fast as it goes, one whose requests
		// pause between includes, so a switch inside a request would mix
		for _, pause := range []time.Duration{0, 50 * time.Millisecond} {
			wg.Add(1)
			go func() { defer wg.Done(); l.run(ctx, client, h, pause) }()
		}
	}

	// the history the hosts should walk: deploys push, rollbacks go back
	history := []string{"v1"}
	steps := 1
	step := func(what string) {
		cur := history[len(history)-1]
		checkServing(t, client, hosts, cur, fmt.Sprintf("step %d (%s)", steps, what))
	}
	plan := []string{"v2", "v3", "rollback", "v3", "v4", "rollback", "rollback", "v5", "v6", "rollback",
		"v7", "v8", "v9", "rollback", "v9", "v10", "v11", "rollback", "v12"}
	for _, op := range plan {
		steps++
		if op == "rollback" {
			rollback()
			history = history[:len(history)-1]
		} else {
			if _, err := deploy(op, hostsFlag...); err != nil {
				t.Fatal(err)
			}
			history = append(history, op)
		}
		step(op)
	}
	final := history[len(history)-1]
	checkHeld(t, c, "r1", ids["v1"], workers[0])
	for i, w := range workers {
		if got := w.finish(); got != "v1 v1\n" {
			t.Errorf("worker %d, started on v1, loaded %q after 19 deploys and rollbacks; want \"v1 v1\"", i+1, got)
		}
	}
	// let every host answer at least once more on the final release
	before := l.responses()
	deadline := time.Now().Add(10 * time.Second)
	for _, h := range hosts {
		for l.responses()[h] == before[h] && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
	}
	stop()
	wg.Wait()

	t.Logf("%d steps; %d responses ok, %d failed, %d mixed", steps, l.ok, l.fails, l.mixed)
	if steps != 20 {
		t.Errorf("%d steps, want 20", steps)
	}
	if l.fails > 0 {
		t.Errorf("%d requests failed, first: %q", l.fails, l.failed)
	}
	if l.mixed > 0 {
		t.Errorf("%d responses mixed two releases", l.mixed)
	}
	if l.ok < 100 {
		t.Errorf("only %d responses under load; the load did not run", l.ok)
	}
	for _, h := range hosts {
		if l.last[h] != final {
			t.Errorf("%s last served %q, want %q", h, l.last[h], final)
		}
	}
	checkStatus(t, c, append(common, hostsFlag...), ids[final])
	checkSlots(t, client, hosts)

	// Policy: r4 is listed but does not exist. Nothing may switch.
	out, err := deploy("v13", "--hosts", "r1,r2,r3,r4", "--wait", "2s")
	if code := exitCode(err); code != 3 {
		t.Errorf("deploy with an absent host: exit %d, want 3 (none switched): %v", code, err)
	}
	if !strings.Contains(out, "r4") {
		t.Errorf("report does not name the absent host:\n%s", out)
	}
	checkServing(t, client, hosts, final, "after a deploy that must not switch")
	// With --require 75%, the 3 hosts that staged switch.
	_, err = deploy("v14", "--hosts", "r1,r2,r3,r4", "--wait", "2s", "--require", "75%")
	if code := exitCode(err); code != 2 {
		t.Errorf("deploy with --require 75%%: exit %d, want 2 (partial): %v", code, err)
	}
	checkServing(t, client, hosts, "v14", "after a partial deploy")

	if out, err := c.script("down"); err != nil {
		t.Fatalf("cluster down: %v\n%s", err, out)
	}
	if left := mounttest.MountsUnder(t, c.dir); len(left) > 0 {
		t.Errorf("mounts left after down: %v", left)
	}
	mounttest.WaitLoops(t, c.dir, 0)
}

// checkServing asserts that a fresh request to every host sees label.
func checkServing(t *testing.T, client *http.Client, hosts []string, label, when string) {
	t.Helper()
	for _, h := range hosts {
		got, err := get(context.Background(), client, h)
		if err != nil || got != label {
			t.Fatalf("%s: %s serves %q (%v), want %q", when, h, got, err, label)
		}
	}
}

// checkSlots asserts that every host serves from a slot (the agents have
// their php-fpm pool), as the page's document root shows.
func checkSlots(t *testing.T, client *http.Client, hosts []string) {
	t.Helper()
	for _, h := range hosts {
		resp, err := client.Get("http://" + h + "/index.php")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !regexp.MustCompile(`(?m)^root=/.*/slots/[a-z]/public$`).Match(body) {
			t.Errorf("%s is not served from a slot:\n%s", h, body)
		}
	}
}

// checkStatus asks the fleet and checks every host is on release id and
// has a rollback target.
func checkStatus(t *testing.T, c *cluster, flags []string, id string) {
	t.Helper()
	out, log, err := c.sender(append([]string{"status", "--json"}, flags...)...)
	if err != nil {
		t.Fatalf("status: %v\n%s\n%s", err, out, log)
	}
	var st []struct {
		ID, Current, Previous, Error string
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st) != c.n || id == "" {
		t.Fatalf("status lists %d hosts, want %d (release %q)", len(st), c.n, id)
	}
	for _, s := range st {
		if s.Error != "" || s.Current != id || s.Previous == "" {
			t.Errorf("host %s: current %s previous %s error %q; want current %s", s.ID, s.Current, s.Previous, s.Error, id)
		}
	}
}

// worker is bin/worker.php of the sample app, running: it loads the rest
// of its code when told.
type worker struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   strings.Builder
}

func startWorker(t *testing.T, args ...string) *worker {
	t.Helper()
	w := &worker{cmd: exec.Command(args[0], args[1:]...)}
	w.cmd.Stdout, w.cmd.Stderr = &w.out, &w.out
	w.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // its own group: php under receiver exec too
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := w.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if w.cmd.ProcessState == nil {
			w.stdin.Close()
			syscall.Kill(-w.cmd.Process.Pid, syscall.SIGKILL) // the group of our own child
			w.cmd.Wait()
		}
	})
	return w
}

// finish tells the worker to load its code, and returns what it printed.
func (w *worker) finish() string {
	io.WriteString(w.stdin, "go\n")
	w.stdin.Close()
	if err := w.cmd.Wait(); err != nil {
		return fmt.Sprintf("error: %v: %s", err, w.out.String())
	}
	return w.out.String()
}

// checkHeld asserts that host's agent keeps release id mounted because a
// worker uses it, as `receiver status --json` tells.
func checkHeld(t *testing.T, c *cluster, host, id string, w *worker) {
	t.Helper()
	out, err := exec.Command(filepath.Join(c.bin, "receiver"), "status", "--json", "--root", filepath.Join(c.dir, host)).Output()
	if err != nil {
		t.Fatalf("receiver status on %s: %v", host, err)
	}
	var st struct {
		Releases []struct {
			ID, Kept string
			Mounted  bool
			Users    []struct{ PID int }
		}
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("receiver status --json: %v\n%s", err, out)
	}
	for _, r := range st.Releases {
		if r.ID != id {
			continue
		}
		if !r.Mounted || r.Kept != "in use" || len(r.Users) == 0 || r.Users[0].PID != w.cmd.Process.Pid {
			t.Errorf("%s: release %s mounted %v, kept %q, users %+v; want in use by pid %d", host, id, r.Mounted, r.Kept, r.Users, w.cmd.Process.Pid)
		}
		return
	}
	t.Errorf("%s: release %s (used by a worker) is not in the status:\n%s", host, id, out)
}

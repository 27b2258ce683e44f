package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
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
}

func (l *load) fail(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fails++
	if len(l.failed) < 10 {
		l.failed = append(l.failed, fmt.Sprintf(format, args...))
	}
}

func (l *load) run(ctx context.Context, client *http.Client, host string) {
	for ctx.Err() == nil {
		label, err := get(ctx, client, host)
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
		}
		l.mu.Unlock()
	}
}

// get fetches the page; label is "" when the files disagree.
func get(ctx context.Context, client *http.Client, host string) (string, error) {
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+host+"/index.php", nil)
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

// TestDeployUnderLoad runs 20 deploys and rollbacks to 3 web hosts while
// every host is under continuous HTTP load: no request may fail, no
// response may mix two releases, and after each step every host serves
// the expected release.
func TestDeployUnderLoad(t *testing.T) {
	requireCluster(t)
	repo, _ := filepath.Abs("..")
	bin := buildBinaries(t, repo)
	work := t.TempDir()
	key := filepath.Join(work, "release.key")
	if out, err := exec.Command(filepath.Join(bin, "sender"), "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	c := startCluster(t, "e2e", 3, bin, filepath.Join(work, "release.pub"))
	common := []string{"--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3"}
	deploy := func(label string) {
		args := append([]string{"deploy"}, common...)
		args = append(args, "--state-dir", filepath.Join(work, "state"), "--epoch", "1700000000", appVersion(t, repo, work, label))
		if out, err := c.sender(args...); err != nil {
			t.Fatalf("deploy %s: %v\n%s", label, err, out)
		}
	}
	rollback := func() {
		if out, err := c.sender(append([]string{"rollback"}, common...)...); err != nil {
			t.Fatalf("rollback: %v\n%s", err, out)
		}
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: dialIn(c.name + "-s"), MaxIdleConnsPerHost: 4,
	}}
	var hosts []string
	for i := 1; i <= c.n; i++ {
		hosts = append(hosts, c.hostAddr(i))
	}
	deploy("v1")
	l := &load{last: map[string]string{}}
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for _, h := range hosts {
		for range 2 { // two clients per host
			wg.Add(1)
			go func() { defer wg.Done(); l.run(ctx, client, h) }()
		}
	}

	cur, prev := "v1", ""
	steps := 1
	for i := 2; steps < 20; i++ {
		label := fmt.Sprintf("v%d", i)
		deploy(label)
		cur, prev = label, cur
		steps++
		checkServing(t, client, hosts, cur, fmt.Sprintf("step %d (deploy %s)", steps, label))
		if i%2 == 0 && steps < 20 {
			rollback()
			cur, prev = prev, cur
			steps++
			checkServing(t, client, hosts, cur, fmt.Sprintf("step %d (rollback)", steps))
		}
	}
	time.Sleep(300 * time.Millisecond) // load runs on the final release too
	stop()
	wg.Wait()

	t.Logf("%d steps; %d responses ok, %d failed, %d mixed", steps, l.ok, l.fails, l.mixed)
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
		if l.last[h] != cur {
			t.Errorf("%s last served %q, want %q", h, l.last[h], cur)
		}
	}
	checkStatus(t, c, common, cur)

	if out, err := c.script("down"); err != nil {
		t.Fatalf("cluster down: %v\n%s", err, out)
	}
	if left := leftovers(c.dir); len(left) > 0 {
		t.Errorf("after down: %v", left)
	}
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

// checkStatus asks the fleet and checks every host is on one release and
// has a rollback target.
func checkStatus(t *testing.T, c *cluster, common []string, label string) {
	t.Helper()
	out, err := c.sender(append([]string{"status", "--json"}, common...)...)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	var st []struct {
		ID, Current, Previous, Error string
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		t.Fatalf("status --json: %v\n%s", err, out)
	}
	if len(st) != c.n {
		t.Fatalf("status lists %d hosts, want %d", len(st), c.n)
	}
	for _, s := range st {
		if s.Error != "" || s.Current != st[0].Current || s.Previous == "" {
			t.Errorf("host %s: current %s previous %s error %q", s.ID, s.Current, s.Previous, s.Error)
		}
	}
}

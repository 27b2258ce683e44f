package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/synth"
)

// opcacheStatus is what `receiver status --json` says of a host's OPcache
// and releases.
type opcacheStatus struct {
	PHPFPM  string `json:"php_fpm"`
	OPcache *struct {
		Enabled            bool  `json:"enabled"`
		ValidateTimestamps bool  `json:"validate_timestamps"`
		Scripts            int   `json:"scripts"`
		UsedMemory         int64 `json:"used_memory"`
		MemoryLimit        int64 `json:"memory_limit"`
		OOMRestarts        int   `json:"oom_restarts"`
		HashRestarts       int   `json:"hash_restarts"`
		CacheFull          bool  `json:"cache_full"`
	} `json:"opcache"`
	OPcacheError string `json:"opcache_error"`
	Current      string `json:"current"`
	Releases     []struct {
		ID, Slot, Dir string
	} `json:"releases"`
}

func hostStatus(t *testing.T, c *cluster, host string) *opcacheStatus {
	t.Helper()
	out, err := exec.Command(filepath.Join(c.bin, "receiver"), "status", "--json", "--root", filepath.Join(c.dir, host)).Output()
	if err != nil {
		t.Fatalf("receiver status on %s: %v", host, err)
	}
	var st opcacheStatus
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("receiver status --json: %v\n%s", err, out)
	}
	if st.OPcache == nil {
		t.Fatalf("%s: no OPcache in the status (pool %q: %s)", host, st.PHPFPM, st.OPcacheError)
	}
	return &st
}

// TestOPcacheAcrossDeploys deploys an app of 2,000 PHP classes, then six
// releases that each change one file, to hosts whose php-fpm runs with
// opcache.validate_timestamps=0. Every host must serve each release's
// change at once (nothing stale), and once the ring of slots is full a
// deploy must add no more compiled scripts than the files it changed,
// where each deploy to its own path adds the whole app again.
func TestOPcacheAcrossDeploys(t *testing.T) {
	c, work, key := newTestCluster(t, "o")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: dialIn(c.name + "-s")}}
	page := func(host int) string {
		resp, err := client.Get("http://" + c.hostAddr(host) + "/all.php")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("r%d: status %d: %.300s", host, resp.StatusCode, b)
		}
		return strings.TrimSpace(string(b))
	}
	const classes = 2000
	deploy := func(label string) {
		app := filepath.Join(work, "app-"+label)
		if err := synth.PHPApp(app, classes, label); err != nil {
			t.Fatal(err)
		}
		out, log, err := c.sender("deploy", "--key", key, "--iface", "eth0", "--hosts", "r1,r2,r3",
			"--state-dir", filepath.Join(work, "state"), "--epoch", "1700000000", app)
		if err != nil {
			t.Fatalf("deploy %s: %v\n%s\n%s", label, err, out, log)
		}
		os.RemoveAll(app)
	}
	var scripts []int
	for k := 1; k <= 7; k++ {
		label := fmt.Sprintf("v%d", k)
		deploy(label)
		for h := 1; h <= c.n; h++ {
			if got, want := page(h), fmt.Sprintf("classes=%d label=%s", classes, label); got != want {
				t.Fatalf("after deploy %d, r%d serves %q, want %q (a stale compiled script?)", k, h, got, want)
			}
		}
		st := hostStatus(t, c, "r1")
		if !st.OPcache.Enabled || st.OPcache.ValidateTimestamps {
			t.Fatalf("r1's OPcache: %+v; the test needs it on, with validate_timestamps=0", st.OPcache)
		}
		if st.OPcache.OOMRestarts+st.OPcache.HashRestarts > 0 || st.OPcache.CacheFull {
			t.Fatalf("after deploy %d OPcache restarted or filled: %+v", k, st.OPcache)
		}
		var slot string
		for _, r := range st.Releases {
			if r.ID == st.Current {
				slot = r.Slot
			}
		}
		if slot == "" {
			t.Fatalf("after deploy %d r1 serves %s from no slot: %+v", k, st.Current, st.Releases)
		}
		scripts = append(scripts, st.OPcache.Scripts)
		t.Logf("deploy %d: slot %s, %d scripts, %d MiB used", k, slot, st.OPcache.Scripts, st.OPcache.UsedMemory>>20)
	}
	// The agent's metrics name the release it serves, its slot and OPcache.
	st := hostStatus(t, c, "r1")
	resp, err := client.Get("http://10.77.0.11:9172/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		fmt.Sprintf(`loopcast_release_info{label="%s",release="%s",role="current",slot="a"} 1`, filepath.Join(work, "app-v7"), st.Current),
		fmt.Sprintf("loopcast_opcache_scripts %d", scripts[len(scripts)-1]),
		`loopcast_opcache_up 1`, `loopcast_sessions_total{outcome="staged"} 7`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("r1's metrics lack %s:\n%.3000s", want, metrics)
		}
	}
	// The first three deploys fill the ring: each adds the app at a new
	// path. From the fourth on, a deploy reuses the slot of three releases
	// ago and recompiles only the file that changed since (in place).
	for k := 1; k < 3; k++ {
		if grew := scripts[k] - scripts[k-1]; grew < classes {
			t.Errorf("deploy %d into an empty slot added %d scripts, want the whole app (%d): the measure does not see copies", k+1, grew, classes)
		}
	}
	for k := 3; k < len(scripts); k++ {
		if grew := scripts[k] - scripts[k-1]; grew > 1 {
			t.Errorf("deploy %d of a one-file release added %d scripts to OPcache, want at most 1", k+1, grew)
		}
	}
}

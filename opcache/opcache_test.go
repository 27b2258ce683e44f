package opcache

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/phpfpmtest"
	"github.com/yookoala/gofast"
)

// start runs a pool with validate_timestamps=0 (the pool setting slots
// are for) and installs the helper.
func start(t *testing.T, workers int) (*Client, *phpfpmtest.Pool) {
	t.Helper()
	pool := phpfpmtest.Start(t, workers, "opcache.validate_timestamps=0", "opcache.enable=1",
		"opcache.file_update_protection=0") // the test writes its files just before it runs them
	c, err := Install(filepath.Join(t.TempDir(), "helper"), pool.Socket)
	if err != nil {
		t.Fatal(err)
	}
	return c, pool
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// get runs script through the pool and returns its output.
func get(t *testing.T, socket, script string) string {
	t.Helper()
	out, err := fetch(socket, script)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fetch runs script through the pool; safe in any goroutine.
func fetch(socket, script string) (string, error) {
	client, err := gofast.SimpleClientFactory(gofast.SimpleConnFactory("unix", socket))()
	if err != nil {
		return "", err
	}
	defer client.Close()
	raw, _ := http.NewRequest(http.MethodGet, "/", nil)
	req := gofast.NewRequest(raw)
	req.Params["REQUEST_METHOD"] = "GET"
	req.Params["SCRIPT_FILENAME"] = script
	req.Params["SERVER_PROTOCOL"] = "HTTP/1.1"
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	var rec recorder
	var stderr bytes.Buffer
	if err := resp.WriteTo(&rec, &stderr); err != nil {
		return "", err
	}
	if rec.code() != 200 {
		return "", fmt.Errorf("%s: status %d %s %s", script, rec.code(), rec.body.String(), stderr.String())
	}
	return rec.body.String(), nil
}

func TestStatus(t *testing.T) {
	c, _ := start(t, 2)
	st, err := c.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !st.Enabled || st.ValidateTimestamps || st.MemoryLimit <= 0 || st.MaxScripts <= 0 || st.StartTime == 0 {
		t.Fatalf("status %+v: want OPcache enabled, validate_timestamps off, limits and start time set", st)
	}
	if st.NearFull() != "" {
		t.Fatalf("a fresh pool is near full: %s", st.NearFull())
	}
}

// TestInvalidateServesNewContent is why slots need invalidation: with
// validate_timestamps=0 the pool serves a changed file's old script until
// it is invalidated, and only the invalidated file is recompiled.
func TestInvalidateServesNewContent(t *testing.T) {
	c, pool := start(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"page.php":    "<?php require __DIR__.'/lib/a.php'; require __DIR__.'/lib/b.php'; echo A, B;",
		"lib/a.php":   "<?php const A = 'a1';",
		"lib/b.php":   "<?php const B = 'b1';",
		"unused.php":  "<?php echo 'u';",
		"other/x.php": "<?php echo 'x';",
	})
	if got := get(t, pool.Socket, filepath.Join(dir, "page.php")); got != "a1b1" {
		t.Fatalf("first request: %q", got)
	}
	writeFiles(t, dir, map[string]string{"lib/a.php": "<?php const A = 'a2';"})
	if got := get(t, pool.Socket, filepath.Join(dir, "page.php")); got != "a1b1" {
		t.Fatalf("before invalidation the pool serves %q; the test expects the stale a1b1 (validate_timestamps=0)", got)
	}
	n, err := c.Invalidate(ctx, dir, []string{"lib/a.php", "gone.php"})
	if err != nil || n != 1 {
		t.Fatalf("Invalidate = %d, %v; want 1 (gone.php was never cached)", n, err)
	}
	if got := get(t, pool.Socket, filepath.Join(dir, "page.php")); got != "a2b1" {
		t.Fatalf("after invalidation: %q, want a2b1", got)
	}
	// Compile skips what is cached: only the two files never run compile.
	n, err = c.Compile(ctx, dir, []string{"page.php", "lib/a.php", "lib/b.php", "unused.php", "other/x.php"})
	if err != nil || n != 2 {
		t.Fatalf("Compile = %d, %v; want 2 (unused.php, other/x.php)", n, err)
	}
	// Everything under dir/other/ goes, nothing else.
	n, err = c.Invalidate(ctx, filepath.Join(dir, "other"), nil)
	if err != nil || n != 1 {
		t.Fatalf("Invalidate(other, all) = %d, %v; want 1", n, err)
	}
	n, err = c.Compile(ctx, dir, []string{"page.php", "lib/a.php", "lib/b.php", "unused.php", "other/x.php"})
	if err != nil || n != 1 {
		t.Fatalf("Compile after dropping other/ = %d, %v; want 1", n, err)
	}
}

func TestCompileNamesBrokenFile(t *testing.T) {
	c, _ := start(t, 1)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"ok.php": "<?php echo 1;", "bad.php": "<?php this is not php"})
	n, err := c.Compile(context.Background(), dir, []string{"ok.php", "bad.php"})
	if n != 1 || err == nil || !strings.Contains(err.Error(), "bad.php") || errors.Is(err, ErrPool) {
		t.Fatalf("Compile = %d, %v; want 1 and an error naming bad.php", n, err)
	}
}

func TestBusy(t *testing.T) {
	c, pool := start(t, 3)
	ctx := context.Background()
	a, b := t.TempDir(), t.TempDir()
	writeFiles(t, a, map[string]string{"slow.php": "<?php usleep(1500000); echo 'done';"})
	done := make(chan string, 1)
	go func() {
		client, err := gofast.SimpleClientFactory(gofast.SimpleConnFactory("unix", pool.Socket))()
		if err != nil {
			done <- err.Error()
			return
		}
		defer client.Close()
		raw, _ := http.NewRequest(http.MethodGet, "/", nil)
		req := gofast.NewRequest(raw)
		req.Params["REQUEST_METHOD"] = "GET"
		req.Params["SCRIPT_FILENAME"] = filepath.Join(a, "slow.php")
		resp, err := client.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		var rec recorder
		resp.WriteTo(&rec, &bytes.Buffer{})
		done <- rec.body.String()
	}()
	var busy []string
	want := []string{"Running " + filepath.Join(a, "slow.php")}
	// the request passes "Getting request information" (busy too) before
	// it runs: wait for it to run
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && !slices.Equal(busy, want); {
		var err error
		if busy, _, err = c.Busy(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	if !slices.Equal(busy, want) {
		t.Fatalf("Busy(%s) = %q while slow.php runs", a, busy)
	}
	if other, _, err := c.Busy(ctx, b); err != nil || len(other) != 0 {
		t.Fatalf("Busy(%s) = %q, %v; want none", b, other, err)
	}
	if got := <-done; got != "done" {
		t.Fatalf("slow request: %q", got)
	}
	if busy, _, err := c.Busy(ctx, a); err != nil || len(busy) != 0 {
		t.Fatalf("Busy after the request = %q, %v", busy, err)
	}
}

func TestPoolDown(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	c := &Client{Socket: sock, Helper: "/nonexistent/" + HelperName, Timeout: time.Second}
	_, err := c.Status(context.Background())
	if !errors.Is(err, ErrPool) || !strings.Contains(err.Error(), sock) {
		t.Fatalf("Status on a missing pool: %v; want ErrPool naming %s", err, sock)
	}
	// a listener that never answers: the timeout ends the call
	l, err := net.Listen("unix", filepath.Join(t.TempDir(), "mute.sock"))
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			defer conn.Close()
		}
	}()
	c.Socket = l.Addr().String()
	start := time.Now()
	_, err = c.Status(context.Background())
	if !errors.Is(err, ErrPool) {
		t.Fatalf("Status on a mute pool: %v", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("a mute pool held the call %v", d)
	}
}

func TestNearFull(t *testing.T) {
	for _, tc := range []struct {
		st   Status
		want string
	}{
		{Status{Enabled: true, MemoryLimit: 100 << 20, UsedMemory: 50 << 20, MaxScripts: 1000, Scripts: 10}, ""},
		{Status{Enabled: true, MemoryLimit: 100 << 20, UsedMemory: 85 << 20, WastedMemory: 10 << 20}, "95% used"},
		{Status{Enabled: true, MaxScripts: 1000, Scripts: 950}, "950 scripts"},
		{Status{Enabled: true, CacheFull: true}, "full"},
		{Status{Enabled: false, CacheFull: true}, ""},
	} {
		got := tc.st.NearFull()
		if (tc.want == "") != (got == "") || !strings.Contains(got, tc.want) {
			t.Errorf("%+v: NearFull = %q, want %q", tc.st, got, tc.want)
		}
	}
}

// TestBatches: more paths than one call carries are sent in batches, and
// the counts add up.
func TestBatches(t *testing.T) {
	c, _ := start(t, 1)
	ctx := context.Background()
	dir := t.TempDir()
	n := 2*batchPaths + 100
	files := map[string]string{}
	var paths []string
	for i := range n {
		p := fmt.Sprintf("f%05d.php", i)
		files[p] = fmt.Sprintf("<?php return %d;", i)
		paths = append(paths, p)
	}
	writeFiles(t, dir, files)
	if got, err := c.Compile(ctx, dir, paths); err != nil || got != n {
		t.Fatalf("Compile of %d files = %d, %v", n, got, err)
	}
	if got, err := c.Invalidate(ctx, dir, paths); err != nil || got != n {
		t.Fatalf("Invalidate of %d files = %d, %v", n, got, err)
	}
}

// TestBusySeesFinishing: a request whose shutdown function still runs
// (and may include files) is busy, not only one that is "Running".
func TestBusySeesFinishing(t *testing.T) {
	c, pool := start(t, 2)
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"shut.php": "<?php register_shutdown_function(function () { usleep(1500000); }); echo 'x';"})
	done := make(chan error, 1)
	go func() { _, err := fetch(pool.Socket, filepath.Join(dir, "shut.php")); done <- err }()
	var busy []string
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline) && len(busy) == 0; {
		var err error
		if busy, _, err = c.Busy(context.Background(), dir); err != nil {
			t.Fatal(err)
		}
	}
	if len(busy) != 1 || !strings.HasSuffix(busy[0], filepath.Join(dir, "shut.php")) {
		t.Fatalf("Busy while a shutdown function runs: %q", busy)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// TestRestrictedAPIFails: with opcache.restrict_api excluding the helper,
// nothing it does takes effect; it must say so, not answer "done".
func TestRestrictedAPIFails(t *testing.T) {
	pool := phpfpmtest.Start(t, 1, "opcache.enable=1", "opcache.restrict_api=/nonexistent/")
	c, err := Install(filepath.Join(t.TempDir(), "helper"), pool.Socket)
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Invalidate(context.Background(), t.TempDir(), []string{"a.php"})
	if !errors.Is(err, ErrPool) || !strings.Contains(err.Error(), "restrict_api") {
		t.Fatalf("Invalidate with the API restricted: %v", err)
	}
}

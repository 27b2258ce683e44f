// Package phpfpmtest starts a private php-fpm pool for tests: its own
// config, socket and log in a temporary directory, stopped (by its pid)
// when the test ends.
package phpfpmtest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/testenv"
)

// Pool is a running php-fpm pool.
type Pool struct {
	Socket string // its unix socket
	Log    string // its error log
}

// Binary returns the php-fpm on this machine, or "" (Debian names it
// php-fpmX.Y in /usr/sbin).
func Binary() string {
	if p, err := exec.LookPath("php-fpm"); err == nil {
		return p
	}
	m, _ := filepath.Glob("/usr/sbin/php-fpm*")
	if len(m) > 0 {
		return m[len(m)-1]
	}
	return ""
}

// Start starts a pool of workers (as root: the test's files are root's)
// with the php.ini settings in ini (e.g. "opcache.validate_timestamps=0").
func Start(t testing.TB, workers int, ini ...string) *Pool {
	t.Helper()
	testenv.RequireRoot(t)
	bin := Binary()
	if bin == "" {
		testenv.Missing(t, "needs php-fpm (run scripts/install-deps.sh)")
	}
	dir := t.TempDir()
	p := &Pool{Socket: filepath.Join(dir, "php.sock"), Log: filepath.Join(dir, "php-fpm.log")}
	var b strings.Builder
	fmt.Fprintf(&b, "[global]\nerror_log = %s\ndaemonize = no\n[test]\nuser = root\ngroup = root\nlisten = %s\n", p.Log, p.Socket)
	fmt.Fprintf(&b, "pm = static\npm.max_children = %d\ncatch_workers_output = yes\n", workers)
	for _, kv := range ini {
		k, v, _ := strings.Cut(kv, "=")
		fmt.Fprintf(&b, "php_admin_value[%s] = %s\n", k, v)
	}
	conf := filepath.Join(dir, "php-fpm.conf")
	if err := os.WriteFile(conf, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-F", "-R", "-y", conf)
	out, err := os.Create(filepath.Join(dir, "php-fpm.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		out.Close()
	})
	for deadline := time.Now().Add(20 * time.Second); ; {
		if c, err := net.Dial("unix", p.Socket); err == nil {
			c.Close()
			return p
		}
		if time.Now().After(deadline) {
			log, _ := os.ReadFile(out.Name())
			t.Fatalf("php-fpm did not listen on %s: %s", p.Socket, log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

package e2e

import (
	"context"
	"errors"
	"fmt"
	"github.com/loopcast/loopcast/internal/synth"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/testenv"
	"golang.org/x/sys/unix"
)

// cluster is a running scripts/cluster.sh cluster.
type cluster struct {
	t    *testing.T
	name string
	n    int
	bin  string // sender and receiver binaries
	repo string
	dir  string // the cluster's state directory
}

func requireCluster(t *testing.T) {
	testenv.Long(t)
	testenv.RequireNetns(t)
	testenv.RequireLoop(t)
	for _, tool := range []string{"nginx", "iptables", "tc", "go"} {
		testenv.RequireTool(t, tool)
	}
	if m, _ := filepath.Glob("/usr/sbin/php-fpm*"); len(m) == 0 {
		testenv.Missing(t, "needs php-fpm (scripts/install-deps.sh)")
	}
}

// newTestCluster gates the test, builds the binaries, makes a release key
// in a temp dir (work) and starts a cluster of 3 web hosts trusting it.
func newTestCluster(t *testing.T, prefix string) (c *cluster, work, key string) {
	requireCluster(t)
	repo, _ := filepath.Abs("..")
	bin := buildBinaries(t, repo)
	work = t.TempDir()
	key = filepath.Join(work, "release.key")
	if out, err := exec.Command(filepath.Join(bin, "sender"), "keygen", "--out", key).CombinedOutput(); err != nil {
		t.Fatalf("keygen: %v\n%s", err, out)
	}
	return startCluster(t, uniqueName(prefix), 3, bin, filepath.Join(work, "release.pub")), work, key
}

// buildBinaries builds bin/sender and bin/receiver into a temp dir, so the
// test runs the code under test whatever bin/ holds.
func buildBinaries(t *testing.T, repo string) string {
	dir := t.TempDir()
	cmd := exec.Command("go", "build", "-o", dir+"/", "./cmd/sender", "./cmd/receiver")
	cmd.Dir = repo
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return dir
}

// startCluster brings up n receivers with agents trusting pub and web
// servers; it is torn down when the test ends.
func startCluster(t *testing.T, name string, n int, bin, pub string, extra ...string) *cluster {
	repo, _ := filepath.Abs("..")
	c := &cluster{t: t, name: name, n: n, bin: bin, repo: repo}
	c.script("down") // a leftover from an interrupted run
	args := append([]string{"up", fmt.Sprint(n), "--agents", pub, "--web"}, extra...)
	t.Cleanup(func() { c.script("down") })
	if out, err := c.script(args...); err != nil {
		t.Fatalf("cluster up: %v\n%s", err, out)
	}
	out, _ := c.script("dir")
	c.dir = strings.TrimSpace(string(out))
	return c
}

func (c *cluster) script(args ...string) ([]byte, error) { return c.scriptEnv(nil, args...) }

// scriptEnv runs cluster.sh with env added to the environment (agents it
// starts read LOOPCAST_* settings from it).
func (c *cluster) scriptEnv(env []string, args ...string) ([]byte, error) {
	cmd := exec.Command(filepath.Join(c.repo, "scripts/cluster.sh"), append([]string{"--name", c.name}, args...)...)
	cmd.Env = append(append(os.Environ(), "LOOPCAST_BIN="+c.bin), env...)
	return cmd.CombinedOutput()
}

// synthTree generates the synthetic tree of preset and seed at dir.
func synthTree(t *testing.T, dir, preset string, seed uint64) {
	t.Helper()
	opts, err := synth.PresetOptions(preset, seed)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := synth.Generate(context.Background(), dir, opts); err != nil {
		t.Fatal(err)
	}
}

// sender runs the sender CLI on the sender host; it returns stdout (the
// report) and stderr (the log) apart.
func (c *cluster) sender(args ...string) (stdout, stderr string, err error) {
	full := append([]string{"--name", c.name, "exec", c.name + "-s", filepath.Join(c.bin, "sender")}, args...)
	cmd := exec.Command(filepath.Join(c.repo, "scripts/cluster.sh"), full...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	return o.String(), e.String(), err
}

// exitCode is the exit status of a failed command, 0 for success.
func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

func (c *cluster) hostAddr(i int) string { return fmt.Sprintf("10.77.0.%d:80", 10+i) }

// dialIn returns a dial function whose sockets live in network namespace
// ns: the socket is made on a locked OS thread moved into ns, and the
// thread is moved back before it is unlocked (a socket keeps the
// namespace it was made in). If moving back fails the thread stays locked
// and ends with its goroutine.
func dialIn(ns string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		ch := make(chan result, 1)
		go func() {
			runtime.LockOSThread()
			conn, err, restored := dialInLocked(ctx, ns, network, addr)
			if restored {
				runtime.UnlockOSThread()
			}
			ch <- result{conn, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

func dialInLocked(ctx context.Context, ns, network, addr string) (net.Conn, error, bool) {
	self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err, true
	}
	defer unix.Close(self)
	target, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err, true
	}
	defer unix.Close(target)
	if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
		return nil, fmt.Errorf("setns %s: %w", ns, err), true
	}
	conn, err := (&net.Dialer{}).DialContext(ctx, network, addr)
	return conn, err, unix.Setns(self, unix.CLONE_NEWNET) == nil
}

// uniqueName makes a cluster name of this test process, so concurrent runs
// on one machine (two CI jobs, a developer and CI) never share namespaces.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s%d", prefix, os.Getpid()%1000000)
}

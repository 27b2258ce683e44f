package multicast

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testenv"
)

// The namespace test runs one sender and several receivers as separate
// processes (this test binary re-executed as TestNetnsHelper), each in its
// own network namespace on a private bridge, with loss injected on each
// receiver's input by iptables. Namespaces are entered with nsenter --net
// so all processes share the mount namespace (and the temp dir).

const (
	envRole  = "LOOPCAST_NETNS_ROLE" // "send" or "recv": run as a helper
	envArgs  = "LOOPCAST_NETNS_ARGS" // JSON helperArgs
	netGroup = "239.77.0.1:47100"
)

type helperArgs struct {
	Image, Out, Host string
	Hosts            []string
	Rate             int64
	FEC              int
}

// TestNetnsHelper is not a test: it is the sender or receiver process of
// TestNetns, and skips when run on its own.
func TestNetnsHelper(t *testing.T) {
	role := os.Getenv(envRole)
	if role == "" {
		t.Skip("helper process for TestNetns")
	}
	var a helperArgs
	if err := json.Unmarshal([]byte(os.Getenv(envArgs)), &a); err != nil {
		t.Fatal(err)
	}
	group, _ := net.ResolveUDPAddr("udp4", netGroup)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if role == "send" {
		helperSend(t, ctx, group, a)
	} else {
		helperRecv(t, ctx, group, a)
	}
}

// helperImage opens the image's manifest and pack a sender helper sends,
// and its socket on the group.
func helperImage(t *testing.T, img string, group *net.UDPAddr) (*image.Manifest, *image.Pack, *UDPConn) {
	m, err := image.ReadManifestFile(img + ".manifest")
	if err != nil {
		t.Fatal(err)
	}
	pack, err := image.OpenPack(img+image.PackSuffix, m)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := DialGroup(group, "eth0", DefaultTTL)
	if err != nil {
		t.Fatal(err)
	}
	return m, pack, conn
}

func helperSend(t *testing.T, ctx context.Context, group *net.UDPAddr, a helperArgs) {
	m, pack, conn := helperImage(t, a.Image, group)
	rep, err := Send(ctx, conn, SendOptions{Key: testReleaseKey(), Group: group, Manifest: m, Pack: pack, Rate: a.Rate, Hosts: a.Hosts, FECOverhead: a.FEC,
		Wait: 5 * time.Second, HostTimeout: 3 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(rep)
}

func helperRecv(t *testing.T, ctx context.Context, group *net.UDPAddr, a helperArgs) {
	debug.SetMemoryLimit(ReceiverMemoryLimit) // as the receiver command sets it
	conn, err := ListenGroup(group, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, ed25519.SeedSize))
	res, err := Receive(ctx, conn, ReceiveOptions{HostID: a.Host, HostKey: testHostKey(a.Host), Out: a.Out, Trusted: []ed25519.PublicKey{priv.Public().(ed25519.PublicKey)},
		SenderTimeout: 10 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: resumed %d chunks", a.Host, res.Resumed)
	t.Logf("%s: peak-rss %d KiB", a.Host, peakRSS(t))
}

// lab is a bridge namespace plus one namespace per node.
type lab struct {
	t     *testing.T
	tag   string
	nodes []string
}

func (l *lab) ip(args ...string) {
	l.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		l.t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (l *lab) ns(name string) string { return "lc" + l.tag + name }

// add makes namespace name, removed when the test ends.
func (l *lab) add(name string) {
	ns := l.ns(name)
	l.ip("netns", "add", ns)
	l.t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	l.ip("-n", ns, "link", "set", "lo", "up")
}

// bridge makes namespace name with a bridge br0 (no multicast snooping).
func (l *lab) bridge(name string) {
	l.add(name)
	l.ip("-n", l.ns(name), "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	l.ip("-n", l.ns(name), "link", "set", "br0", "up")
}

// plug links a bridge namespace's port to interface ifname in namespace
// ns, with address cidr.
func (l *lab) plug(br, port, ns, ifname, cidr string) {
	l.ip("-n", br, "link", "add", port, "type", "veth", "peer", "name", ifname, "netns", ns)
	l.ip("-n", br, "link", "set", port, "master", "br0", "up")
	l.ip("-n", ns, "addr", "add", cidr, "dev", ifname)
	l.ip("-n", ns, "link", "set", ifname, "up")
}

// drop makes node's namespace drop UDP arriving with probability p.
func (l *lab) drop(node string, p float64) {
	cmd := exec.Command("ip", "netns", "exec", l.ns(node), "iptables", "-A", "INPUT", "-p", "udp",
		"-m", "statistic", "--mode", "random", "--probability", fmt.Sprint(p), "-j", "DROP")
	if out, err := cmd.CombinedOutput(); err != nil {
		l.t.Fatalf("iptables in %s: %v\n%s", l.ns(node), err, out)
	}
}

// newLab builds the bridge and nodes named names (10.77.0.1, .2, ...);
// loss[name] is the input drop probability at that node.
func newLab(t *testing.T, names []string, loss map[string]float64) *lab {
	l := &lab{t: t, tag: strconv.Itoa(os.Getpid() % 100000)}
	l.bridge("br")
	for i, n := range names {
		l.add(n)
		l.plug(l.ns("br"), fmt.Sprintf("p%d", i), l.ns(n), "eth0", fmt.Sprintf("10.77.0.%d/24", i+1))
		if p := loss[n]; p > 0 {
			l.drop(n, p)
		}
		l.nodes = append(l.nodes, n)
	}
	return l
}

// run runs this test binary's helper test in node's namespace, with
// env added to its environment; its output goes to stdout and stderr.
func (l *lab) run(node, helper string, env []string, stdout, stderr *bytes.Buffer) *exec.Cmd {
	l.t.Helper()
	cmd := exec.Command("nsenter", "--net=/var/run/netns/"+l.ns(node), "--", os.Args[0], "-test.run=^"+helper+"$", "-test.v")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd
}

// start runs this test binary as a TestNetns helper in node's namespace.
func (l *lab) start(node, role string, a helperArgs, stdout *bytes.Buffer) *exec.Cmd {
	l.t.Helper()
	js, _ := json.Marshal(a)
	return l.run(node, "TestNetnsHelper", []string{envRole + "=" + role, envArgs + "=" + string(js)}, stdout, &bytes.Buffer{})
}

func TestNetns(t *testing.T) {
	testenv.Long(t)
	testenv.RequireNetns(t)
	testenv.RequireTool(t, "iptables")
	for _, loss := range []float64{0, 0.05} {
		t.Run(fmt.Sprintf("loss%.0f%%", loss*100), func(t *testing.T) { runNetns(t, loss) })
	}
}

// runNetns: receivers r1, r2 finish; r3 is killed mid-transfer and
// restarted; "ghost" is listed but never runs. Under loss the sender adds
// 12% proactive parity, so chunks complete during the first pass (without
// it nearly every block at 5% loss waits for a repair round, and a receiver
// killed during the first pass has nothing to resume).
func runNetns(t *testing.T, loss float64) {
	recv := []string{"r1", "r2", "r3"}
	lossAt := map[string]float64{}
	for _, r := range recv {
		lossAt[r] = loss
	}
	l := newLab(t, append([]string{"s"}, append(recv, "ghost")...), lossAt)
	img, m, _ := randomImage(t, 32<<20)
	if err := image.WriteManifestFile(img+".manifest", m); err != nil {
		t.Fatal(err)
	}
	openPack(t, img, m, "") // the sender process opens it
	dir := t.TempDir()
	out := func(r string) string { return filepath.Join(dir, r+".img") }
	var sout bytes.Buffer
	sender := l.start("s", "send", helperArgs{Image: img, Rate: 100e6, Hosts: append(recv, "ghost"), FEC: int(loss * 240)}, &sout)
	cmds := map[string]*exec.Cmd{}
	outs := map[string]*bytes.Buffer{}
	for _, r := range recv {
		outs[r] = &bytes.Buffer{}
		cmds[r] = l.start(r, "recv", helperArgs{Host: r, Out: out(r)}, outs[r])
	}
	killMidway(t, cmds["r3"], out("r3")+"."+m.ID().String()+".partial", m)
	outs["r3"] = &bytes.Buffer{}
	cmds["r3"] = l.start("r3", "recv", helperArgs{Host: "r3", Out: out("r3")}, outs["r3"])
	for _, r := range recv {
		if err := cmds[r].Wait(); err != nil {
			t.Errorf("receiver %s: %v\n%s", r, err, outs[r])
		}
		checkRSS(t, r, outs[r].String())
	}
	if err := sender.Wait(); err != nil {
		t.Fatalf("sender: %v\n%s", err, sout.String())
	}
	checkNetnsReport(t, sout.Bytes(), m, recv)
	for _, r := range recv {
		if err := image.VerifyFile(context.Background(), out(r), m); err != nil {
			t.Errorf("%s: image missing or wrong (%v)", r, err)
		}
	}
	var resumed int
	if i := strings.Index(outs["r3"].String(), "r3: resumed "); i < 0 {
		t.Errorf("r3 after restart did not say what it resumed:\n%s", outs["r3"])
	} else if fmt.Sscanf(outs["r3"].String()[i:], "r3: resumed %d", &resumed); resumed == 0 || resumed >= len(m.Chunks) {
		t.Errorf("r3 resumed %d of %d chunks, want some but not all", resumed, len(m.Chunks))
	}
	t.Logf("r3 killed mid-transfer, resumed %d of %d chunks", resumed, len(m.Chunks))
}

// maxReceiverRSS is the memory bound for a receiver process.
const maxReceiverRSS = 64 << 20

// peakRSS returns this process's peak resident set (VmHWM) in KiB. It is
// read by the helper itself: the rusage a parent sees would include the
// pages the child shared with the (large) test process before exec.
func peakRSS(t *testing.T) int {
	st, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(st), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// checkRSS asserts the peak RSS a receiver helper reported.
func checkRSS(t *testing.T, name, out string) {
	i := strings.Index(out, name+": peak-rss ")
	var kib int
	if i < 0 {
		t.Errorf("%s did not report its peak RSS:\n%s", name, out)
		return
	}
	fmt.Sscanf(out[i:], name+": peak-rss %d KiB", &kib)
	t.Logf("%s: peak RSS %d MiB", name, kib>>10)
	if kib<<10 > maxReceiverRSS && !raceEnabled || kib == 0 {
		t.Errorf("%s: peak RSS %d KiB, want (0, %d MiB]", name, kib, maxReceiverRSS>>20)
	}
}

// killMidway waits until the receiver's partial image holds a few
// verified chunks, then kills it (SIGKILL: no cleanup runs).
func killMidway(t *testing.T, cmd *exec.Cmd, partial string, m *image.Manifest) {
	const enough = 4
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if verifiedChunks(partial, m) >= enough {
			cmd.Process.Kill()
			cmd.Wait()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("receiver never wrote %d chunks into %s", enough, partial)
}

// verifiedChunks counts the non-zero chunks of path that match m.
func verifiedChunks(path string, m *image.Manifest) int {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	n, buf := 0, make([]byte, m.ChunkSize)
	for i, c := range m.Chunks {
		off, size := m.ChunkRange(i)
		if _, err := f.ReadAt(buf[:size], off); !c.Zero && err == nil && m.VerifyChunk(i, buf[:size]) == nil {
			n++
		}
	}
	return n
}

func checkNetnsReport(t *testing.T, out []byte, m *image.Manifest, recv []string) {
	rep := decodeReport(t, out)
	want := map[string]HostState{"ghost": HostMissing}
	for _, r := range recv {
		want[r] = HostComplete
	}
	for _, h := range rep.Hosts {
		if h.State != want[h.ID] {
			t.Errorf("report: %s %v (%s), want %v", h.ID, h.State, h.Reason, want[h.ID])
		}
	}
	t.Logf("payload %d B, sent %d B (%.3f×), %d data + %d repair packets, %d rounds, %v",
		rep.PayloadBytes, rep.Bytes, float64(rep.Bytes)/float64(rep.PayloadBytes), rep.DataPackets, rep.RepairPackets, rep.Rounds, rep.Duration)
}

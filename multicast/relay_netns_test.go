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
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/testenv"
)

// TestRelayNetns runs a relayed session across two subnets, each a bridge,
// joined by a router namespace that forwards unicast (ip_forward=1) and
// carries no multicast (no multicast routing): the sender and a1, a2 in
// subnet A (10.77.1.0/24), the relay rb and b1..b3 in subnet B
// (10.77.2.0/24), with 3% UDP loss at b1..b3. Every node is a process of
// this test binary (TestRelayNetnsHelper) in its own network namespace,
// entered with nsenter --net, as in TestNetns.

const (
	envRelayRole = "LOOPCAST_RELAY_NETNS_ROLE" // send, recv, relay, listen, shout
	envRelayArgs = "LOOPCAST_RELAY_NETNS_ARGS" // JSON relayArgs
	// relayReportMark starts the relay's report line on its stdout.
	relayReportMark = "relay-report "
)

type relayArgs struct {
	Image, Out, Host string
	Hosts, Relays    []string
	Addrs            map[string]string // host id → IP, for the unicast path
	Rate             int64
}

// TestRelayNetnsHelper is not a test: it is a node of TestRelayNetns, and
// skips when run on its own.
func TestRelayNetnsHelper(t *testing.T) {
	role := os.Getenv(envRelayRole)
	if role == "" {
		t.Skip("helper process for TestRelayNetns")
	}
	var a relayArgs
	if err := json.Unmarshal([]byte(os.Getenv(envRelayArgs)), &a); err != nil {
		t.Fatal(err)
	}
	group, _ := net.ResolveUDPAddr("udp4", netGroup)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	switch role {
	case "send":
		relayNetnsSend(t, ctx, group, a)
	case "recv":
		helperRecv(t, ctx, group, helperArgs{Host: a.Host, Out: a.Out})
	case "relay":
		relayNetnsRelay(t, ctx, group, a)
	case "listen":
		probeListen(t, group)
	case "shout":
		probeShout(t, group)
	}
}

func relayNetnsSend(t *testing.T, ctx context.Context, group *net.UDPAddr, a relayArgs) {
	m, pack, conn := helperImage(t, a.Image, group)
	ln, err := net.Listen("tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Send(ctx, conn, SendOptions{Key: testReleaseKey(), Group: group, Manifest: m, Pack: pack, Rate: a.Rate, Hosts: a.Hosts,
		Relays: a.Relays, Unicast: ln, HostAddrs: UnicastAddrs(a.Addrs, group.Port), HostKeys: pinnedTestKeys(a.Hosts),
		Wait: 10 * time.Second, HostTimeout: 5 * time.Second, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	json.NewEncoder(os.Stdout).Encode(rep)
}

func relayNetnsRelay(t *testing.T, ctx context.Context, group *net.UDPAddr, a relayArgs) {
	up, err := ListenGroup(group, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	down, err := DialRelay(group, "eth0", DefaultTTL)
	if err != nil {
		t.Fatal(err)
	}
	priv := testReleaseKey()
	res, rep, err := Relay(ctx, up, RelayOptions{Down: down, DownGroup: group, HostTimeout: 5 * time.Second,
		ReceiveOptions: ReceiveOptions{HostID: a.Host, HostKey: testHostKey(a.Host), Out: a.Out,
			Trusted: []ed25519.PublicKey{priv.Public().(ed25519.PublicKey)}, SenderTimeout: 10 * time.Second, Logger: testLogger(t)}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(rep)
	fmt.Printf("%s%s\n", relayReportMark, b)
	t.Logf("%s: unicast %v", a.Host, res.Unicast)
}

// probeListen prints how many probe datagrams arrive on the group within
// two seconds.
func probeListen(t *testing.T, group *net.UDPAddr) {
	c, err := ListenGroup(group, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, buf := 0, make([]byte, 64)
	for {
		k, _, err := c.ReadFrom(buf)
		if err != nil {
			break
		}
		if bytes.Equal(buf[:k], []byte("lc-probe")) {
			n++
		}
	}
	fmt.Printf("heard %d\n", n)
}

// probeShout multicasts probe datagrams with a TTL a multicast router
// would pass.
func probeShout(t *testing.T, group *net.UDPAddr) {
	c, err := DialGroup(group, "eth0", 8)
	if err != nil {
		t.Fatal(err)
	}
	for range 20 {
		c.WriteTo([]byte("lc-probe"), group)
		time.Sleep(20 * time.Millisecond)
	}
}

// subnets is the two bridges, the router and the nodes.
type subnets struct {
	lab                    // ip, ns ("lr" + pid-derived tag + name)
	addr map[string]string // node → its IP
}

var (
	relayNetA = []string{"s", "a1", "a2"}
	relayNetB = []string{"rb", "b1", "b2", "b3"}
)

// newSubnets builds A and B and the router between; loss is the UDP input
// drop probability at the nodes it names.
func newSubnets(t *testing.T, loss map[string]float64) *subnets {
	n := &subnets{lab: lab{t: t, tag: "r" + strconv.Itoa(os.Getpid()%10000)}, addr: map[string]string{}}
	n.add("rt")
	n.ip("netns", "exec", n.ns("rt"), "sysctl", "-qw", "net.ipv4.ip_forward=1")
	for i, x := range []string{"A", "B"} {
		n.bridge("br" + x)
		n.plug(n.ns("br"+x), "prt", n.ns("rt"), "rt"+x, fmt.Sprintf("10.77.%d.254/24", i+1))
	}
	for i, h := range relayNetA {
		n.node(h, "A", fmt.Sprintf("10.77.1.%d", i+1), "p"+strconv.Itoa(i))
	}
	for i, h := range relayNetB {
		n.node(h, "B", fmt.Sprintf("10.77.2.%d", i+10), "p"+strconv.Itoa(i))
	}
	for h, p := range loss {
		n.drop(h, p)
	}
	return n
}

// node makes host h on subnet x at ip, routed through the router.
func (n *subnets) node(h, x, ip, port string) {
	n.add(h)
	n.plug(n.ns("br"+x), port, n.ns(h), "eth0", ip+"/24")
	n.ip("-n", n.ns(h), "route", "add", "default", "via", ip[:strings.LastIndex(ip, ".")]+".254")
	n.addr[h] = ip
}

// txBytes reads the bytes an interface of a namespace has sent.
func (n *subnets) txBytes(node, ifname string) int64 {
	out, err := exec.Command("ip", "-n", n.ns(node), "-s", "-j", "link", "show", "dev", ifname).Output()
	if err != nil {
		n.t.Fatalf("counters of %s in %s: %v", ifname, node, err)
	}
	var links []struct {
		Stats struct{ Tx struct{ Bytes int64 } } `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		n.t.Fatalf("counters of %s in %s: %v: %s", ifname, node, err, out)
	}
	return links[0].Stats.Tx.Bytes
}

// start runs this test binary as node's TestRelayNetns helper.
func (n *subnets) start(node, role string, a relayArgs, stdout *bytes.Buffer) *exec.Cmd {
	n.t.Helper()
	js, _ := json.Marshal(a)
	return n.run(node, "TestRelayNetnsHelper", []string{envRelayRole + "=" + role, envRelayArgs + "=" + string(js)}, stdout, stdout)
}

// heard shouts from one node and returns how many probes another heard.
func (n *subnets) heard(from, at string) int {
	var out bytes.Buffer
	l := n.start(at, "listen", relayArgs{}, &out)
	time.Sleep(300 * time.Millisecond)
	if err := n.start(from, "shout", relayArgs{}, &bytes.Buffer{}).Wait(); err != nil {
		n.t.Fatalf("shout from %s: %v", from, err)
	}
	if err := l.Wait(); err != nil {
		n.t.Fatalf("listen at %s: %v\n%s", at, err, out.String())
	}
	var k int
	if i := strings.Index(out.String(), "heard "); i < 0 {
		n.t.Fatalf("listen at %s said nothing:\n%s", at, out.String())
	} else {
		fmt.Sscanf(out.String()[i:], "heard %d", &k)
	}
	return k
}

func TestRelayNetns(t *testing.T) {
	testenv.Long(t)
	testenv.RequireNetns(t)
	testenv.RequireTool(t, "iptables")
	n := newSubnets(t, map[string]float64{"b1": 0.03, "b2": 0.03, "b3": 0.03})
	if k := n.heard("s", "rb"); k != 0 {
		t.Fatalf("precheck: rb in subnet B heard %d multicast probes from s in subnet A: the router carries multicast", k)
	}
	if k := n.heard("rb", "b1"); k == 0 {
		t.Fatal("precheck: b1 heard no multicast probe from rb in its own subnet")
	}
	size := 32 << 20
	if raceEnabled {
		size = 8 << 20 // the race detector slows every node several times
	}
	img, m, _ := randomImage(t, size)
	if err := image.WriteManifestFile(img+".manifest", m); err != nil {
		t.Fatal(err)
	}
	openPack(t, img, m, "")
	rep, relayed, into, link := runRelayNetns(t, n, img, m)
	checkRelayNetns(t, rep, relayed)
	t.Logf("payload %d B; into subnet B %d B (%.3f×); the sender's link %d B (%.3f×); relay: %d rounds, %d repair packets; session %v (registration %v)",
		rep.PayloadBytes, into, float64(into)/float64(rep.PayloadBytes), link, float64(link)/float64(rep.PayloadBytes), relayed.Rounds, relayed.RepairPackets,
		rep.Duration.Round(time.Millisecond), rep.Registration.Round(time.Millisecond))
	if lim := 1.15 * float64(rep.PayloadBytes); float64(into) > lim {
		t.Errorf("%d B went into subnet B, more than 1.15× the %d B payload", into, rep.PayloadBytes)
	}
	if lim := 2.2 * float64(rep.PayloadBytes); float64(link) > lim {
		t.Errorf("the sender's link carried %d B, more than 2.2× the %d B payload", link, rep.PayloadBytes)
	}
}

// runRelayNetns runs the session: receivers and the relay first, then the
// sender; it returns the sender's and the relay's reports, the bytes the
// router sent into B and those the sender's link carried.
func runRelayNetns(t *testing.T, n *subnets, img string, m *image.Manifest) (*Report, *Report, int64, int64) {
	dir := t.TempDir()
	hosts := []string{"a1", "a2", "rb", "b1", "b2", "b3"}
	outs, cmds := map[string]*bytes.Buffer{}, map[string]*exec.Cmd{}
	for _, h := range hosts {
		role := "recv"
		if h == "rb" {
			role = "relay"
		}
		outs[h] = &bytes.Buffer{}
		cmds[h] = n.start(h, role, relayArgs{Host: h, Out: filepath.Join(dir, h+".img")}, outs[h])
	}
	time.Sleep(300 * time.Millisecond) // every node listening
	into0, link0 := n.txBytes("rt", "rtB"), n.txBytes("s", "eth0")
	var sout bytes.Buffer
	sender := n.start("s", "send", relayArgs{Image: img, Hosts: hosts, Relays: []string{"rb"}, Addrs: n.addr, Rate: 200e6}, &sout)
	for _, h := range hosts {
		if err := cmds[h].Wait(); err != nil {
			t.Errorf("%s: %v\n%s", h, err, outs[h])
		}
	}
	if err := sender.Wait(); err != nil {
		t.Fatalf("sender: %v\n%s", err, sout.String())
	}
	into, link := n.txBytes("rt", "rtB")-into0, n.txBytes("s", "eth0")-link0
	for _, h := range hosts {
		if err := image.VerifyFile(context.Background(), filepath.Join(dir, h+".img"), m); err != nil {
			t.Errorf("%s: image missing or wrong (%v)", h, err)
		}
	}
	return decodeReport(t, sout.Bytes()), relayReport(t, outs["rb"].String()), into, link
}

// decodeReport reads the sender's report off its stdout.
func decodeReport(t *testing.T, out []byte) *Report {
	i := bytes.LastIndex(out, []byte(`{"Session"`))
	if i < 0 {
		t.Fatalf("no report in sender output:\n%s", out)
	}
	var rep Report
	if err := json.NewDecoder(bytes.NewReader(out[i:])).Decode(&rep); err != nil {
		t.Fatalf("report: %v", err)
	}
	return &rep
}

// relayReport reads the report of the relay's own session off its stdout.
func relayReport(t *testing.T, out string) *Report {
	i := strings.LastIndex(out, relayReportMark)
	if i < 0 {
		t.Fatalf("no report in the relay's output:\n%s", out)
	}
	var rep Report
	if err := json.NewDecoder(strings.NewReader(out[i+len(relayReportMark):])).Decode(&rep); err != nil {
		t.Fatalf("relay report: %v", err)
	}
	return &rep
}

// checkRelayNetns: every host complete, b* through the relay at their own
// addresses, and none of their NACKs at the sender; rb over the unicast
// path; a* by multicast; the relay repaired its subnet's loss.
func checkRelayNetns(t *testing.T, rep, relayed *Report) {
	if done, all := rep.Completed(); done != all || all != 6 {
		t.Errorf("sender: %d of %d hosts complete: %+v", done, all, rep.Hosts)
	}
	for _, h := range rep.Hosts {
		want, via := PathMulticast, ""
		switch {
		case h.ID == "rb":
			want = PathUnicast
		case slices.Contains(relayNetB, h.ID):
			want, via = PathRelay, "rb"
		}
		if h.Path != want || h.Via != via {
			t.Errorf("%s: path %q via %q, want %q via %q", h.ID, h.Path, h.Via, want, via)
		}
		if via != "" && (h.Feedback != 0 || !strings.HasPrefix(h.Addr, "10.77.2.")) {
			t.Errorf("%s: %d NACKs at the sender, address %q; want none, and its own address", h.ID, h.Feedback, h.Addr)
		}
	}
	if done, all := relayed.Completed(); done != 3 || all != 3 || relayed.Rounds == 0 {
		t.Errorf("the relay's session: %d of %d hosts complete, %d rounds; want 3 of 3 and repair rounds at 3%% loss", done, all, relayed.Rounds)
	}
}

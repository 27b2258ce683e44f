package doctor

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestReadIGMP(t *testing.T) {
	path := filepath.Join(t.TempDir(), "igmp")
	os.WriteFile(path, []byte("Idx\tDevice    : Count Querier\tGroup    Users Timer\tReporter\n"+
		"1\tlo        :     1      V3\n\t\t\t\t010000E0     1 0:00000000\t\t0\n"+
		"4\teth0      :     2      V3\n\t\t\t\t0100C0EF     1 0:00000000\t\t0\n\t\t\t\t010000E0     1 0:00000000\t\t0\n"+
		"5\tenp3s0f0.100:     1      V3\n\t\t\t\t0100C0EF     1 0:00000000\t\t0\n"), 0o644)
	got, err := readIGMP(path)
	if err != nil {
		t.Fatal(err)
	}
	if !got["eth0"]["239.192.0.1"] || !got["lo"]["224.0.0.1"] || got["lo"]["239.192.0.1"] || !got["enp3s0f0.100"]["239.192.0.1"] {
		t.Fatalf("readIGMP = %v", got)
	}
	cfg := Config{Proc: t.TempDir(), Group: &net.UDPAddr{IP: net.ParseIP("239.192.0.1"), Port: 5000}, Iface: "eth0"}
	os.MkdirAll(filepath.Join(cfg.Proc, "net"), 0o755)
	os.Rename(path, filepath.Join(cfg.Proc, "net", "igmp"))
	if f := checkMembership(cfg); f[0].Level != OK {
		t.Fatalf("joined on eth0: %+v", f)
	}
	cfg.Iface = "eth1"
	if f := checkMembership(cfg); f[0].Level != Fail || !strings.Contains(f[0].Detail, "not on eth1") {
		t.Fatalf("joined on another interface: %+v", f)
	}
	cfg.Group.IP = net.ParseIP("239.192.0.9")
	if f := checkMembership(cfg); f[0].Level != Fail || !strings.Contains(f[0].Detail, "not running") {
		t.Fatalf("not joined: %+v", f)
	}
}

func TestDroppingRules(t *testing.T) {
	g := &net.UDPAddr{IP: net.ParseIP("239.192.0.1"), Port: 5000}
	dump := strings.Join([]string{
		"*filter",
		":INPUT ACCEPT [0:0]",
		"-A INPUT -p tcp -m tcp --dport 22 -j DROP",
		"-A INPUT -p udp -m udp --dport 5001 -j DROP",
		"-A INPUT -d 224.0.0.0/4 -j REJECT --reject-with icmp-port-unreachable",
		"-A INPUT -p udp -m statistic --mode random --probability 0.05000000000 -j DROP",
		"-A INPUT -p udp -m udp --dport 6000:6010 -j DROP",
		"-A INPUT -d 10.0.0.0/8 -p udp -j DROP",
		"-A INPUT -p udp -m multiport --dports 80,5000 -j DROP",
		"-A INPUT -m conntrack --ctstate INVALID -j DROP",
		"-A INPUT ! -d 224.0.0.0/4 -p udp -j DROP",
		"-A INPUT -i eth9 -j DROP",
		"-A INPUT -p udp --dport 5000 -j ACCEPT",
		"-A INPUT -p udp --dport 5000 -j DROP",
		"-A FORWARD -p udp -j DROP",
		"COMMIT",
	}, "\n")
	got := droppingRules(dump, g, "eth0")
	want := []string{
		"-A INPUT -p udp -m udp --dport 5001 -j DROP",
		"-A INPUT -d 224.0.0.0/4 -j REJECT --reject-with icmp-port-unreachable",
		"-A INPUT -p udp -m statistic --mode random --probability 0.05000000000 -j DROP",
		"-A INPUT -p udp -m multiport --dports 80,5000 -j DROP",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("droppingRules =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// a dropping policy with nothing accepting the group
	policy := "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n"
	if got := droppingRules(policy, g, "eth0"); len(got) != 1 || !strings.Contains(got[0], "policy") {
		t.Fatalf("INPUT policy DROP: %q", got)
	}
	accepted := "*filter\n:INPUT DROP [0:0]\n-A INPUT -d 239.192.0.1/32 -p udp -j ACCEPT\nCOMMIT\n"
	if got := droppingRules(accepted, g, "eth0"); len(got) != 0 {
		t.Fatalf("policy DROP but the group accepted: %q", got)
	}
}

// TestPeerPortRules: TCP to the peer port dropped before any rule accepts
// it is found; a rule naming a destination, another port, or UDP is not.
func TestPeerPortRules(t *testing.T) {
	dump := strings.Join([]string{
		"*filter",
		":INPUT ACCEPT [0:0]",
		"-A INPUT -p udp --dport 5001 -j DROP",
		"-A INPUT -p tcp --dport 22 -j DROP",
		"-A INPUT -d 10.0.0.5/32 -p tcp --dport 5001 -j DROP",
		"-A INPUT -p tcp -m tcp --dport 5001 -j REJECT --reject-with tcp-reset",
		"-A INPUT -p tcp --dport 5001 -j ACCEPT",
		"-A INPUT -p tcp -j DROP",
		"COMMIT",
	}, "\n")
	got := droppingPeerPort(dump, 5001, "eth0")
	if len(got) != 1 || got[0] != "-A INPUT -p tcp -m tcp --dport 5001 -j REJECT --reject-with tcp-reset" {
		t.Errorf("droppingPeerPort = %q", got)
	}
	open := "*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 5000:5001 -j ACCEPT\nCOMMIT\n"
	if got := droppingPeerPort(open, 5001, "eth0"); len(got) != 0 {
		t.Errorf("policy DROP but the port accepted: %q", got)
	}
}

func TestRPFilterAndBridges(t *testing.T) {
	cfg := Config{Proc: t.TempDir(), Sys: t.TempDir(), Iface: "eth0"}
	for dev, v := range map[string]string{"all": "0", "eth0": "1"} {
		d := filepath.Join(cfg.Proc, "sys/net/ipv4/conf", dev)
		os.MkdirAll(d, 0o755)
		os.WriteFile(filepath.Join(d, "rp_filter"), []byte(v+"\n"), 0o644)
	}
	if f := checkRPFilter(cfg); f[0].Level != Warn {
		t.Fatalf("strict rp_filter on eth0: %+v", f)
	}
	br := filepath.Join(cfg.Sys, "class/net/br0")
	os.MkdirAll(filepath.Join(br, "bridge"), 0o755)
	os.WriteFile(filepath.Join(br, "bridge/multicast_snooping"), []byte("1\n"), 0o644)
	os.WriteFile(filepath.Join(br, "bridge/multicast_querier"), []byte("0\n"), 0o644)
	os.MkdirAll(filepath.Join(cfg.Sys, "class/net/eth0"), 0o755)
	if f := checkBridges(cfg); f[0].Level != OK {
		t.Fatalf("eth0 on no bridge: %+v", f)
	}
	os.Symlink(br, filepath.Join(cfg.Sys, "class/net/eth0/master"))
	if f := checkBridges(cfg); f[0].Level != OK || !strings.Contains(f[0].Detail, "br0") {
		t.Fatalf("eth0 on a snooping bridge without querier: %+v", f)
	}
}

func TestNginxFindings(t *testing.T) {
	good := "server {\n root /srv/loopcast/current/public;\n open_file_cache off;\n fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;\n}"
	if f := nginxFindings(good, "/srv/loopcast"); Worst(f) != OK {
		t.Fatalf("the sample's settings: %+v", f)
	}
	bad := "server {\n root /srv/loopcast/current/public;\n open_file_cache max=1000;\n fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;\n}"
	f := nginxFindings(bad, "/srv/loopcast")
	if Worst(f) != Fail || len(f) != 2 {
		t.Fatalf("$document_root and an open file cache: %+v", f)
	}
	if f := nginxFindings(bad, "/elsewhere"); Worst(f) != OK {
		t.Fatalf("a server not serving the store: %+v", f)
	}
}

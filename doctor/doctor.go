// Package doctor checks a receiver host for what keeps a deploy from
// reaching it or from being served right: the multicast plumbing
// (interface, MTU, group membership, rp_filter, firewall rules, a local
// bridge snooping IGMP without a querier), the store (disk, loop devices,
// keys) and the web stack (nginx passing scripts by $realpath_root, the
// php-fpm pool and OPcache). Each finding names what is wrong and the fix.
package doctor

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/multicast"
	"github.com/loopcast/loopcast/opcache"
	"github.com/loopcast/loopcast/release"
)

// Level says how bad a finding is.
type Level int

const (
	OK   Level = iota // checked, fine
	Warn              // may keep a deploy from working, or costs something
	Fail              // keeps a deploy from working, or serves wrong code
)

func (l Level) String() string { return [...]string{"ok", "WARN", "FAIL"}[l] }

// Finding is the outcome of one check.
type Finding struct {
	Check  string `json:"check"`
	Level  Level  `json:"level"`
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

// Config is what the host's agent runs with.
type Config struct {
	Root    string
	Group   *net.UDPAddr // data group; control is on port+1
	Iface   string
	Trust   []string // trusted key files
	HostKey string   // host key file
	PHPFPM  string   // pool socket; "" when none
	Reserve int64
	// Proc and Sys are where /proc and /sys are read (tests point them
	// elsewhere); "/proc", "/sys" when empty.
	Proc, Sys string
}

// Run runs every check and returns the findings, worst first within
// their order.
func Run(ctx context.Context, cfg Config) []Finding {
	if cfg.Proc == "" {
		cfg.Proc = "/proc"
	}
	if cfg.Sys == "" {
		cfg.Sys = "/sys"
	}
	var out []Finding
	out = append(out, checkIface(cfg)...)
	out = append(out, checkMembership(cfg)...)
	out = append(out, checkRPFilter(cfg)...)
	out = append(out, checkFirewall(ctx, cfg)...)
	out = append(out, checkBridges(cfg)...)
	out = append(out, checkStore(cfg)...)
	out = append(out, checkNginx(ctx, cfg)...)
	out = append(out, checkPool(ctx, cfg)...)
	return out
}

// Worst returns the worst level among findings.
func Worst(fs []Finding) Level {
	w := OK
	for _, f := range fs {
		w = max(w, f.Level)
	}
	return w
}

func ok(check, detail string) Finding { return Finding{Check: check, Level: OK, Detail: detail} }

func checkIface(cfg Config) []Finding {
	const check = "interface"
	if cfg.Iface == "" {
		return []Finding{{Check: check, Level: Warn, Detail: "no --iface: the group is joined on the system's choice of interface",
			Fix: "set LOOPCAST_IFACE to the interface the sender's network is on"}}
	}
	ifi, err := net.InterfaceByName(cfg.Iface)
	if err != nil {
		return []Finding{{Check: check, Level: Fail, Detail: fmt.Sprintf("%s: %v", cfg.Iface, err), Fix: "name an existing interface in LOOPCAST_IFACE"}}
	}
	var out []Finding
	switch {
	case ifi.Flags&net.FlagUp == 0:
		out = append(out, Finding{Check: check, Level: Fail, Detail: cfg.Iface + " is down", Fix: "ip link set " + cfg.Iface + " up"})
	case ifi.Flags&net.FlagMulticast == 0:
		out = append(out, Finding{Check: check, Level: Fail, Detail: cfg.Iface + " does not do multicast", Fix: "ip link set " + cfg.Iface + " multicast on"})
	default:
		out = append(out, ok(check, cfg.Iface+" up, multicast"))
	}
	need := multicast.MaxPacket + 28 // IPv4 and UDP headers
	if ifi.MTU < need {
		out = append(out, Finding{Check: "mtu", Level: Fail,
			Detail: fmt.Sprintf("%s has MTU %d: loopcast's datagrams take %d bytes with their headers, and would be fragmented or dropped", cfg.Iface, ifi.MTU, need),
			Fix:    fmt.Sprintf("ip link set %s mtu %d (and the same along the path)", cfg.Iface, need)})
	} else {
		out = append(out, ok("mtu", fmt.Sprintf("%s MTU %d ≥ %d", cfg.Iface, ifi.MTU, need)))
	}
	return out
}

// checkMembership reads /proc/net/igmp: the agent, when running, has
// joined the group on the interface.
func checkMembership(cfg Config) []Finding {
	const check = "group membership"
	if cfg.Group == nil {
		return nil
	}
	joined, err := readIGMP(filepath.Join(cfg.Proc, "net", "igmp"))
	if err != nil {
		return []Finding{{Check: check, Level: Warn, Detail: err.Error()}}
	}
	for _, ifc := range []string{cfg.Iface, ""} {
		for dev, groups := range joined {
			if (ifc == "" || dev == ifc) && groups[cfg.Group.IP.String()] {
				if ifc == "" && cfg.Iface != "" {
					return []Finding{{Check: check, Level: Fail, Detail: fmt.Sprintf("%s is joined on %s, not on %s", cfg.Group.IP, dev, cfg.Iface),
						Fix: "run the agent with --iface " + cfg.Iface}}
				}
				return []Finding{ok(check, fmt.Sprintf("%s joined on %s", cfg.Group.IP, dev))}
			}
		}
	}
	return []Finding{{Check: check, Level: Fail, Detail: fmt.Sprintf("nothing on this host has joined %s: the agent is not running here", cfg.Group.IP),
		Fix: "systemctl start loopcast-receiver (journalctl -u loopcast-receiver says why it stopped)"}}
}

// readIGMP parses /proc/net/igmp: device -> joined groups.
func readIGMP(path string) (map[string]map[string]bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("doctor: %w", err)
	}
	defer f.Close()
	out := map[string]map[string]bool{}
	dev := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		switch {
		case len(fields) == 0 || fields[0] == "Idx":
		case !strings.HasPrefix(line, "\t") && len(fields) >= 2:
			dev = strings.TrimSuffix(fields[1], ":") // "%-10s:": a long name meets its colon
			out[dev] = map[string]bool{}
		case dev != "":
			b, err := hex.DecodeString(fields[0])
			if err != nil || len(b) != 4 {
				continue
			}
			var ip [4]byte
			binary.LittleEndian.PutUint32(ip[:], binary.BigEndian.Uint32(b))
			out[dev][net.IP(ip[:]).String()] = true
		}
	}
	return out, sc.Err()
}

// checkRPFilter: strict reverse-path filtering (1) drops multicast from a
// sender on another subnet than the route back to it.
func checkRPFilter(cfg Config) []Finding {
	const check = "rp_filter"
	val := func(dev string) int {
		b, err := os.ReadFile(filepath.Join(cfg.Proc, "sys/net/ipv4/conf", dev, "rp_filter"))
		if err != nil {
			return -1
		}
		n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		return n
	}
	eff := val("all")
	if cfg.Iface != "" {
		eff = max(eff, val(cfg.Iface))
	}
	if eff == 1 {
		return []Finding{{Check: check, Level: Warn,
			Detail: "strict reverse-path filtering: multicast from a sender whose address is not routed back through " + orAny(cfg.Iface) + " is dropped",
			Fix:    "sysctl net.ipv4.conf.all.rp_filter=2 net.ipv4.conf." + orAny(cfg.Iface) + ".rp_filter=2 (loose), or route the sender's subnet through it"}}
	}
	return []Finding{ok(check, fmt.Sprintf("rp_filter %d", eff))}
}

func orAny(s string) string {
	if s == "" {
		return "default"
	}
	return s
}

// checkFirewall looks through iptables' INPUT rules for ones that drop the
// group's traffic: its ports, the group, or all multicast.
func checkFirewall(ctx context.Context, cfg Config) []Finding {
	const check = "firewall"
	if cfg.Group == nil {
		return nil
	}
	out, found, err := runTool(ctx, "iptables-save", "-t", "filter")
	switch {
	case !found:
		return []Finding{ok(check, "no iptables-save: iptables rules not checked (nftables rules are not read)")}
	case err != nil:
		return []Finding{{Check: check, Level: Warn, Detail: err.Error()}}
	}
	ctl := control.Addr(cfg.Group).Port
	var fs []Finding
	for _, r := range droppingPeerPort(string(out), ctl, cfg.Iface) {
		fs = append(fs, Finding{Check: "peer port", Level: Warn,
			Detail: "this rule drops TCP to port " + strconv.Itoa(ctl) + ", where hosts that missed a deploy take releases from this one: " + r,
			Fix:    fmt.Sprintf("accept it before the rule (iptables -I INPUT -p tcp --dport %d -j ACCEPT), or run the agent with --peer-addr off", ctl)})
	}
	bad := droppingRules(string(out), cfg.Group, cfg.Iface)
	if len(bad) == 0 {
		return append(fs, ok(check, "no INPUT rule drops the group or its ports"))
	}
	for _, r := range bad {
		fs = append(fs, Finding{Check: check, Level: Fail, Detail: "this rule drops the group's traffic: " + r,
			Fix: fmt.Sprintf("accept UDP to %s ports %d-%d before it (iptables -I INPUT -d %s -p udp --dport %d:%d -j ACCEPT)",
				cfg.Group.IP, cfg.Group.Port, ctl, cfg.Group.IP, cfg.Group.Port, ctl)})
	}
	return fs
}

// droppingRules walks the INPUT chain of an iptables-save dump in order
// and returns the rules that drop or reject UDP to group (by port, by the
// group's address or all of 224.0.0.0/4, or all UDP) before any rule
// accepts it, and the chain's policy when it drops and nothing accepted.
// Rules it cannot judge (negations, other interfaces, source ports,
// connection states, jumps to other chains) are passed over: they may
// or may not match, and a rule matching at random (-m statistic) counts,
// as it drops some of it. iface, when set, is the interface the group
// arrives on.
func droppingRules(dump string, group *net.UDPAddr, iface string) []string {
	ports := map[string]bool{strconv.Itoa(group.Port): true, strconv.Itoa(control.Addr(group).Port): true}
	return dropping(dump, "udp", func(d string) bool { return covers(d, group.IP) }, ports, iface, "the group")
}

// droppingPeerPort returns the INPUT rules that drop TCP to port (the peer
// port, where hosts catching up take releases from this one) before any
// rule accepts it. A rule naming a destination address is passed over:
// which of the host's addresses peers use cannot be told here.
func droppingPeerPort(dump string, port int, iface string) []string {
	return dropping(dump, "tcp", func(string) bool { return false }, map[string]bool{strconv.Itoa(port): true}, iface, "the peer port")
}

// dropping is the walk droppingRules and droppingPeerPort share: proto's
// traffic to ports, with dstOK saying whether a -d matches it.
func dropping(dump, proto string, dstOK func(string) bool, ports map[string]bool, iface, what string) []string {
	var out []string
	policy := ""
	for _, line := range strings.Split(dump, "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == ":INPUT" {
			policy = f[1]
			continue
		}
		if len(f) < 2 || f[0] != "-A" || f[1] != "INPUT" {
			continue
		}
		target, p, dst, dport, in := "", "", "", "", ""
		unsure := false
		for i := 2; i < len(f); i++ {
			next := ""
			if i+1 < len(f) {
				next = f[i+1]
			}
			switch f[i] {
			case "-j":
				target = next
			case "-p":
				p = next
			case "-d":
				dst = next
			case "--dport", "--dports":
				dport = next
			case "-i":
				in = next
			case "!", "--sport", "--sports", "-s", "--ctstate", "--state", "--uid-owner", "-g":
				unsure = true
			}
		}
		if unsure || in != "" && iface != "" && in != iface {
			continue
		}
		if p != "" && p != proto && p != "all" || dst != "" && !dstOK(dst) || dport != "" && !portsCover(dport, ports) {
			continue
		}
		switch target {
		case "ACCEPT":
			if dst != "" || dport != "" || p == proto { // accepts that traffic from here on
				return out
			}
		case "DROP", "REJECT":
			out = append(out, line)
		}
	}
	if policy == "DROP" && len(out) == 0 {
		out = append(out, ":INPUT DROP (the chain's policy, and no rule accepts "+what+")")
	}
	return out
}

func covers(cidr string, ip net.IP) bool {
	if !strings.Contains(cidr, "/") {
		cidr += "/32"
	}
	_, n, err := net.ParseCIDR(cidr)
	return err == nil && n.Contains(ip)
}

// portsCover reads "5000", "5000:5001" or "80,5000".
func portsCover(spec string, ports map[string]bool) bool {
	for _, part := range strings.Split(spec, ",") {
		lo, hi, isRange := strings.Cut(part, ":")
		if !isRange {
			if ports[part] {
				return true
			}
			continue
		}
		l, err1 := strconv.Atoi(lo)
		h, err2 := strconv.Atoi(hi)
		for p := range ports {
			n, _ := strconv.Atoi(p)
			if err1 == nil && err2 == nil && n >= l && n <= h {
				return true
			}
		}
	}
	return false
}

// checkBridges: a bridge on this host that snoops IGMP without a querier
// stops forwarding the group a few minutes after the agents joined: the
// interface itself, or the bridge it is a port of.
func checkBridges(cfg Config) []Finding {
	const check = "igmp snooping"
	var bridges []string
	if cfg.Iface != "" {
		for _, b := range []string{filepath.Join(cfg.Sys, "class/net", cfg.Iface, "bridge"), filepath.Join(cfg.Sys, "class/net", cfg.Iface, "master", "bridge")} {
			if fi, err := os.Stat(b); err == nil && fi.IsDir() {
				bridges = append(bridges, b)
			}
		}
	}
	var out []Finding
	for _, b := range bridges {
		read := func(name string) string {
			v, _ := os.ReadFile(filepath.Join(b, name))
			return strings.TrimSpace(string(v))
		}
		dev := filepath.Base(filepath.Dir(b))
		if real, err := filepath.EvalSymlinks(filepath.Dir(b)); err == nil {
			dev = filepath.Base(real)
		}
		if read("multicast_snooping") == "1" && read("multicast_querier") == "0" {
			// a Linux bridge floods multicast while it sees no querier at
			// all, so this alone breaks nothing; switches that drop
			// instead are not seen from here
			out = append(out, ok(check, "bridge "+dev+" snoops IGMP without being a querier: fine while it sees none (it floods); if a querier appears and then goes, memberships age out"))
		}
	}
	if len(out) == 0 {
		out = append(out, ok(check, "the interface is on no bridge of this host snooping IGMP without a querier (switches on the path are not seen from here)"))
	}
	return out
}

func checkStore(cfg Config) []Finding {
	var out []Finding
	if _, err := os.Stat(cfg.Root); err != nil {
		return []Finding{{Check: "store", Level: Fail, Detail: err.Error(), Fix: "start the agent once: it makes " + cfg.Root}}
	}
	for _, d := range []string{"images", "releases"} {
		if _, err := os.Stat(filepath.Join(cfg.Root, d)); err != nil {
			return append(out, Finding{Check: "store", Level: Fail, Detail: fmt.Sprintf("%s is not a release store: %v", cfg.Root, err),
				Fix: "start the agent once with --root " + cfg.Root})
		}
	}
	s, err := release.Open(cfg.Root, release.Options{Reserve: cfg.Reserve}) // its directories exist: nothing is made
	if err == nil {
		var st *release.Status
		if st, err = s.Status(); err == nil {
			out = append(out, ok("store", fmt.Sprintf("%s: current %s, %d releases kept, %s free", cfg.Root, idOrNone(st.Current), len(st.Releases), humanize.IBytes(uint64(st.FreeBytes)))))
			if st.LastError != "" {
				out = append(out, Finding{Check: "store", Level: Warn, Detail: "last error: " + st.LastError, Fix: "receiver status says more"})
			}
		}
	}
	if err != nil {
		out = append(out, Finding{Check: "store", Level: Fail, Detail: err.Error()})
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		out = append(out, Finding{Check: "loop devices", Level: Fail, Detail: "/dev/loop-control: " + err.Error(), Fix: "modprobe loop"})
	} else {
		out = append(out, ok("loop devices", "/dev/loop-control present"))
	}
	key := cfg.HostKey
	if key == "" {
		key = filepath.Join(cfg.Root, "host.key")
	}
	if fi, err := os.Stat(key); err != nil {
		out = append(out, Finding{Check: "host key", Level: Warn, Detail: err.Error(), Fix: "receiver keygen (the agent makes it on first start)"})
	} else if fi.Mode().Perm()&0o077 != 0 {
		out = append(out, Finding{Check: "host key", Level: Fail, Detail: fmt.Sprintf("%s is mode %o: others can read the host's private key", key, fi.Mode().Perm()), Fix: "chmod 600 " + key})
	} else {
		out = append(out, ok("host key", key))
	}
	if len(cfg.Trust) == 0 {
		out = append(out, Finding{Check: "trusted keys", Level: Fail, Detail: "no --trust: the agent takes no release", Fix: "set LOOPCAST_TRUST to the release public key file"})
	}
	for _, k := range cfg.Trust {
		if _, err := os.ReadFile(k); err != nil {
			out = append(out, Finding{Check: "trusted keys", Level: Fail, Detail: err.Error(), Fix: "copy the sender's release.pub there"})
		} else {
			out = append(out, ok("trusted keys", k))
		}
	}
	return out
}

// idOrNone is a release id, "none" for the zero id.
func idOrNone(id image.ID) string {
	if id.IsZero() {
		return "none"
	}
	return id.String()
}

// checkNginx reads nginx's whole configuration (nginx -T): PHP must be
// passed by $realpath_root, or a switch can mix releases in one request.
func checkNginx(ctx context.Context, cfg Config) []Finding {
	const check = "nginx"
	out, found, err := runTool(ctx, "nginx", "-T")
	switch {
	case !found:
		return []Finding{ok(check, "no nginx on this host: not checked")}
	case err != nil:
		return []Finding{{Check: check, Level: Warn, Detail: err.Error()}}
	}
	return nginxFindings(string(out), cfg.Root)
}

// toolTimeout bounds each tool the doctor runs.
const toolTimeout = 10 * time.Second

// runTool runs a tool of this host with args and returns what it printed;
// found is false when the tool is not installed.
func runTool(ctx context.Context, name string, args ...string) (out []byte, found bool, err error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return nil, false, nil
	}
	ctx, cancel := context.WithTimeout(ctx, toolTimeout)
	defer cancel()
	out, err = exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		return nil, true, fmt.Errorf("%s %s: %v: %.200s", name, strings.Join(args, " "), err, out)
	}
	return out, true, nil
}

func nginxFindings(conf, root string) []Finding {
	const check = "nginx"
	current := filepath.Join(root, "current")
	if !strings.Contains(conf, current) {
		return []Finding{ok(check, "no server serves "+current+": not checked")}
	}
	var out []Finding
	for _, line := range strings.Split(conf, "\n") {
		l := strings.TrimSpace(line)
		if strings.HasPrefix(l, "fastcgi_param") && strings.Contains(l, "SCRIPT_FILENAME") && !strings.Contains(l, "$realpath_root") {
			out = append(out, Finding{Check: check, Level: Fail,
				Detail: "nginx passes SCRIPT_FILENAME without $realpath_root (" + l + "): a request during a switch can mix two releases, and OPcache keys on the symlink's path",
				Fix:    "fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name; (see packaging/nginx-loopcast.conf)"})
		}
		if strings.HasPrefix(l, "open_file_cache ") && !strings.Contains(l, "off") {
			out = append(out, Finding{Check: check, Level: Warn, Detail: "nginx caches open files (" + l + "): it may keep serving the old release's paths",
				Fix: "open_file_cache off; in the server serving " + current})
		}
	}
	if len(out) == 0 {
		out = append(out, ok(check, "scripts passed by $realpath_root"))
	}
	return out
}

func checkPool(ctx context.Context, cfg Config) []Finding {
	const check = "php-fpm"
	if cfg.PHPFPM == "" {
		return []Finding{ok(check, "no --php-fpm: releases are served from their own paths (no slots)")}
	}
	c := opcache.ForStore(cfg.Root, cfg.PHPFPM)
	if _, err := os.Stat(c.Helper); err != nil {
		return []Finding{{Check: check, Level: Fail, Detail: err.Error(), Fix: "start the agent with --php-fpm " + cfg.PHPFPM + ": it installs its OPcache helper"}}
	}
	c.Timeout = 5 * time.Second
	st, err := c.Status(ctx)
	switch {
	case err != nil:
		return []Finding{{Check: check, Level: Fail, Detail: err.Error(),
			Fix: "start the pool, check the socket's path and permissions, and that opcache.restrict_api is empty"}}
	case !st.Enabled:
		return []Finding{{Check: check, Level: Warn, Detail: "OPcache is off in the pool: slots save nothing", Fix: "opcache.enable=1"}}
	}
	out := []Finding{ok(check, fmt.Sprintf("pool answers; OPcache %d scripts, %s of %s used", st.Scripts, humanize.IBytes(uint64(st.UsedMemory+st.WastedMemory)), humanize.IBytes(uint64(st.MemoryLimit))))}
	if st.ValidateTimestamps {
		out = append(out, Finding{Check: "opcache", Level: Warn, Detail: "opcache.validate_timestamps=1: a stat per script per request, which read-only releases do not need",
			Fix: "php_admin_value[opcache.validate_timestamps] = 0 in the pool (packaging/php-fpm-loopcast.conf)"})
	}
	if full := st.NearFull(); full != "" {
		out = append(out, Finding{Check: "opcache", Level: Warn, Detail: full, Fix: "raise opcache.memory_consumption / max_accelerated_files for one tree per slot"})
	}
	return out
}

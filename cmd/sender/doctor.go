package main

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/loopcast/loopcast/control"
	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/multicast"
	"github.com/urfave/cli/v2"
)

// finding is one line of `sender doctor`.
type finding struct {
	Host   string `json:"host"`
	Check  string `json:"check"`
	Level  string `json:"level"` // ok, WARN, FAIL
	Detail string `json:"detail"`
	Fix    string `json:"fix,omitempty"`
}

func doctorCommand() *cli.Command {
	return &cli.Command{
		Name: "doctor",
		Usage: "check the path to every host: this host's interface, and each listed host's answer to a signed command " +
			"multicast to the group, its free disk, version and last error (exit 1 on any problem)",
		Flags: append(groupFlags(), stateDirFlag(), allowNewHostsFlag()),
		Action: func(c *cli.Context) error {
			if !c.IsSet("hosts") {
				return fmt.Errorf("doctor: --hosts names the hosts to check (a host that hears nothing cannot volunteer)")
			}
			f, pins, err := fleet(c)
			if err != nil {
				return err
			}
			defer pins.Save()
			fs := localFindings(c.String("iface"))
			// a probe on the data port first: each agent that hears it
			// says so in its STATUS reply
			var nonce [16]byte
			rand.Read(nonce[:])
			if err := f.Probe(nonce); err != nil {
				return err
			}
			// the group alone first: a host reached only by unicast is a
			// host that does not hear it
			known := f.Cmd.Unicast
			f.Cmd.Unicast = nil
			st, err := f.Status(c.Context)
			if err != nil {
				return err
			}
			byUnicast, err := unicastOnly(c, f, st, known)
			if err != nil {
				return err
			}
			group := f.Group.(*net.UDPAddr) // the CLI's fleet is a UDP group
			fs = append(fs, hostFindings(st, byUnicast, group, nonce, lastImageSize(deploy.StatePaths(c.String("state-dir"), group).Images))...)
			if c.Bool("json") {
				enc := json.NewEncoder(c.App.Writer)
				enc.SetIndent("", "  ")
				enc.Encode(fs)
			} else {
				tw := tabwriter.NewWriter(c.App.Writer, 0, 8, 2, ' ', 0)
				for _, x := range fs {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", x.Level, x.Host, x.Check, x.Detail)
					if x.Fix != "" {
						fmt.Fprintf(tw, "\t\t\tfix: %s\n", x.Fix)
					}
				}
				tw.Flush()
			}
			for _, x := range fs {
				if x.Level != "ok" {
					return &cliutil.ExitError{Code: 1, Err: fmt.Errorf("doctor: problems found")}
				}
			}
			return nil
		},
	}
}

// unicastOnly asks the hosts that did not answer the group, by unicast at
// their known addresses alone, and returns those that answer that way
// (with the address).
func unicastOnly(c *cli.Context, f *deploy.Fleet, st []deploy.HostStatus, known map[string]string) (map[string]string, error) {
	var ask []string
	uni := map[string]string{}
	for _, s := range st {
		if ip, ok := known[s.ID]; ok && s.Error == "no answer" {
			ask, uni[s.ID] = append(ask, s.ID), ip
		}
	}
	out := map[string]string{}
	if len(ask) == 0 {
		return out, nil
	}
	g := *f
	g.Hosts, g.Cmd.Unicast = ask, uni // (they missed the group once: an answer now comes by the unicast retransmissions)
	if g.Cmd.Timeout == 0 || g.Cmd.Timeout > 3*time.Second {
		g.Cmd.Timeout = 3 * time.Second
	}
	again, err := g.Status(c.Context)
	if err != nil {
		return nil, err
	}
	for _, s := range again {
		if s.Error == "" {
			out[s.ID] = uni[s.ID]
		}
	}
	return out, nil
}

// localFindings checks the sender's interface.
func localFindings(iface string) []finding {
	const host = "(sender)"
	if iface == "" {
		return []finding{{host, "interface", "WARN", "no --iface: the group goes out where the routing table sends 224.0.0.0/4", "name the interface the hosts are on"}}
	}
	ifi, err := net.InterfaceByName(iface)
	if err != nil {
		return []finding{{host, "interface", "FAIL", err.Error(), "name an existing interface"}}
	}
	var out []finding
	if ifi.Flags&net.FlagUp == 0 || ifi.Flags&net.FlagMulticast == 0 {
		out = append(out, finding{host, "interface", "FAIL", iface + " is down or does not do multicast", "ip link set " + iface + " up multicast on"})
	} else {
		out = append(out, finding{host, "interface", "ok", iface + " up, multicast", ""})
	}
	if need := multicast.MaxPacket + 28; ifi.MTU < need {
		out = append(out, finding{host, "mtu", "FAIL", fmt.Sprintf("%s has MTU %d, loopcast's datagrams take %d", iface, ifi.MTU, need), fmt.Sprintf("ip link set %s mtu %d", iface, need)})
	} else {
		out = append(out, finding{host, "mtu", "ok", fmt.Sprintf("%s MTU %d", iface, ifi.MTU), ""})
	}
	return out
}

// hostFindings reads each host's answer to the STATUS multicast to the
// control group: silence means the host does not hear the group (or its
// agent is down, or it does not trust the key).
func hostFindings(st []deploy.HostStatus, byUnicast map[string]string, group *net.UDPAddr, probe [16]byte, need int64) []finding {
	ctl := control.Addr(group)
	var out []finding
	for _, s := range st {
		if ip, ok := byUnicast[s.ID]; ok && s.Error == "no answer" {
			out = append(out, finding{s.ID, "hears the group", "FAIL",
				fmt.Sprintf("no answer to a STATUS multicast to %s, but it answers one sent by unicast to %s: it does not hear the group (deploys reach it over TCP meanwhile)", ctl, ip),
				"on " + s.ID + ": receiver doctor (a firewall dropping 224.0.0.0/4, IGMP snooping without a querier, the agent on another interface)"})
			continue
		}
		if s.Error != "" && s.Error != "no answer" { // it hears the group, and says no, or its answer is not counted
			out = append(out, finding{s.ID, "answers", "FAIL", fmt.Sprintf("answered the STATUS multicast to %s, but: %s", ctl, s.Error),
				"on " + s.ID + ": receiver status (an untrusted release key, its clock far off, or a host key this sender does not pin)"})
			continue
		}
		if s.Error != "" {
			out = append(out, finding{s.ID, "hears the group", "FAIL",
				fmt.Sprintf("no signed answer to a STATUS multicast to %s (%s)", ctl, s.Error),
				"on " + s.ID + ": receiver doctor (a firewall dropping the group, IGMP snooping without a querier, the agent on another interface or down, or an untrusted release key)"})
			continue
		}
		out = append(out, finding{s.ID, "hears the group", "ok", fmt.Sprintf("answered on %s; serves %s; agent %s", ctl, cliutil.IDOrDash(s.Current), s.Version), ""})
		if s.Probe != probe {
			out = append(out, finding{s.ID, "data port", "FAIL",
				fmt.Sprintf("answers commands on port %d but heard no probe multicast to %s: deploys would not reach it by multicast", ctl.Port, group),
				fmt.Sprintf("on %s: accept UDP to %s ports %d-%d (receiver doctor names the rule that drops it)", s.ID, group.IP, group.Port, ctl.Port)})
		} else {
			out = append(out, finding{s.ID, "data port", "ok", fmt.Sprintf("heard the probe on %s", group), ""})
		}
		if need := multicast.MaxPacket + 28; s.MTU != 0 && int(s.MTU) < need {
			out = append(out, finding{s.ID, "mtu", "FAIL",
				fmt.Sprintf("its group interface has MTU %d: loopcast's datagrams take %d bytes with their headers", s.MTU, need),
				fmt.Sprintf("on %s: ip link set IFACE mtu %d (and the same along the path)", s.ID, need)})
		}
		if s.Problems != "" {
			out = append(out, finding{s.ID, "agent", "FAIL", s.Problems, "on " + s.ID + ": receiver doctor"})
		}
		if s.Version != version && version != "dev" && s.Version != "dev" {
			out = append(out, finding{s.ID, "version", "WARN", fmt.Sprintf("agent %s, sender %s", s.Version, version), "upgrade them together"})
		}
		if need > 0 && int64(s.Free) < need {
			out = append(out, finding{s.ID, "disk", "WARN", fmt.Sprintf("%s free, the last image is %s", cliutil.HumanBytes(int64(s.Free)), cliutil.HumanBytes(need)),
				"make room under the agent's root (receiver status shows what is kept and why)"})
		}
		if s.LastErr != "" {
			out = append(out, finding{s.ID, "last error", "WARN", s.LastErr, "receiver status on " + s.ID})
		}
		if s.LastRefusal != "" {
			out = append(out, finding{s.ID, "last refusal", "WARN", s.LastRefusal, "receiver status on " + s.ID})
		}
	}
	return out
}

// lastImageSize is the size of the newest image built for the group (in
// dir), 0 if none.
func lastImageSize(dir string) int64 {
	imgs, _ := filepath.Glob(filepath.Join(dir, "*.img"))
	var newest os.FileInfo
	for _, p := range imgs {
		if fi, err := os.Stat(p); err == nil && (newest == nil || fi.ModTime().After(newest.ModTime())) {
			newest = fi
		}
	}
	if newest == nil {
		return 0
	}
	return newest.Size()
}

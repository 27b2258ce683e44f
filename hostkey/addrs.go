package hostkey

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"

	"github.com/loopcast/loopcast/internal/atomicfile"
)

// KnownAddrsFile is where a sender's state directory keeps the address
// each host last took part from.
const KnownAddrsFile = "known_addrs"

// Addrs are the unicast addresses a sender knows its hosts by: those an
// inventory gives (fixed), and the address each host last registered or
// answered from (learned, saved to known_addrs). They are hints, not
// trust: what a host says is checked against its key wherever it comes
// from. The sender uses them to reach a host that hears no multicast.
type Addrs struct {
	path  string
	ips   map[string]string
	fixed map[string]bool
	dirty bool
}

// OpenAddrs reads the known_addrs file at path (none yet: no addresses);
// path "" keeps them in memory only. A malformed line is an error naming
// it.
func OpenAddrs(path string) (*Addrs, error) {
	a := &Addrs{path: path, ips: map[string]string{}, fixed: map[string]bool{}}
	if path == "" {
		return a, nil
	}
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return a, nil
	}
	if err != nil {
		return nil, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if len(f) != 2 || CheckID(f[0]) != nil || net.ParseIP(f[1]) == nil {
			return nil, fmt.Errorf("%s line %d: want \"HOST-ID IP\"", path, n)
		}
		a.ips[f[0]] = f[1]
	}
	return a, sc.Err()
}

// Fix sets a host's address from the inventory: never learned over.
func (a *Addrs) Fix(id, ip string) {
	a.ips[id], a.fixed[id] = ip, true
}

// Learn records the address a host took part from (an IP, or IP:PORT).
func (a *Addrs) Learn(id, addr string) {
	ip := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		ip = h
	}
	if a.fixed[id] || net.ParseIP(ip) == nil || a.ips[id] == ip {
		return
	}
	a.ips[id], a.dirty = ip, true
}

// Map returns the known addresses of ids (all when ids is nil).
func (a *Addrs) Map(ids []string) map[string]string {
	m := map[string]string{}
	for id, ip := range a.ips {
		if ids == nil || slices.Contains(ids, id) {
			m[id] = ip
		}
	}
	return m
}

// Save writes the learned addresses, atomically, when any changed.
func (a *Addrs) Save() error {
	if a.path == "" || !a.dirty {
		return nil
	}
	ids := make([]string, 0, len(a.ips))
	for id := range a.ips {
		if !a.fixed[id] {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	var b bytes.Buffer
	b.WriteString("# the address each host last took part from (loopcast sender); reaches hosts that hear no multicast\n")
	for _, id := range ids {
		fmt.Fprintf(&b, "%s %s\n", id, a.ips[id])
	}
	if err := atomicfile.WriteFile(a.path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("hostkey: save %s: %w", a.path, err)
	}
	a.dirty = false
	return nil
}

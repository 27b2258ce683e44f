package main

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/hostkey"
	"github.com/urfave/cli/v2"
)

// inventory is what --hosts names: host ids in order, the keys and
// addresses an inventory file gives for some of them, and the relays it
// marks.
type inventory struct {
	ids    []string
	keys   map[string]ed25519.PublicKey
	addrs  map[string]string
	relays []string
}

// relayWord marks an inventory line's host as a relay of its subnet.
const relayWord = "relay"

// parseHosts reads --hosts: "a,b,c", or @FILE with one host per line,
// "ID [IP] [ed25519:BASE64] [relay]" (the IP reaches the host by unicast
// when it hears no multicast; the key pins that host's key: a host
// presenting another is refused; relay: the host relays sessions to its
// subnet, as --relays), # comments allowed.
func parseHosts(s string) (inventory, error) {
	inv := inventory{keys: map[string]ed25519.PublicKey{}, addrs: map[string]string{}}
	if s == "" {
		return inv, nil
	}
	sep, file := ",", ""
	if f, ok := strings.CutPrefix(s, "@"); ok {
		b, err := os.ReadFile(f)
		if err != nil {
			return inv, fmt.Errorf("--hosts: %w", err)
		}
		s, sep, file = string(b), "\n", f
	}
	seen := map[string]bool{}
	for n, line := range strings.Split(s, sep) {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		where := fmt.Sprintf("--hosts %q", hostkey.Printable(f[0]))
		if file != "" {
			where = fmt.Sprintf("--hosts %s line %d", file, n+1)
		}
		if len(f) > 4 || len(f) > 1 && file == "" {
			return inv, fmt.Errorf("%s: want \"HOST-ID\" or (in a file) \"HOST-ID [IP] [ed25519:BASE64] [relay]\"", where)
		}
		if err := hostkey.CheckID(f[0]); err != nil {
			return inv, fmt.Errorf("%s: %w", where, err)
		}
		if err := inv.fields(f[0], f[1:]); err != nil {
			return inv, fmt.Errorf("%s: %w", where, err)
		}
		if !seen[f[0]] {
			seen[f[0]] = true
			inv.ids = append(inv.ids, f[0])
		}
	}
	return inv, nil
}

// fields takes an inventory line's fields after the host id: an IPv4
// address, a key, the word relay.
func (inv *inventory) fields(id string, fs []string) error {
	for _, v := range fs {
		if v == relayWord {
			if !slices.Contains(inv.relays, id) {
				inv.relays = append(inv.relays, id)
			}
			continue
		}
		if ip := net.ParseIP(v); ip != nil && ip.To4() != nil {
			inv.addrs[id] = ip.String()
			continue
		}
		pub, err := hostkey.ParsePublic(v)
		if err != nil {
			return fmt.Errorf("%q is neither an IPv4 address, a key nor %q: %w", v, relayWord, err)
		}
		inv.keys[id] = pub
	}
	return nil
}

// relaysFlag is --relays, shared by send and deploy.
func relaysFlag() cli.Flag {
	return &cli.StringFlag{Name: "relays", EnvVars: []string{"LOOPCAST_RELAYS"}, Usage: "hosts `a,b,...` of --hosts that relay the session to their own subnets " +
		"(each runs receiver run --relay; an inventory marks one with the word relay): the router need carry no multicast, and the link to each subnet one copy"}
}

// relays reads --relays and the inventory's relays: hosts --hosts names.
func relays(c *cli.Context, inv inventory) ([]string, error) {
	out := slices.Clone(inv.relays)
	for _, id := range strings.Split(c.String("relays"), ",") {
		if id = strings.TrimSpace(id); id != "" && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	for _, id := range out {
		if !slices.Contains(inv.ids, id) {
			return nil, fmt.Errorf("--relays: %q is not a host --hosts names", hostkey.Printable(id))
		}
	}
	if len(out) > 0 && c.Bool("no-unicast") {
		return nil, errors.New("--relays: a relay takes the session over the unicast path, which --no-unicast turns off")
	}
	return out, nil
}

func encryptFlag() cli.Flag {
	return &cli.BoolFlag{Name: "encrypt", Usage: "seal every chunk (AES-256-GCM) under a key only the accepted hosts receive: a listener on the LAN learns nothing of the tree"}
}

func allowNewHostsFlag() cli.Flag {
	return &cli.BoolFlag{Name: "allow-new-hosts", Usage: "open group: admit hosts whose key is not pinned yet (and pin it); without it only known hosts take part"}
}

// openPins opens the state dir's known_hosts with the inventory's pins on
// top.
func openPins(c *cli.Context, inv inventory) (*hostkey.Pins, error) {
	dir := c.String("state-dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("--state-dir: %w", err)
	}
	pins, err := hostkey.OpenPins(filepath.Join(dir, hostkey.KnownHostsFile))
	if err != nil {
		return nil, err
	}
	for id, k := range inv.keys {
		pins.Pin(id, k)
	}
	return pins, nil
}

// hostKeyPolicy is the sender's rule for a host's key: the pinned key, or
// on first contact (trust on first use) a host the closed group lists, or
// any host when allowNew; everything else is refused.
func hostKeyPolicy(pins *hostkey.Pins, listed []string, allowNew bool) func(string, ed25519.PublicKey) error {
	return func(id string, key ed25519.PublicKey) error {
		err := pins.Check(id, key, allowNew || slices.Contains(listed, id))
		if errors.Is(err, hostkey.ErrUnknown) && len(listed) == 0 {
			return fmt.Errorf("%w (an open group admits new hosts only with --allow-new-hosts)", err)
		}
		return err
	}
}

// openAddrs opens the state dir's known_addrs with the inventory's
// addresses on top.
func openAddrs(c *cli.Context, inv inventory) (*hostkey.Addrs, error) {
	addrs, err := hostkey.OpenAddrs(filepath.Join(c.String("state-dir"), hostkey.KnownAddrsFile))
	if err != nil {
		return nil, err
	}
	for id, ip := range inv.addrs {
		addrs.Fix(id, ip)
	}
	return addrs, nil
}

// learnAddrs records the address each host of a deploy took part from.
func learnAddrs(addrs *hostkey.Addrs, res *deploy.Result) {
	for _, h := range res.Hosts {
		if h.Addr != "" {
			addrs.Learn(h.ID, h.Addr)
		}
	}
}

// closers closes the pack (and the unicast listener) and saves the pins
// and addresses learned.
type closers struct {
	c     io.Closer
	pins  *hostkey.Pins
	addrs *hostkey.Addrs
	ln    io.Closer
}

func (c *closers) Close() error {
	err := errors.Join(c.pins.Save(), c.addrs.Save(), c.c.Close())
	if c.ln != nil {
		c.ln.Close()
	}
	return err
}

func noUnicastFlag() cli.Flag {
	return &cli.BoolFlag{Name: "no-unicast", Usage: "offer no TCP path to hosts that hear no multicast (by default a listed host that does not register by multicast is announced to at its known address and fetches the release over TCP)"}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/hostkey"
)

// An inventory file gives a host's IP and key in either order; a field
// that is neither is an error naming the line; the comma form takes ids
// only.
func TestParseHostsInventory(t *testing.T) {
	pub := "ed25519:" + strings.Repeat("A", 43) + "="
	if _, err := hostkey.ParsePublic(pub); err != nil {
		t.Skipf("test key does not parse: %v", err)
	}
	dir := t.TempDir()
	good := filepath.Join(dir, "hosts")
	os.WriteFile(good, []byte("# fleet\nweb1 10.0.0.1\nweb2 "+pub+" 10.0.0.2\nweb3\nweb4 "+pub+"\n"), 0o644)
	inv, err := parseHosts("@" + good)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(inv.ids, ",") != "web1,web2,web3,web4" {
		t.Errorf("ids %v", inv.ids)
	}
	if inv.addrs["web1"] != "10.0.0.1" || inv.addrs["web2"] != "10.0.0.2" || len(inv.addrs) != 2 {
		t.Errorf("addrs %v", inv.addrs)
	}
	if len(inv.keys) != 2 || inv.keys["web2"] == nil || inv.keys["web4"] == nil {
		t.Errorf("keys for %d hosts", len(inv.keys))
	}
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("web1 10.0.0.1\nweb2 nonsense\n"), 0o644)
	if _, err := parseHosts("@" + bad); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("bad inventory: %v, want an error naming line 2", err)
	}
	if _, err := parseHosts("web1 10.0.0.1"); err == nil {
		t.Error("the comma form took an address")
	}
	relays := filepath.Join(dir, "relays")
	os.WriteFile(relays, []byte("rb 10.0.2.10 "+pub+" relay\nb1 10.0.2.11\n"), 0o644)
	if inv, err := parseHosts("@" + relays); err != nil || strings.Join(inv.relays, ",") != "rb" || inv.addrs["rb"] != "10.0.2.10" || inv.keys["rb"] == nil {
		t.Errorf("an inventory marking a relay: %+v, %v", inv, err)
	}
}

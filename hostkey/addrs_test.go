package hostkey

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Learned addresses survive a save and a reopen; inventory addresses are
// never learned over nor saved; a malformed file is refused by line.
func TestAddrs(t *testing.T) {
	path := filepath.Join(t.TempDir(), KnownAddrsFile)
	a, err := OpenAddrs(path)
	if err != nil {
		t.Fatal(err)
	}
	a.Fix("web1", "10.0.0.1")
	a.Learn("web1", "10.9.9.9:5000") // the inventory wins
	a.Learn("web2", "10.0.0.2:41234")
	a.Learn("web3", "not-an-ip")
	if err := a.Save(); err != nil {
		t.Fatal(err)
	}
	b, err := OpenAddrs(path)
	if err != nil {
		t.Fatal(err)
	}
	got := b.Map(nil)
	if len(got) != 1 || got["web2"] != "10.0.0.2" {
		t.Errorf("reopened: %v, want only web2 at 10.0.0.2", got)
	}
	if m := a.Map([]string{"web1"}); len(m) != 1 || m["web1"] != "10.0.0.1" {
		t.Errorf("Map(web1) = %v", m)
	}
	os.WriteFile(path, []byte("web1 10.0.0.1\nweb2\n"), 0o644)
	if _, err := OpenAddrs(path); err == nil || !strings.Contains(err.Error(), "line 2") {
		t.Errorf("malformed file: %v, want an error naming line 2", err)
	}
}

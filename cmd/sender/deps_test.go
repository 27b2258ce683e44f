package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The sender links nothing of the receiver's side: a change in the
// receiver's store cannot reach it.
func TestSenderLinksNoReceiverPackage(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, banned := range []string{"/agent", "/release", "/loopmount"} {
			if strings.HasPrefix(dep, "github.com/loopcast/loopcast") && strings.HasSuffix(dep, banned) {
				t.Errorf("cmd/sender links %s", dep)
			}
		}
	}
}

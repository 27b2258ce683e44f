package packaging

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/testenv"
)

// TestDebianPackages builds both packages with scripts/make-deb.sh,
// installs them with dpkg into a scratch root, and runs the installed
// binaries.
func TestDebianPackages(t *testing.T) {
	testenv.Long(t)
	testenv.RequireRoot(t) // dpkg installs as root, even into a scratch root
	testenv.RequireTool(t, "dpkg-deb")
	testenv.RequireTool(t, "dpkg")
	testenv.RequireTool(t, "go")
	out := t.TempDir()
	cmd := exec.Command("../scripts/make-deb.sh", out)
	b, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make-deb.sh: %v\n%s", err, b)
	}
	debs := strings.Fields(string(b))
	if len(debs) != 2 {
		t.Fatalf("make-deb.sh made %q, want two packages", debs)
	}
	version := regexp.MustCompile(`^0\.1\.0\+git\d{14}\.[0-9a-f]{12}(\+dirty)?$`)
	field := func(deb, f string) string {
		b, err := exec.Command("dpkg-deb", "-f", deb, f).Output()
		if err != nil {
			t.Fatalf("dpkg-deb -f %s %s: %v", deb, f, err)
		}
		return strings.TrimSpace(string(b))
	}
	for _, deb := range debs {
		if v := field(deb, "Version"); !version.MatchString(v) {
			t.Errorf("%s: version %q", deb, v)
		}
	}

	// a dpkg database in a scratch root, and a real install into it
	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644)
	args := append([]string{"--root=" + root, "--log=/dev/null", "--force-script-chrootless", "--force-depends", "--no-triggers", "-i"}, debs...)
	if b, err := exec.Command("dpkg", args...).CombinedOutput(); err != nil {
		t.Fatalf("dpkg -i into %s: %v\n%s", root, err, b)
	}
	status, _ := os.ReadFile(filepath.Join(root, "var/lib/dpkg/status"))
	for _, p := range []string{"loopcast-receiver", "loopcast-sender"} {
		if !regexp.MustCompile(`(?m)^Package: ` + p + `\nStatus: install ok installed`).Match(status) {
			t.Errorf("%s is not installed in the scratch root:\n%s", p, status)
		}
	}
	for _, bin := range []string{"receiver", "sender"} {
		b, err := exec.Command(filepath.Join(root, "usr/bin", bin), "--version").CombinedOutput()
		if err != nil || !strings.Contains(string(b), bin+" version 0.1.0+git") {
			t.Errorf("installed %s --version: %v %s", bin, err, b)
		}
		if fi, err := os.Stat(filepath.Join(root, "usr/share/man/man8", bin+".8.gz")); err != nil || fi.Size() < 200 {
			t.Errorf("man page of %s: %v", bin, err)
		}
	}
	unit := read(t, filepath.Join(root, "lib/systemd/system/loopcast-receiver.service"))
	if !strings.Contains(unit, "ExecStart=/usr/bin/receiver run") {
		t.Errorf("the packaged unit does not run /usr/bin/receiver:\n%s", unit)
	}
	if env := read(t, filepath.Join(root, "etc/loopcast/receiver.env")); env != read(t, "receiver.env") {
		t.Error("the packaged receiver.env is not the sample")
	}
	if c := read(t, filepath.Join(root, "var/lib/dpkg/info/loopcast-receiver.conffiles")); strings.TrimSpace(c) != "/etc/loopcast/receiver.env" {
		t.Errorf("conffiles: %q", c)
	}
	// the installed agent's own checks run (and find this root's store missing)
	b, err = exec.Command(filepath.Join(root, "usr/bin/receiver"), "doctor", "--root", filepath.Join(root, "srv/loopcast"),
		"--env-file", filepath.Join(root, "etc/loopcast/receiver.env")).CombinedOutput()
	if err == nil || !strings.Contains(string(b), "FAIL") || !strings.Contains(string(b), "store") {
		t.Errorf("installed receiver doctor on an empty root: %v\n%s", err, b)
	}
}

package packaging

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/testenv"
)

// vagrantEnv runs Vagrant on the repo's Vagrantfile without writing to the
// repo (.vagrant/) or the home directory (~/.vagrant.d), and without calling
// HashiCorp's version check over the network.
func vagrantEnv(t *testing.T, dir string) []string {
	t.Helper()
	return append(os.Environ(),
		"VAGRANT_CWD="+dir,
		"VAGRANT_DOTFILE_PATH="+filepath.Join(t.TempDir(), "dot"),
		"VAGRANT_HOME="+t.TempDir(),
		"VAGRANT_CHECKPOINT_DISABLE=1",
		"VAGRANT_NO_COLOR=1",
	)
}

// TestVagrantValidate runs `vagrant validate` on the repo's Vagrantfile:
// Ruby syntax, every VM's settings, and that the provisioning scripts and
// synced folders it names exist. No VM is booted; --ignore-provider because
// CI has neither VirtualBox nor libvirt.
func TestVagrantValidate(t *testing.T) {
	vagrant := testenv.RequireTool(t, "vagrant")
	root := abs(t, "..")
	cmd := exec.Command(vagrant, "validate", "--ignore-provider")
	cmd.Dir = root
	cmd.Env = vagrantEnv(t, root)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "validated successfully") {
		t.Fatalf("vagrant validate: %v\n%s", err, out)
	}
	for _, vm := range []string{"sender", "web1", "web2", "web3"} {
		if !strings.Contains(string(out), "==> "+vm+":") {
			t.Errorf("vagrant validate did not check a VM named %s:\n%s", vm, out)
		}
	}
}

// TestVagrantValidateCatches makes sure the check above checks something:
// the Vagrantfile alone, without the scripts it provisions with, must fail.
func TestVagrantValidateCatches(t *testing.T) {
	vagrant := testenv.RequireTool(t, "vagrant")
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Vagrantfile"), []byte(read(t, "../Vagrantfile")), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(vagrant, "validate", "--ignore-provider")
	cmd.Dir = dir
	cmd.Env = vagrantEnv(t, dir)
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "scripts/vagrant/common.sh") {
		t.Fatalf("vagrant validate without scripts/vagrant: want a failure naming common.sh, got %v\n%s", err, out)
	}
}

// TestVagrantScripts checks every provisioning script with `bash -n`, and
// that what web.sh takes from packaging/ is there.
func TestVagrantScripts(t *testing.T) {
	bash := testenv.RequireTool(t, "bash")
	scripts, _ := filepath.Glob("../scripts/vagrant/*.sh")
	if len(scripts) == 0 {
		t.Fatal("no scripts in scripts/vagrant")
	}
	vf := read(t, "../Vagrantfile")
	for _, s := range scripts {
		if out, err := exec.Command(bash, "-n", s).CombinedOutput(); err != nil {
			t.Errorf("bash -n %s: %v\n%s", s, err, out)
		}
		if name := filepath.Base(s); name != "lib.sh" && !strings.Contains(vf, "scripts/vagrant/"+name) {
			t.Errorf("the Vagrantfile does not run scripts/vagrant/%s", name)
		}
	}

	web := read(t, "../scripts/vagrant/web.sh")
	for _, f := range []string{"loopcast-receiver.service", "nginx-loopcast.conf", "php-fpm-loopcast.conf", "receiver.env"} {
		if !strings.Contains(web, `$pkg/`+f) {
			t.Errorf("web.sh does not install packaging/%s", f)
		}
	}
	// web.sh fills receiver.env in with sed: a setting the sample lacks
	// would be silently left out.
	sample := read(t, "receiver.env")
	sets := regexp.MustCompile(`s\|\^(LOOPCAST_[A-Z_]+)=`).FindAllStringSubmatch(web, -1)
	if len(sets) == 0 {
		t.Error("web.sh sets nothing in receiver.env")
	}
	for _, m := range sets {
		if !regexp.MustCompile(`(?m)^` + m[1] + `=`).MatchString(sample) {
			t.Errorf("web.sh sets %s, which packaging/receiver.env does not have", m[1])
		}
	}
}

// pemDER reads a PEM file holding one block of type typ.
func pemDER(t *testing.T, name, typ string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	blk, rest := pem.Decode(b)
	if blk == nil || blk.Type != typ || len(strings.TrimSpace(string(rest))) != 0 {
		t.Fatalf("%s: want one PEM block %q", name, typ)
	}
	return blk.Bytes
}

// TestVagrantReleaseKey runs the Vagrantfile's key maker (with Ruby, as
// Vagrant would) and reads the keys as image/keys.go does (PEM, PKCS #8
// ed25519 private key, PKIX public key): the VMs sign and verify with them.
func TestVagrantReleaseKey(t *testing.T) {
	ruby := testenv.RequireTool(t, "ruby") // a dependency of Debian's vagrant
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "Vagrantfile"), []byte(read(t, "../Vagrantfile")), 0o644); err != nil {
		t.Fatal(err)
	}
	// Vagrant.configure is stubbed: only the helper at the top level runs.
	// Twice: the second run must keep the key.
	stub := `module Vagrant; def self.configure(*); end; end; load "./Vagrantfile"; ensure_release_key; ensure_release_key`
	cmd := exec.Command(ruby, "-e", stub)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ruby: %v\n%s", err, out)
	}
	keyPath := filepath.Join(dir, ".vagrant/loopcast/keys/release.key")
	k, err := x509.ParsePKCS8PrivateKey(pemDER(t, keyPath, "PRIVATE KEY"))
	if err != nil {
		t.Fatal(err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		t.Fatalf("release.key is a %T, not ed25519", k)
	}
	if fi, err := os.Stat(keyPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("release.key: mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	for _, p := range []string{"keys/release.pub", "trust/release.pub"} {
		pub, err := x509.ParsePKIXPublicKey(pemDER(t, filepath.Join(dir, ".vagrant/loopcast", p), "PUBLIC KEY"))
		if err != nil {
			t.Fatal(err)
		}
		if ed, ok := pub.(ed25519.PublicKey); !ok || !ed.Equal(priv.Public()) {
			t.Errorf("%s is not the release key's public half", p)
		}
	}
}

// TestProvisionInDebianRoot runs the web VM's provisioning (common.sh,
// web.sh) for real in a Debian 12 root made by debootstrap, booted with
// systemd in its own namespaces (scripts/vagrant-debroot.sh), and checks
// what the VM would show: the agent, php-fpm and nginx active under
// systemd, the agent in the group on the private interface, nginx and the
// health check answering, and provisioning again changing nothing.
func TestProvisionInDebianRoot(t *testing.T) {
	testenv.Long(t)
	testenv.RequireRoot(t)
	for _, tool := range []string{"debootstrap", "unshare", "nsenter", "ip"} {
		testenv.RequireTool(t, tool)
	}
	root := abs(t, "..")
	cmd := exec.Command(filepath.Join(root, "scripts/vagrant-debroot.sh"), root)
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("vagrant-debroot.sh: %v", err)
	}
	for _, want := range []string{"loopcast-receiver: active", "php8.2-fpm: active", "nginx: active",
		"agent: running as web1", "503 Service Unavailable: unhealthy: serving nothing", "again: nothing changed", "debroot: ok"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("vagrant-debroot.sh output lacks %q", want)
		}
	}
}

package packaging

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/loopcast/loopcast/internal/testenv"
)

func read(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func abs(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// sbinTool finds a daemon's binary on PATH or in /usr/sbin (not on every
// user's PATH); missing, it skips outside CI and fails under CI.
func sbinTool(t *testing.T, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err != nil {
		testenv.Missing(t, "needs %s (run scripts/install-deps.sh)", name)
	}
	return p
}

// TestNginxConfig runs `nginx -t` on a minimal main config that includes
// the sample server block, as sites-enabled would.
func TestNginxConfig(t *testing.T) {
	nginx := sbinTool(t, "nginx")
	dir := t.TempDir()
	// A relative include (fastcgi_params) is looked up beside the main
	// config; take Debian's from /etc/nginx.
	params, err := os.ReadFile("/etc/nginx/fastcgi_params")
	if err != nil {
		testenv.Missing(t, "needs /etc/nginx/fastcgi_params from the nginx package: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "fastcgi_params"), params, 0o644); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "nginx.conf")
	main := "pid " + filepath.Join(dir, "nginx.pid") + ";\n" +
		"error_log " + filepath.Join(dir, "error.log") + ";\n" +
		"events {}\nhttp {\n    access_log off;\n    include " + abs(t, "nginx-loopcast.conf") + ";\n}\n"
	if err := os.WriteFile(conf, []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(nginx, "-t", "-c", conf, "-p", dir+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "test is successful") {
		t.Errorf("nginx -t did not report success:\n%s", out)
	}
}

// TestNginxRealpath checks what the design relies on, which nginx -t
// cannot: PHP gets the real path of the release, set after the include
// of fastcgi_params so that nothing there overrides it.
func TestNginxRealpath(t *testing.T) {
	conf := read(t, "nginx-loopcast.conf")
	inc := strings.Index(conf, "include fastcgi_params;")
	for _, want := range []string{
		"root /srv/loopcast/current/public;",
		"fastcgi_param SCRIPT_FILENAME $realpath_root$fastcgi_script_name;",
		"fastcgi_param DOCUMENT_ROOT $realpath_root;",
	} {
		i := strings.Index(conf, want)
		if i < 0 {
			t.Errorf("nginx-loopcast.conf lacks %q", want)
		} else if strings.HasPrefix(want, "fastcgi_param") && (inc < 0 || i < inc) {
			t.Errorf("%q must come after include fastcgi_params", want)
		}
	}
	if strings.Contains(conf, "$document_root$fastcgi_script_name") {
		t.Error("nginx-loopcast.conf passes $document_root: requests could straddle a switch")
	}
}

// TestPHPFPMPool runs `php-fpm -t` on a global section including the
// sample pool.
func TestPHPFPMPool(t *testing.T) {
	fpms, _ := filepath.Glob("/usr/sbin/php-fpm*")
	if len(fpms) == 0 {
		testenv.Missing(t, "needs php-fpm (run scripts/install-deps.sh)")
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "php-fpm.conf")
	global := "[global]\npid = " + filepath.Join(dir, "php-fpm.pid") + "\n" +
		"error_log = " + filepath.Join(dir, "php-fpm.log") + "\n" +
		"include = " + abs(t, "php-fpm-loopcast.conf") + "\n"
	if err := os.WriteFile(conf, []byte(global), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(fpms[0], "-t", "-y", conf).CombinedOutput(); err != nil {
		t.Fatalf("%s -t: %v\n%s", fpms[0], err, out)
	}
	if pool, nginx := read(t, "php-fpm-loopcast.conf"), read(t, "nginx-loopcast.conf"); !strings.Contains(pool,
		"listen = /run/php/php8.2-fpm-loopcast.sock") || !strings.Contains(nginx, "fastcgi_pass unix:/run/php/php8.2-fpm-loopcast.sock;") {
		t.Error("the nginx sample and the php-fpm pool do not agree on the socket")
	}
}

// TestUnitVerify runs `systemd-analyze verify` on the units, which reports
// bad values as warnings and still exits 0: any line about a unit fails
// the test. ExecStart's binary must exist for verify, so a copy of each
// unit runs `true` instead (the template as an instance); the agent's own
// text is checked below.
func TestUnitVerify(t *testing.T) {
	analyze := testenv.RequireTool(t, "systemd-analyze")
	truePath, err := exec.LookPath("true")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var copies []string
	for _, u := range []struct{ file, as, exec string }{
		{"loopcast-receiver.service", "loopcast-receiver.service", "ExecStart=/usr/local/bin/receiver run"},
		{"app-worker@.service", "app-worker@emails.service", "ExecStart=/usr/local/bin/receiver exec"},
	} {
		unit := read(t, u.file)
		if !strings.Contains(unit, u.exec) {
			t.Fatalf("%s lacks %q", u.file, u.exec)
		}
		p := filepath.Join(dir, u.as)
		if err := os.WriteFile(p, []byte(strings.Replace(unit, u.exec, "ExecStart="+truePath+" run", 1)), 0o644); err != nil {
			t.Fatal(err)
		}
		copies = append(copies, p)
	}
	out, err := exec.Command(analyze, append([]string{"verify"}, copies...)...).CombinedOutput()
	var about []string
	for line := range strings.Lines(string(out)) {
		if strings.Contains(line, "loopcast-receiver") || strings.Contains(line, "app-worker") {
			about = append(about, line)
		}
	}
	if err != nil || len(about) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestUnitContents checks what the agent's startup depends on.
func TestUnitContents(t *testing.T) {
	unit := read(t, "loopcast-receiver.service")
	for _, want := range []string{
		"Type=notify", "Before=nginx.service php8.2-fpm.service", "WantedBy=multi-user.target",
		"Restart=on-failure", "EnvironmentFile=-/etc/loopcast/receiver.env",
	} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(want) + `$`).MatchString(unit) {
			t.Errorf("unit lacks the line %q", want)
		}
	}
	// Each of these gives the service its own mount namespace (or blocks
	// loop devices), and the agent's mounts would be invisible to nginx.
	for _, opt := range []string{"PrivateTmp", "ProtectSystem", "ProtectHome", "ReadWritePaths", "ReadOnlyPaths",
		"PrivateDevices", "ProtectKernelTunables", "ProtectKernelModules", "ProtectControlGroups",
		"ProtectHostname", "ProtectClock", "DevicePolicy", "MountFlags", "PrivateMounts", "TemporaryFileSystem"} {
		if regexp.MustCompile(`(?m)^` + opt + `=`).MatchString(unit) {
			t.Errorf("unit sets %s: it would hide the agent's loop mounts from the web server", opt)
		}
	}
}

// TestReceiverEnv checks the sample settings: systemd EnvironmentFile
// syntax, LOOPCAST_* names, each documented with the flag it sets.
func TestReceiverEnv(t *testing.T) {
	f, err := os.Open("receiver.env")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	assign := regexp.MustCompile(`^LOOPCAST_([A-Z_]+)=(\S*)$`)
	comment := ""
	n := 0
	for sc := bufio.NewScanner(f); sc.Scan(); {
		line := sc.Text()
		switch {
		case line == "":
			comment = ""
		case strings.HasPrefix(line, "#"):
			comment += line + "\n"
		default:
			m := assign.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("receiver.env: %q is not LOOPCAST_NAME=value", line)
				continue
			}
			flag := "--" + strings.ReplaceAll(strings.ToLower(m[1]), "_", "-")
			if !strings.Contains(comment, flag+":") {
				t.Errorf("receiver.env: %s is not documented as %s", m[0], flag)
			}
			comment = ""
			n++
		}
	}
	if n == 0 {
		t.Error("receiver.env sets nothing")
	}
}

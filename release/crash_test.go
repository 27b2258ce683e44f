package release

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopcast/loopcast/internal/mounttest"

	"github.com/loopcast/loopcast/image"
)

// The crash tests run a deploy (stage B, activate B), or a rollback, in a
// child process (this test binary again, running TestCrashChild) that
// stops at a named crash point and is killed there with SIGKILL, as a
// crashing agent would be. The store is then opened again and reconciled,
// once as after an agent restart and once as after a reboot (every mount
// gone), and must serve a complete, mounted, verified release with nothing
// half-written left; a deploy of B then runs to its end.

const (
	// crashEnv carries the child's job (JSON); unset, TestCrashChild skips.
	crashEnv = "LOOPCAST_RELEASE_CRASH_JOB"
	// crashReached starts the line the child prints at its crash point.
	crashReached = "crash point reached: "
	// crashDeadline bounds the wait for the child to reach its crash point:
	// a deadline for a condition, not a timing assertion.
	crashDeadline = 2 * time.Minute
)

// crashJob is what the child does: open the store at Root, then stage
// Image with Manifest and activate it, or (Rollback) roll back; it stops
// at Step.
type crashJob struct {
	Root, Image, Manifest, Step string
	Rollback                    bool
	Keep                        int
	Reserve                     int64
	TrustedKey                  []byte
}

// TestCrashChild is the child of TestCrash; it does nothing otherwise.
func TestCrashChild(t *testing.T) {
	spec := os.Getenv(crashEnv)
	if spec == "" {
		t.Skip("runs only as the child process of TestCrash")
	}
	var job crashJob
	if err := json.Unmarshal([]byte(spec), &job); err != nil {
		t.Fatal(err)
	}
	crashHook = func(step string) {
		if step != job.Step {
			return
		}
		fmt.Printf("\n%s%s\n", crashReached, step)
		io.Copy(io.Discard, os.Stdin) // wait for SIGKILL; EOF if the parent died
		os.Exit(3)
	}
	s, err := Open(job.Root, Options{
		Keep: job.Keep, KeepFor: -1, Reserve: job.Reserve, TrustedKeys: []ed25519.PublicKey{job.TrustedKey},
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	if job.Rollback {
		to, err := s.Rollback(image.ID{})
		t.Fatalf("rollback to %s (%v) finished without reaching crash point %q", to, err, job.Step)
	}
	id, err := s.Stage(context.Background(), image.ID{}, job.Image, job.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Activate(id); err != nil {
		t.Fatal(err)
	}
	t.Fatalf("deploy of %s finished without reaching crash point %q", id, job.Step)
}

func TestCrash(t *testing.T) {
	cases := []struct {
		step      string
		rollback  bool   // the child rolls back from A to X instead of deploying B
		tmpfsRoot bool   // root on its own filesystem, so staging copies
		serves    string // what current serves after the crash
	}{
		{stepManifestWritten, false, false, "A"},
		{stepCopying, false, true, "A"},
		{stepAdopted, false, false, "A"},
		{stepMounted, false, false, "A"},
		{"stage" + stepSavingState, false, false, "A"},
		{stepSwitchChecked, false, false, "A"},
		{stepFlipped, false, false, "B"},
		{stepRetireUnmounted, false, false, "B"},
		{"activate" + stepSavingState, false, false, "B"},
		{stepSwitchChecked, true, false, "A"},
		{stepFlipped, true, false, "X"},
		{"rollback" + stepSavingState, true, false, "X"},
	}
	for _, tc := range cases {
		name := strings.ReplaceAll(tc.step, " ", "_")
		if tc.rollback {
			name = "rollback/" + name
		}
		t.Run(name, func(t *testing.T) {
			f := newFixture(t)
			opts := Options{Keep: 1, Reserve: 1 << 20} // Keep 1: activating B retires X
			if tc.tmpfsRoot {
				f.tmpfsRoot(64 << 20)
			}
			s := f.open(opts)
			x := f.deploy(s, "X")
			a := f.deploy(s, "A")
			img, man := f.build("B")
			f.crashAt(crashJob{Root: s.Root(), Image: img, Manifest: man, Step: tc.step, Rollback: tc.rollback,
				Keep: opts.Keep, Reserve: opts.Reserve, TrustedKey: testPub})
			ids := crashIDs{x: x, a: a, b: releaseOf(t, man)}
			if tc.rollback {
				checkLeftRollback(t, s, tc.step, ids)
			} else {
				checkLeft(t, s, tc.step, ids)
			}

			s = f.open(opts) // the agent restarts
			if err := s.Reconcile(); err != nil {
				t.Fatalf("reconcile after the crash: %v", err)
			}
			checkRecovered(t, f, s, tc.serves)

			reboot(t, f, s)
			s = f.open(opts)
			if err := s.Reconcile(); err != nil {
				t.Fatalf("reconcile after a reboot: %v", err)
			}
			checkRecovered(t, f, s, tc.serves)

			finishDeploy(t, f, s, img, man)
			checkRecovered(t, f, s, "B")
		})
	}
}

// crashAt runs the child until it reaches job.Step and kills it there.
func (f *fixture) crashAt(job crashJob) {
	t := f.t
	t.Helper()
	spec, err := json.Marshal(job)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), crashEnv+"="+string(spec))
	stderr := new(strings.Builder)
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe() // held open: the child waits on it
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pid := cmd.Process.Pid
	deadline := time.AfterFunc(crashDeadline, func() { syscall.Kill(pid, syscall.SIGKILL) })
	defer deadline.Stop()
	var out []string
	reached := false
	for sc := bufio.NewScanner(stdout); sc.Scan(); {
		out = append(out, sc.Text())
		if sc.Text() == crashReached+job.Step {
			reached = true
			break
		}
	}
	syscall.Kill(pid, syscall.SIGKILL) // our child, by its pid
	go io.Copy(io.Discard, stdout)
	err = cmd.Wait()
	if !reached {
		t.Fatalf("child never reached %q (%v)\nstdout:\n%s\nstderr:\n%s", job.Step, err, strings.Join(out, "\n"), stderr)
	}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed by SIGKILL\nstderr:\n%s", err, stderr)
	}
}

type crashIDs struct{ x, a, b image.ID }

func releaseOf(t *testing.T, man string) image.ID {
	t.Helper()
	m, err := image.ReadManifestFile(man)
	if err != nil {
		t.Fatal(err)
	}
	return m.ID()
}

// checkLeft checks that the kill left what the crash point says: the
// proof that the crash happened where the case claims.
func checkLeft(t *testing.T, s *Store, step string, id crashIDs) {
	t.Helper()
	st := state(t, s)
	temps, _ := filepath.Glob(filepath.Join(s.Root(), imagesDir, ".*"+tmpMarker+"*"))
	var ok bool
	switch step {
	case stepManifestWritten:
		ok = exists(s.manifestPath(id.b)) && !exists(s.imagePath(id.b))
	case stepCopying:
		ok = len(temps) == 1 && !exists(s.imagePath(id.b))
	case stepAdopted:
		ok = exists(s.imagePath(id.b)) && !s.mounted(id.b) && st.entry(id.b) == nil
	case stepMounted, "stage" + stepSavingState:
		ok = s.mounted(id.b) && st.entry(id.b) == nil
	case stepSwitchChecked:
		ok = st.live(id.b) != nil && s.linkedID(st) == id.a
	case stepFlipped:
		ok = s.linkedID(st) == id.b && st.Current == id.a
	case stepRetireUnmounted:
		ok = !s.mounted(id.x) && exists(s.imagePath(id.x)) && st.live(id.x) != nil
	case "activate" + stepSavingState:
		ok = !exists(s.imagePath(id.x)) && st.live(id.x) != nil && st.Current == id.a && s.linkedID(st) == id.b
	default:
		t.Fatalf("no expectation for step %q", step)
	}
	if !ok {
		t.Errorf("after the kill at %q the store does not look interrupted there: link %q, state %+v, temps %v",
			step, s.linkedID(st), st, temps)
	}
}

// checkLeftRollback is checkLeft for a rollback from A to X.
func checkLeftRollback(t *testing.T, s *Store, step string, id crashIDs) {
	t.Helper()
	st := state(t, s)
	want := id.x // the link after the flip; the state is behind it
	if step == stepSwitchChecked {
		want = id.a
	}
	if s.linkedID(st) != want || st.Current != id.a {
		t.Errorf("after the kill at %q: link %q, state current %q; want %q, %q", step, s.linkedID(st), st.Current, want, id.a)
	}
}

// checkRecovered checks that current serves want from a complete,
// mounted, verified release, that the state agrees, and that the store
// holds nothing half-written: every file and mount belongs to a live
// release.
func checkRecovered(t *testing.T, f *fixture, s *Store, want string) {
	t.Helper()
	if got := served(t, s); got != want {
		t.Errorf("serving %q, want %q", got, want)
	}
	st := state(t, s)
	id := s.linkedID(st)
	if id.IsZero() || st.Current != id {
		t.Errorf("current -> %q, state says %q", id, st.Current)
	}
	m, err := image.ReadManifestFile(s.manifestPath(id))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Verify([]ed25519.PublicKey{testPub}); err != nil || m.ID() != id {
		t.Errorf("current's manifest: %v, id %s; want signed, %s", err, m.ID(), id)
	}
	if err := verifyImage(context.Background(), s.imagePath(id), m); err != nil {
		t.Errorf("current's image: %v", err)
	}
	var live, want2 []string
	for _, e := range st.History {
		if !e.Retired {
			live = append(live, e.ID.String())
			want2 = append(want2, e.ID.String()+".img", e.ID.String()+".manifest")
			mustMounted(t, s, e.ID, true)
		}
	}
	checkDir(t, filepath.Join(s.Root(), imagesDir), want2)
	checkDir(t, filepath.Join(s.Root(), releasesDir), live)
	checkDir(t, s.Root(), []string{imagesDir, releasesDir, currentName, stateName, lockName})
	var mounts []string
	for _, d := range mounttest.MountsUnder(t, s.Root()) {
		mounts = append(mounts, filepath.Base(d))
	}
	if slices.Sort(mounts); !slices.Equal(mounts, sorted(live)) {
		t.Errorf("mounts under the root %v, want the live releases %v", mounts, live)
	}
	mounttest.WaitLoops(t, f.dir, len(live))
}

// checkDir checks that dir holds exactly the names in want.
func checkDir(t *testing.T, dir string, want []string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !slices.Equal(got, sorted(want)) {
		t.Errorf("%s holds %v, want %v", dir, got, sorted(want))
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// finishDeploy completes the interrupted deploy of B: staged again if the
// crash lost it, then activated.
func finishDeploy(t *testing.T, f *fixture, s *Store, img, man string) {
	t.Helper()
	m, err := image.ReadManifestFile(man)
	if err != nil {
		t.Fatal(err)
	}
	id := m.ID()
	if state(t, s).live(id) == nil {
		if _, err := s.Stage(context.Background(), image.ID{}, img, man); err != nil {
			t.Fatalf("staging B again: %v", err)
		}
	}
	if err := s.Activate(id); err != nil {
		t.Fatalf("activating B after the crash: %v", err)
	}
}

package deploy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/loopcast/loopcast/image"
	"github.com/loopcast/loopcast/internal/atomicfile"
)

// Paths are the files a sender keeps for one group in its state directory.
type Paths struct {
	Lock      string // deploy-G.lock: one deploy or rollback of the group at a time
	Images    string // images/G/: the images built for the group
	LastBuild string // last-build-G: the image the hosts hold, the next build's base
	Pointer   string // pointer-G.json: the last fleet pointer issued
	Certs     string // certs-G.json: the host certificates issued with it
	Audit     string // audit.log: every deploy and rollback, of every group
}

// StatePaths names the files of group in the state directory dir; G is
// the group's ADDR_PORT.
func StatePaths(dir string, group net.Addr) Paths {
	g := strings.ReplaceAll(group.String(), ":", "_")
	return Paths{
		Lock:      filepath.Join(dir, "deploy-"+g+".lock"),
		Images:    filepath.Join(dir, "images", g),
		LastBuild: filepath.Join(dir, "last-build-"+g),
		Pointer:   filepath.Join(dir, "pointer-"+g+".json"),
		Certs:     filepath.Join(dir, "certs-"+g+".json"),
		Audit:     filepath.Join(dir, "audit.log"),
	}
}

// Deployer runs the deploys and rollbacks of one group from a sender's
// state directory, holding the group's lock from Open to Close.
type Deployer struct {
	Paths
	Group net.Addr
	lock  *os.File
}

// Open takes the lock for deploys to group in the state directory dir
// (made if missing). The lock is held by this process: the kernel drops
// it when the process exits, so a crashed deploy leaves no stale lock.
func Open(dir string, group net.Addr) (*Deployer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	d := &Deployer{Paths: StatePaths(dir, group), Group: group}
	f, err := lockFile(d.Lock, group)
	if err != nil {
		return nil, err
	}
	d.lock = f
	return d, nil
}

// lockFile locks path exclusively and writes who holds it there; the
// error of a lock held elsewhere says who does.
func lockFile(path string, group net.Addr) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("deploy: %w", err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(f)
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, fmt.Errorf("deploy: another deploy to %s is running (%s; lock %s)", group, strings.TrimSpace(string(holder)), path)
		}
		return nil, fmt.Errorf("deploy: lock %s: %w", path, err)
	}
	f.Truncate(0)
	fmt.Fprintf(f, "pid %d since %s\n", os.Getpid(), time.Now().UTC().Format(time.RFC3339))
	return f, nil
}

// Close releases the lock.
func (d *Deployer) Close() error { return d.lock.Close() }

// Deploy distributes, stages and switches one release to the group over
// conns: it checks that the hosts take the sender's commands, sends the
// image (package multicast), asks the hosts that did not say so whether
// they staged it, switches them if enough did (o.RequirePct; by
// o.Rollout), and publishes the fleet pointer and the host certificates.
// Then it records the image as the group's next base if any host
// switched, and appends the audit line. A result comes back whenever the
// image was sent, with the error that cut the deploy short if one did.
func (d *Deployer) Deploy(ctx context.Context, conns Conns, o Options) (*Result, error) {
	o.Group = d.Group
	res, err := d.run(ctx, conns, &o)
	d.record(&o, res, err)
	return res, err
}

// Fail records a deploy that failed before Deploy could run (its conns
// did not open) in the audit log.
func (d *Deployer) Fail(o Options, err error) {
	o.Group = d.Group
	d.record(&o, nil, err)
}

// record ends a deploy: the hosts that switched hold the image now, so the
// next build is laid out on it; and its audit line.
func (d *Deployer) record(o *Options, res *Result, err error) {
	if res != nil && res.Outcome() != OutcomeNone && o.ImagePath != "" {
		if werr := atomicfile.WriteFile(d.LastBuild, []byte(o.ImagePath+"\n"), 0o644); werr != nil {
			o.log().Warn("deploy: the next build's base was not recorded", "err", werr)
		}
	}
	if aerr := AppendAudit(d.Audit, auditEntry(o, res, err)); aerr != nil {
		o.log().Warn("deploy: the deploy is not in the audit log", "err", aerr)
	}
}

// auditEntry is a deploy's audit line.
func auditEntry(o *Options, res *Result, err error) AuditEntry {
	e := AuditEntry{Action: "deploy", Group: o.Group.String(), Label: o.Manifest.Label, Hosts: o.Hosts, Outcome: "error"}
	if err != nil {
		e.Error = err.Error()
	}
	if res == nil {
		e.Release = o.Manifest.ID()
		return e
	}
	e.Release = res.ReleaseID
	e.Outcome, e.DeployID, e.Hosts, e.Halted = res.Outcome().String(), res.DeployID, nil, res.Halted
	for _, h := range res.Hosts {
		e.Hosts = append(e.Hosts, h.ID)
		if h.Phase != PhaseRefused {
			continue
		}
		if e.Refused == nil {
			e.Refused = map[string]string{}
		}
		e.Refused[h.ID] = h.Cause + ": " + h.Error
	}
	return e
}

// Rollback switches the fleet f back (Fleet.Rollback), reading the
// deploy history from the Deployer's audit log (whatever f.Audit says),
// and appends the audit line there when it had a target.
func (d *Deployer) Rollback(ctx context.Context, f *Fleet, to image.ID) (image.ID, []HostResult, error) {
	fl := *f
	fl.Audit = d.Audit // the history the target is read from is the log the rollback is written to
	to, res, err := fl.Rollback(ctx, to)
	if to.IsZero() {
		return to, res, err
	}
	outcome, _ := OutcomeOf(res)
	e := AuditEntry{Action: "rollback", Group: d.Group.String(), Release: to, Hosts: f.Hosts, Outcome: outcome.String()}
	if err != nil {
		e.Outcome, e.Error = "error", err.Error()
	}
	if aerr := AppendAudit(d.Audit, e); aerr != nil {
		f.Cmd.log().Warn("rollback: the rollback is not in the audit log", "err", aerr)
	}
	return to, res, err
}

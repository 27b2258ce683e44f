package main

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/internal/cliutil"
)

// progressEvery limits redraws of the progress line.
const progressEvery = 200 * time.Millisecond

// progress draws one updating line on a terminal and nothing otherwise.
type progress struct {
	w     io.Writer
	label string
	tty   bool
	last  time.Time
	start time.Time
	drawn bool
}

func newProgress(f *os.File, label string) *progress {
	fi, err := f.Stat()
	tty := err == nil && fi.Mode()&os.ModeCharDevice != 0
	return &progress{w: f, label: label, tty: tty, start: time.Now()}
}

func (p *progress) update(done, total int64) {
	if !p.tty || time.Since(p.last) < progressEvery {
		return
	}
	p.last = time.Now()
	pct := 100.0
	if total > 0 {
		pct = 100 * float64(done) / float64(total)
	}
	rate := float64(done) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.w, "\r%s: %5.1f%%  %s / %s  %s/s ", p.label, pct, cliutil.HumanBytes(done), cliutil.HumanBytes(total), cliutil.HumanBytes(int64(rate)))
	p.drawn = true
}

func (p *progress) done() {
	if p.drawn {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// deployProgress draws a deploy's phase on one updating terminal line:
// bytes and rate on the wire, and hosts registered, complete, staged.
type deployProgress struct {
	p     *progress
	phase string
}

func newDeployProgress(f *os.File) *deployProgress {
	return &deployProgress{p: newProgress(f, "deploy")}
}

func (d *deployProgress) update(e deploy.Progress) {
	p := d.p
	changed := e.Phase != d.phase
	d.phase = e.Phase
	if !p.tty || (!changed && time.Since(p.last) < progressEvery) {
		return
	}
	p.last = time.Now()
	var line string
	switch e.Phase {
	case "transfer":
		t := e.Transfer
		rate := float64(t.Bytes) * 8 / max(time.Since(p.start).Seconds(), 1e-3)
		pct := 0.0
		if t.DataBytes > 0 {
			pct = 100 * float64(t.DataQueued) / float64(t.DataBytes)
		}
		line = fmt.Sprintf("transfer %-11s %5.1f%%  %s on the wire  %.0f Mbit/s  hosts %d registered, %d complete of %d",
			t.Phase, pct, cliutil.HumanBytes(t.Bytes), rate/1e6, t.Registered, t.Complete, t.Hosts)
	case "stage":
		line = fmt.Sprintf("stage: waiting for %d hosts to verify and mount the image", e.Hosts)
	case "switch":
		line = fmt.Sprintf("switch: %d of %d hosts staged, activating them", e.Staged, e.Hosts)
	}
	fmt.Fprintf(p.w, "\r\033[K%s", line)
	p.drawn = true
}

func (d *deployProgress) done() { d.p.done() }

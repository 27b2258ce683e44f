package main

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/loopcast/loopcast/deploy"
	"github.com/loopcast/loopcast/hostkey"
	"github.com/loopcast/loopcast/internal/cliutil"
	"github.com/loopcast/loopcast/internal/logline"
	"github.com/loopcast/loopcast/multicast"
	"github.com/urfave/cli/v2"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

// console is what a deploy prints while it runs. On a terminal: live bars
// (mpb) — the transfer's bytes, rate and ETA, and the slowest hosts by name
// with their phase — and every line printed above them, never into them.
// Elsewhere (CI, pipes): one plain line per event with the time since the
// start. Either way quiet by default: phases once, with their durations,
// warnings always; the session's detail (hosts registering, repair rounds)
// only with -v. With --json-events, one JSON object per event on stdout.
// What the deploy says comes as slog records (Logger): each is one line,
// its message then its attributes as key=value.
type console struct {
	w       io.Writer
	tty     bool
	verbose bool
	start   time.Time
	events  *json.Encoder

	mu      sync.Mutex
	p       *mpb.Progress
	bar     *mpb.Bar
	hosts   []*mpb.Bar
	phase   string
	phaseAt time.Time
	lastEv  time.Time
	// snap is what the bars draw; mpb's goroutine reads it without the
	// lock (which Progress holds while it moves a bar).
	snap atomic.Pointer[snapshot]
}

type snapshot struct {
	p       deploy.Progress
	phaseAt time.Time
}

// consoleFor makes the console of a command: its error writer (a terminal
// when that is the process's stderr on one), verbose with -v, events on
// stdout with --json-events.
func consoleFor(c *cli.Context, stdout io.Writer) *console {
	k := &console{w: c.App.ErrWriter, start: time.Now(), verbose: c.Bool("verbose")}
	if f, ok := c.App.ErrWriter.(*os.File); ok {
		k.tty = term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb"
	}
	if c.Bool("json-events") {
		k.events = json.NewEncoder(stdout)
	}
	return k
}

// event is one --json-events object.
type event struct {
	T       float64          `json:"t"` // seconds since the start
	Kind    string           `json:"kind"`
	Text    string           `json:"text,omitempty"`
	Phase   string           `json:"phase,omitempty"`
	Seconds float64          `json:"seconds,omitempty"` // a phase's duration
	Report  *deploy.Result   `json:"report,omitempty"`
	Prog    *deploy.Progress `json:"progress,omitempty"`
}

func (k *console) emit(e event) {
	if k.events == nil {
		return
	}
	e.T = time.Since(k.start).Seconds()
	k.events.Encode(e)
}

// println prints one line: above the bars on a terminal, with the time
// since the start elsewhere.
func (k *console) println(kind, line string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.emit(event{Kind: kind, Text: line})
	switch {
	case k.p != nil:
		fmt.Fprintln(k.p, line) // mpb prints it above the bars, at the next refresh
	case k.tty:
		fmt.Fprintln(k.w, line)
	default:
		fmt.Fprintf(k.w, "[%7.3fs] %s\n", time.Since(k.start).Seconds(), line)
	}
}

// Logger is the console's logger. A record at Info is what the operator
// always sees (the build, the base, the waves), printed as a "log" line;
// at Warn (and above) a "warning: " line; at Debug the session's detail, a
// "detail" line printed only with -v (and always an event).
func (k *console) Logger() *slog.Logger {
	level := slog.LevelInfo
	if k.verbose || k.events != nil {
		level = slog.LevelDebug
	}
	return slog.New(logline.New(level, k.record))
}

// record prints a record's line by its level.
func (k *console) record(level slog.Level, line string) {
	switch {
	case level >= slog.LevelWarn:
		k.println("warning", k.paint("warning: ", yellow)+line)
	case level >= slog.LevelInfo:
		k.println("log", line)
	case k.verbose:
		k.println("detail", line)
	default:
		k.mu.Lock()
		k.emit(event{Kind: "detail", Text: line})
		k.mu.Unlock()
	}
}

// Progress takes the deploy's progress: a phase change is printed once,
// with the time the phase before took; bars follow the transfer.
func (k *console) Progress(e deploy.Progress) {
	k.mu.Lock()
	phase := e.Phase
	switch {
	case phase == "transfer" && e.Transfer.Phase == multicast.PhaseDone:
		phase = k.phase // the end of the transfer is the start of staging
	case phase == "transfer":
		phase = "transfer " + e.Transfer.Phase.String()
	default: // staging and switching keep the transfer's figures on display
		if old := k.snap.Load(); old != nil {
			e.Transfer = old.p.Transfer
		}
	}
	changed := phase != k.phase
	prev, prevAt := k.phase, k.phaseAt
	if changed {
		k.phase, k.phaseAt = phase, time.Now()
	}
	k.snap.Store(&snapshot{p: e, phaseAt: k.phaseAt})
	if k.events != nil && (changed || time.Since(k.lastEv) >= time.Second) {
		k.lastEv = time.Now()
		k.emit(event{Kind: "progress", Phase: phase, Prog: &e})
	}
	if k.tty && k.p == nil && e.Phase == "transfer" && e.Transfer.Phase != multicast.PhaseDone {
		k.startBars()
	}
	if k.bar != nil {
		k.bar.SetCurrent(k.permille(e))
	}
	k.mu.Unlock()
	if changed && prev != "" {
		k.println("phase", phaseLine(prev, time.Since(prevAt)))
	}
}

// permille is the deploy's overall progress for the bar.
func (k *console) permille(e deploy.Progress) int64 {
	t := e.Transfer
	switch {
	case e.Phase != "transfer":
		return 999
	case t.DataBytes > 0:
		return min(999, 1000*t.DataQueued/t.DataBytes)
	}
	return 0
}

// startBars starts the live display: the overall bar, and a line per slow
// host (mpb redraws them; lines printed meanwhile go above).
func (k *console) startBars() {
	k.p = mpb.New(mpb.WithOutput(k.w), mpb.WithWidth(40), mpb.WithRefreshRate(150*time.Millisecond))
	k.bar = k.p.AddBar(1000,
		mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return k.status() }, decor.WCSyncSpaceR)),
		mpb.AppendDecorators(decor.Any(func(decor.Statistics) string { return k.rate() })),
	)
	for i := range multicast.SlowestHosts {
		k.hosts = append(k.hosts, k.p.New(0, mpb.NopStyle(), mpb.PrependDecorators(decor.Any(func(decor.Statistics) string { return k.hostLine(i) }))))
	}
}

func (k *console) status() string {
	sn := k.snap.Load()
	t := sn.p.Transfer
	switch sn.p.Phase {
	case "stage":
		return fmt.Sprintf("%-21s hosts %d/%d staged", "stage", sn.p.Staged, sn.p.Hosts)
	case "switch":
		return fmt.Sprintf("%-21s hosts %d staged of %d", "switch", sn.p.Staged, sn.p.Hosts)
	}
	return fmt.Sprintf("%-21s hosts %d/%d registered, %d done", "transfer "+t.Phase.String(), t.Registered, t.Hosts, t.Complete)
}

func (k *console) rate() string {
	sn := k.snap.Load()
	t := sn.p.Transfer
	secs := max(time.Since(k.start).Seconds(), 1e-3)
	s := fmt.Sprintf("%s on the wire, %s", cliutil.HumanBytes(t.Bytes), cliutil.HumanRate(float64(t.Bytes)*8/secs))
	if t.DataBytes > 0 && t.DataQueued > 0 && t.DataQueued < t.DataBytes {
		eta := time.Duration(float64(time.Since(sn.phaseAt)) * float64(t.DataBytes-t.DataQueued) / float64(t.DataQueued))
		s += fmt.Sprintf(", ETA %v", eta.Round(time.Second))
	}
	return s
}

// hostLine is the i-th slowest host's line (empty when there is none).
func (k *console) hostLine(i int) string {
	sl := k.snap.Load().p.Transfer.Slowest
	if i >= len(sl) {
		return ""
	}
	h := sl[i]
	return fmt.Sprintf("  %-20s %-12s %5.1f%% of %s", hostkey.Printable(h.ID), h.Phase, 100*h.Done, cliutil.HumanBytes(h.Needed))
}

// Close ends the live display; lines printed after go straight out.
func (k *console) Close() {
	k.mu.Lock()
	p, bar, hosts := k.p, k.bar, k.hosts
	k.p, k.bar, k.hosts = nil, nil, nil
	prev, at := k.phase, k.phaseAt
	k.mu.Unlock()
	if p != nil {
		bar.SetCurrent(1000)
		for _, h := range hosts {
			h.Abort(true)
		}
		p.Wait()
	}
	if prev != "" {
		k.println("phase", phaseLine(prev, time.Since(at)))
	}
}

// phaseLine is the line printed once a phase is over.
func phaseLine(phase string, d time.Duration) string {
	return fmt.Sprintf("%-22s %v", phase+":", d.Round(time.Millisecond))
}

// Report prints the final report (as an event too).
func (k *console) Report(w io.Writer, r *deploy.Result, asJSON bool) {
	if k.events != nil {
		k.mu.Lock()
		k.emit(event{Kind: "report", Report: r})
		k.mu.Unlock()
		return
	}
	printDeploy(w, r, asJSON, k.tty && colorOK())
}

// Colours, only on a terminal and never with NO_COLOR set.
const (
	red    = "31"
	green  = "32"
	yellow = "33"
)

func colorOK() bool { _, no := os.LookupEnv("NO_COLOR"); return !no }

func (k *console) paint(s, color string) string {
	if !k.tty || !colorOK() {
		return s
	}
	return paint(s, color)
}

func paint(s, color string) string { return "\033[" + color + "m" + s + "\033[0m" }

// phaseColor colours a host's phase in the final table.
func phaseColor(phase string) string {
	switch phase {
	case deploy.PhaseActive:
		return green
	case deploy.PhaseStaged, deploy.PhaseTransferred:
		return yellow
	}
	return red
}

// padPaint pads s to width, then colours it, so tabwriter's columns (which
// count the escape bytes) still line up across rows of one phase.
func padPaint(s string, width int, color string) string {
	return paint(s+strings.Repeat(" ", max(0, width-len(s))), color)
}

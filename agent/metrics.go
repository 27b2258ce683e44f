package agent

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/loopcast/loopcast/multicast"
	"github.com/loopcast/loopcast/opcache"
	"github.com/loopcast/loopcast/release"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics are the agent's Prometheus metrics: counters of what it did
// since it started, and, read at each scrape, the store's state (the
// release served, kept releases, free disk) and the pool's OPcache.
type Metrics struct {
	reg      *prometheus.Registry
	sessions *prometheus.CounterVec
	refusals *prometheus.CounterVec
	reused   prometheus.Counter
	unicast  prometheus.Counter
	packets  prometheus.Counter
	stage    prometheus.Histogram
	scrubs   *prometheus.CounterVec
	// health, when set, is served at /healthz beside the metrics.
	health http.Handler
}

// NewMetrics registers the agent's metrics for store (and pool, when set).
func NewMetrics(store *release.Store, pool *opcache.Client) *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		sessions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loopcast_sessions_total", Help: "Sessions received, by outcome: staged, stage_failed, failed.",
		}, []string{"outcome"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loopcast_refusals_total", Help: "Sessions this agent refused, by cause.",
		}, []string{"cause"}),
		unicast: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loopcast_sessions_unicast_total", Help: "Sessions received over the sender's TCP port because this host heard no multicast: check the multicast plumbing (receiver doctor).",
		}),
		reused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loopcast_chunks_reused_total", Help: "Image chunks taken from this host's kept images instead of the wire.",
		}),
		packets: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "loopcast_packets_received_total", Help: "Session packets received.",
		}),
		stage: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "loopcast_stage_duration_seconds", Help: "Time from the last verified chunk to the release staged (mounted, placed).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 12),
		}),
		scrubs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "loopcast_scrubs_total", Help: "Background scrubs of the kept images, by result: intact, corrupt.",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.sessions, m.refusals, m.reused, m.unicast, m.packets, m.stage, m.scrubs,
		&storeCollector{store: store, pool: pool},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Handler serves the metrics in Prometheus's text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// received counts a finished session.
func (m *Metrics) received(res *multicast.Result, err error) {
	if m == nil {
		return
	}
	switch {
	case err != nil || res == nil:
		m.sessions.WithLabelValues("failed").Inc()
		return
	case res.StageErr != nil:
		m.sessions.WithLabelValues("stage_failed").Inc()
	default:
		m.sessions.WithLabelValues("staged").Inc()
		m.stage.Observe(res.StageTime.Seconds())
	}
	m.reused.Add(float64(res.Reused))
	m.packets.Add(float64(res.Packets))
	if res.Unicast {
		m.unicast.Inc()
	}
}

func (m *Metrics) refused(rf *multicast.Refusal) {
	if m != nil {
		m.refusals.WithLabelValues(rf.Code.String()).Inc()
	}
}

func (m *Metrics) scrubbed(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.scrubs.WithLabelValues("corrupt").Inc()
	} else {
		m.scrubs.WithLabelValues("intact").Inc()
	}
}

// Serve serves /metrics on addr until ctx ends. A port it cannot listen
// on is logged, not fatal: metrics must not keep deploys from the host.
func (m *Metrics) Serve(ctx context.Context, addr string, log *slog.Logger) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		log.Error("agent: cannot serve metrics; the agent runs on without them", "addr", addr, "err", err)
		return nil
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.Handler())
	if m.health != nil {
		mux.Handle("/healthz", m.health)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	log.Info("agent: serving metrics", "addr", l.Addr().String(), "path", "/metrics")
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		log.Error("agent: metrics server stopped; the agent runs on without it", "err", err)
	}
	return nil
}

// storeCollector reads the store at each scrape, and OPcache at most every
// opcacheMaxAge, one call at a time: scrapes never pile up on a busy pool.
type storeCollector struct {
	store *release.Store
	pool  *opcache.Client

	mu     sync.Mutex
	at     time.Time
	status *opcache.Status
	err    error
}

const opcacheMaxAge = 15 * time.Second

// poolStatus returns OPcache's state, asked at most every opcacheMaxAge.
func (c *storeCollector) poolStatus() (*opcache.Status, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.at) < opcacheMaxAge {
		return c.status, c.err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c.status, c.err = c.pool.Status(ctx)
	c.at = time.Now()
	return c.status, c.err
}

var (
	descRelease = prometheus.NewDesc("loopcast_release_info",
		"A live release of this host (1), by id, label, role (current, previous, staged, kept, quarantined) and slot.",
		[]string{"release", "label", "role", "slot"}, nil)
	descAge = prometheus.NewDesc("loopcast_current_release_age_seconds",
		"Age of the release served, from its signed build time.", nil, nil)
	descActivated = prometheus.NewDesc("loopcast_current_release_activated_timestamp_seconds",
		"When the release served became current.", nil, nil)
	descKept     = prometheus.NewDesc("loopcast_releases_kept", "Live releases: mounted, images kept.", nil, nil)
	descFree     = prometheus.NewDesc("loopcast_store_free_bytes", "Free disk under the store's root.", nil, nil)
	descErr      = prometheus.NewDesc("loopcast_store_error", "1 when the store's last operation failed (receiver status says how).", nil, nil)
	descUp       = prometheus.NewDesc("loopcast_opcache_up", "1 when the php-fpm pool answered.", nil, nil)
	descScripts  = prometheus.NewDesc("loopcast_opcache_scripts", "Scripts in OPcache.", nil, nil)
	descMaxKeys  = prometheus.NewDesc("loopcast_opcache_max_scripts", "Most scripts OPcache can hold.", nil, nil)
	descMem      = prometheus.NewDesc("loopcast_opcache_memory_bytes", "OPcache memory by state: used, free, wasted.", []string{"state"}, nil)
	descRestarts = prometheus.NewDesc("loopcast_opcache_restarts_total", "Times OPcache emptied itself since the pool started, by cause.", []string{"cause"}, nil)
	descFull     = prometheus.NewDesc("loopcast_opcache_full", "1 when OPcache is full and caches no new script.", nil, nil)
)

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRelease, descAge, descActivated, descKept, descFree, descErr} {
		ch <- d
	}
	if c.pool != nil {
		for _, d := range []*prometheus.Desc{descUp, descScripts, descMaxKeys, descMem, descRestarts, descFull} {
			ch <- d
		}
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.store.Status()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(descErr, err)
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	for _, r := range st.Releases {
		role := "kept"
		switch {
		case r.Quarantined != "":
			role = "quarantined"
		case r.ID == st.Current:
			role = "current"
			if r.Built > 0 {
				gauge(descAge, time.Since(time.Unix(r.Built, 0)).Seconds())
			}
			if !r.ActivatedAt.IsZero() {
				gauge(descActivated, float64(r.ActivatedAt.Unix()))
			}
		case r.ID == st.Previous:
			role = "previous"
		case r.Activated == 0:
			role = "staged"
		}
		gauge(descRelease, 1, r.ID.String(), r.Label, role, r.Slot)
	}
	gauge(descKept, float64(len(st.Releases)))
	gauge(descFree, float64(st.FreeBytes))
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	gauge(descErr, b2f(st.LastError != ""))
	if c.pool == nil {
		return
	}
	os, err := c.poolStatus()
	gauge(descUp, b2f(err == nil))
	if err != nil {
		return
	}
	gauge(descScripts, float64(os.Scripts))
	gauge(descMaxKeys, float64(os.MaxScripts))
	gauge(descMem, float64(os.UsedMemory), "used")
	gauge(descMem, float64(os.FreeMemory), "free")
	gauge(descMem, float64(os.WastedMemory), "wasted")
	for cause, n := range map[string]int{"oom": os.OOMRestarts, "hash": os.HashRestarts, "manual": os.ManualRestarts} {
		ch <- prometheus.MustNewConstMetric(descRestarts, prometheus.CounterValue, float64(n), cause)
	}
	gauge(descFull, b2f(os.CacheFull))
}

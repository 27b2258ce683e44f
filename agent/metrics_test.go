package agent

import (
	"errors"
	"io"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/loopcast/loopcast/multicast"
)

// scrape returns the metrics page.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != 200 {
		t.Fatalf("scrape: %d %s", rec.Code, body)
	}
	return string(body)
}

func TestMetricsNameTheReleaseServed(t *testing.T) {
	a := newAgent(t)
	a.needLoop()
	old := a.stage("old")
	if err := a.store.Activate(old); err != nil {
		t.Fatal(err)
	}
	cur := a.stage("cur")
	if err := a.store.Activate(cur); err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(a.store, nil)
	m.received(&multicast.Result{Reused: 7, Packets: 100, StageTime: 30 * time.Millisecond, Unicast: true}, nil)
	m.received(nil, errors.New("lost"))
	m.refused(&multicast.Refusal{Code: multicast.RefuseNoSpace})
	page := scrape(t, m)
	for _, want := range []string{
		`loopcast_release_info{label="cur",release="` + cur.String() + `",role="current",slot=""} 1`,
		`loopcast_release_info{label="old",release="` + old.String() + `",role="previous",slot=""} 1`,
		`loopcast_releases_kept 2`,
		`loopcast_store_error 0`,
		`loopcast_sessions_total{outcome="staged"} 1`,
		`loopcast_sessions_total{outcome="failed"} 1`,
		`loopcast_chunks_reused_total 7`,
		`loopcast_sessions_unicast_total 1`,
		`loopcast_refusals_total{cause="no-space"} 1`,
		`loopcast_stage_duration_seconds_count 1`,
	} {
		if !strings.Contains(page, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if !regexp.MustCompile(`(?m)^loopcast_store_free_bytes [1-9]`).MatchString(page) {
		t.Errorf("no free disk in the metrics")
	}
	if strings.Contains(page, "loopcast_opcache_") {
		t.Errorf("OPcache metrics without a pool")
	}
}

package agent

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/loopcast/loopcast/release"
)

// healthHandler serves /healthz for a load balancer: 200 when the host
// serves the fleet pointer's release (or a command this host obeyed came
// after the pointer), 503 while it lags or serves nothing. ?lag=SECONDS
// tolerates a lag that short, for a balancer that would rather keep a host
// through a deploy's last seconds.
func healthHandler(store *release.Store, fleet *Fleet) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var lag time.Duration
		if v := r.URL.Query().Get("lag"); v != "" {
			s, err := strconv.ParseFloat(v, 64)
			if err != nil || s < 0 {
				http.Error(w, "lag: want seconds", http.StatusBadRequest)
				return
			}
			lag = time.Duration(s * float64(time.Second))
		}
		st, err := store.State()
		if err != nil {
			http.Error(w, "unhealthy: store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		s := fleet.Sync(st.Current, time.Now())
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		ok := s.InSync || !s.Current.IsZero() && s.Failed == "" && s.Behind <= lag
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		fmt.Fprint(w, healthText(s, ok))
	})
}

func healthText(s SyncState, ok bool) string {
	word := "healthy"
	if !ok {
		word = "unhealthy"
	}
	cur := "nothing"
	if !s.Current.IsZero() {
		cur = s.Current.String()
	}
	switch {
	case s.Pointer == nil:
		return fmt.Sprintf("%s: serving %s; no fleet pointer known\n", word, cur)
	case s.InSync && s.Superseded:
		return fmt.Sprintf("%s: serving %s by a command newer than fleet pointer #%d (%s)\n", word, cur, s.Seq, s.Release)
	case s.InSync:
		return fmt.Sprintf("%s: serving %s, the fleet's release (pointer #%d)\n", word, cur, s.Seq)
	case s.Failed != "":
		return fmt.Sprintf("%s: serving %s; the fleet serves %s (pointer #%d), which failed here: %s\n", word, cur, s.Release, s.Seq, s.Failed)
	}
	return fmt.Sprintf("%s: serving %s; the fleet serves %s (pointer #%d): behind for %s\n", word, cur, s.Release, s.Seq, s.Behind.Round(time.Second))
}

package endpoints

import (
	"net/http"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/monitor"
	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/sysmetrics"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/upstream"
)

type backendView struct {
	URL      string `json:"url"`
	Weight   int    `json:"weight"`
	Alive    bool   `json:"alive"`
	Breaker  string `json:"breaker"`
	InFlight int64  `json:"in_flight"`
}

type routeView struct {
	Prefix      string        `json:"prefix"`
	StripPrefix bool          `json:"strip_prefix"`
	RequireAuth bool          `json:"require_auth"`
	Algo        string        `json:"algo"`
	Timeout     string        `json:"timeout"`
	Available   int           `json:"available"`
	Backends    []backendView `json:"backends"`
}

// routeViews describes every route and backend of the table in force;
// degraded is true when a backend is dead or its breaker is not closed.
func (s *Set) routeViews() (views []routeView, degraded bool) {
	snap := s.o.Routes.Load()
	views = make([]routeView, 0, len(snap.Routes))
	for _, rt := range snap.Routes {
		v := routeView{
			Prefix: rt.Config.Prefix, StripPrefix: rt.Config.StripPrefix, RequireAuth: rt.Config.RequireAuth,
			Algo: rt.Config.Algo, Timeout: rt.Config.Timeout.String(),
			Backends: make([]backendView, 0, len(rt.Pool.Members)),
		}
		for _, m := range rt.Pool.Members {
			b := m.Backend
			st := b.Breaker()
			bv := backendView{URL: b.String(), Weight: m.Weight, Alive: b.Alive(), Breaker: st.String(), InFlight: b.InFlight()}
			if bv.Alive && st != upstream.BreakerOpen {
				v.Available++
			}
			if !bv.Alive || st != upstream.BreakerClosed {
				degraded = true
			}
			v.Backends = append(v.Backends, bv)
		}
		views = append(views, v)
	}
	return views, degraded
}

func (s *Set) stats(w http.ResponseWriter, _ *http.Request) {
	routes, _ := s.routeViews()
	breakers := map[string]string{}
	for _, rt := range routes {
		for _, b := range rt.Backends {
			breakers[b.URL] = b.Breaker
		}
	}
	o, cfg, e := s.o, s.o.Config, s.o.Edge
	t := o.Metrics.Totals.Snapshot()
	gwerror.JSON(w, http.StatusOK, map[string]any{
		"version":            o.Version,
		"go_version":         runtime.Version(),
		"started_at":         o.Started.UTC().Format(time.RFC3339),
		"uptime_seconds":     int64(time.Since(o.Started).Seconds()),
		"requests_total":     t.Requests,
		"responses":          map[string]int64{"2xx": t.Status[2], "3xx": t.Status[3], "4xx": t.Status[4], "5xx": t.Status[5]},
		"active_connections": o.Conns(),
		"inflight_requests":  t.Inflight,
		"algorithm":          o.Algorithm(),
		"route_count":        len(routes),
		"routes":             routes,
		"breakers":           breakers,
		"draining":           o.Draining(),
		"blocked_ips":        e.Guard.BlockedCount(),
		"tracked_ips":        map[string]int{"ratelimit": e.Limits.Tracked(), "ddos": e.Guard.Tracked()},
		"ip_lists":           map[string]int{"whitelist": e.Lists.Len(iplist.Allow), "blacklist": e.Lists.Len(iplist.Deny)},
		"cache":              cacheStats(o.Cache),
		"cache_hit_ratio":    cacheHitRatio(o.Cache),
		// Rates over the last sample (about a second; latency over 10 s),
		// from the same sampler as /api/system-metrics.
		"rates": s.rates(),
		// The certificates GATEWAY_PORT serves and how long each has left
		// ([] without TLS), as /api/system-metrics lists them.
		"certificates": monitor.Certificates(s.certificates(), time.Now()),
		"features": map[string]bool{
			"caching":     cfg.EnableCaching,
			"compression": cfg.EnableCompression,
			"tracing":     cfg.OTelEndpoint != "",
			"cluster":     cfg.ClusterMode != "off",
			"admin_api":   cfg.AdminToken != "",
			"ops_split":   cfg.OpsAddr != "",
		},
	})
}

// cacheStats is the cache part of /stats.
func cacheStats(c *cache.Shared) map[string]any {
	if c == nil {
		return map[string]any{"enabled": false}
	}
	st := c.Stats()
	out := map[string]any{
		"enabled":   true,
		"backend":   c.Store().Name(),
		"hits":      st.Hits.Load(),
		"misses":    st.Misses.Load(),
		"bypasses":  st.Bypasses.Load(),
		"errors":    st.Errors.Load(),
		"hit_ratio": st.HitRatio(),
	}
	if m, ok := c.Store().(*cache.Memory); ok {
		out["bytes"] = m.Bytes()
	}
	return out
}

// cacheHitRatio is hits / (hits + misses) since boot, 0 when caching is off.
func cacheHitRatio(c *cache.Shared) float64 {
	if c == nil {
		return 0
	}
	return c.Stats().HitRatio()
}

// rates is the rate part of /stats: the last system sample's request rate,
// error rate and latency percentiles (null until the sampler has two
// samples to compare).
func (s *Set) rates() map[string]any {
	tr := s.sys.Latest().Traffic
	return map[string]any{
		"requests_per_second":    tr.RequestsPerSecond,
		"error_rate":             tr.ErrorRate,
		"latency_ms":             tr.LatencyMS,
		"latency_window_seconds": tr.LatencyWindowSeconds,
	}
}

// Overview returns the dashboard's snapshot with up to history points of
// history.
func (s *Set) Overview(history int) overview.Overview {
	o := s.o
	t := o.Metrics.Totals.Snapshot()
	views, _ := s.routeViews()
	ov := overview.Overview{
		Version: o.Version, Started: o.Started, Uptime: time.Since(o.Started),
		Draining: o.Draining(), Requests: t.Requests, Status: t.Status, Inflight: t.Inflight,
		ActiveConnections: o.Conns(), BlockedIPs: o.Edge.Guard.BlockedCount(),
		Routes: make([]overview.Route, len(views)),
		System: s.sys.Latest(),
	}
	ov.Certificates = s.certificates()
	if history > 0 {
		ov.History = s.sys.Last(history)
	}
	for i, v := range views {
		r := overview.Route{Prefix: v.Prefix, Algo: v.Algo, Available: v.Available, Backends: make([]overview.Backend, len(v.Backends))}
		for j, b := range v.Backends {
			r.Backends[j] = overview.Backend{URL: b.URL, Alive: b.Alive, Breaker: b.Breaker, InFlight: b.InFlight}
		}
		ov.Routes[i] = r
	}
	return ov
}

// Traffic is what the sampler reads once a second (see traffic).
func (s *Set) Traffic() sysmetrics.Traffic {
	return traffic(s.o.Metrics, s.o.Cache, s.o.Conns())
}

// traffic hands the sampler the cumulative counters, once a sample (a
// second): the totals /stats reads, the request-duration histogram summed
// over every method and endpoint (collected from that one metric, not the
// whole registry), and the cache's counters. The request path is untouched.
func traffic(m *telemetry.Metrics, c *cache.Shared, conns int64) sysmetrics.Traffic {
	t := m.Totals.Snapshot()
	tr := sysmetrics.Traffic{Requests: t.Requests, Status: t.Status, Inflight: t.Inflight, ActiveConnections: conns}
	if c != nil {
		st := c.Stats()
		tr.CacheKnown, tr.CacheHits, tr.CacheMisses = true, st.Hits.Load(), st.Misses.Load()
	}
	ch := make(chan prometheus.Metric, 64)
	go func() {
		m.RequestDuration.Collect(ch)
		close(ch)
	}()
	var pb dto.Metric
	for pm := range ch {
		pb.Reset()
		if pm.Write(&pb) != nil || pb.GetHistogram() == nil {
			continue
		}
		h := pb.GetHistogram()
		bs := h.GetBucket()
		if tr.Latency.Bounds == nil {
			tr.Latency.Bounds = make([]float64, len(bs))
			tr.Latency.Counts = make([]uint64, len(bs)+1)
			for i, b := range bs {
				tr.Latency.Bounds[i] = b.GetUpperBound()
			}
		}
		if len(bs) != len(tr.Latency.Bounds) {
			continue // every series shares the buckets; never expected
		}
		for i, b := range bs {
			tr.Latency.Counts[i] += b.GetCumulativeCount()
		}
		tr.Latency.Counts[len(bs)] += h.GetSampleCount()
	}
	return tr
}

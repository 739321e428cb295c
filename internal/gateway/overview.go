package gateway

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/monitor"
	"github.com/portcullis/portcullis/internal/sysmetrics"
)

// Overview is a plain snapshot of the gateway for operator views (the TTY
// dashboard): the live counters /stats reads, plus the last system sample
// with its request rate and latency percentiles.
type Overview struct {
	Version           string
	Started           time.Time
	Uptime            time.Duration
	Draining          bool
	Requests          int64
	Status            [6]int64 // index = status/100
	Inflight          int64
	ActiveConnections int64
	BlockedIPs        int
	Routes            []RouteOverview
	// System is the last sample: request rate, error rate, latency
	// percentiles, cache hit ratio, host and process figures.
	System sysmetrics.Sample
	// History is up to the requested number of newest samples, oldest
	// first (sparklines).
	History []sysmetrics.Point
}

// RouteOverview is one route and its backends.
type RouteOverview struct {
	Prefix    string
	Algo      string
	Available int // backends alive with a breaker that lets requests through
	Backends  []BackendOverview
}

// BackendOverview is one backend's state.
type BackendOverview struct {
	URL      string
	Alive    bool
	Breaker  string // closed, open, half-open
	InFlight int64
}

// Overview returns the snapshot with up to history points of history.
func (g *Gateway) Overview(history int) Overview {
	t := g.metrics.Totals.Snapshot()
	views, _ := g.routeViews()
	o := Overview{
		Version: Version, Started: g.started, Uptime: time.Since(g.started),
		Draining: g.draining.Load(), Requests: t.Requests, Status: t.Status, Inflight: t.Inflight,
		ActiveConnections: g.conns.Load(), BlockedIPs: g.guard.BlockedCount(),
		Routes: make([]RouteOverview, len(views)),
		System: g.sys.Latest(),
	}
	if history > 0 {
		o.History = g.sys.Last(history)
	}
	for i, v := range views {
		r := RouteOverview{Prefix: v.Prefix, Algo: v.Algo, Available: v.Available, Backends: make([]BackendOverview, len(v.Backends))}
		for j, b := range v.Backends {
			r.Backends[j] = BackendOverview{URL: b.URL, Alive: b.Alive, Breaker: b.Breaker, InFlight: b.InFlight}
		}
		o.Routes[i] = r
	}
	return o
}

// buildMonitor creates the system sampler (Run starts it) and the handlers
// of /monitor and /api/system-metrics.
func (g *Gateway) buildMonitor() (page, api http.Handler) {
	g.sys = sysmetrics.New(sysmetrics.Options{Traffic: g.traffic, Log: g.log.With("component", "gateway")})
	return monitor.Page(), monitor.API(monitor.Options{Sampler: g.sys, Version: Version, Started: g.started})
}

// traffic hands the sampler the cumulative counters, once a sample (a
// second): the totals /stats reads, the request-duration histogram summed
// over every method and endpoint (collected from that one metric, not the
// whole registry), and the cache's counters. The request path is untouched.
func (g *Gateway) traffic() sysmetrics.Traffic {
	t := g.metrics.Totals.Snapshot()
	tr := sysmetrics.Traffic{Requests: t.Requests, Status: t.Status, Inflight: t.Inflight, ActiveConnections: g.conns.Load()}
	if g.cache != nil {
		st := g.cache.Stats()
		tr.CacheKnown, tr.CacheHits, tr.CacheMisses = true, st.Hits.Load(), st.Misses.Load()
	}
	ch := make(chan prometheus.Metric, 64)
	go func() {
		g.metrics.RequestDuration.Collect(ch)
		close(ch)
	}()
	var pb dto.Metric
	for m := range ch {
		pb.Reset()
		if m.Write(&pb) != nil || pb.GetHistogram() == nil {
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

package gateway

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portcullis/portcullis/internal/monitor"
	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/sysmetrics"
)

// Overview returns the snapshot with up to history points of history.
func (g *Gateway) Overview(history int) overview.Overview {
	t := g.metrics.Totals.Snapshot()
	views, _ := g.routeViews()
	o := overview.Overview{
		Version: Version, Started: g.started, Uptime: time.Since(g.started),
		Draining: g.draining.Load(), Requests: t.Requests, Status: t.Status, Inflight: t.Inflight,
		ActiveConnections: g.conns.Load(), BlockedIPs: g.guard.BlockedCount(),
		Routes: make([]overview.Route, len(views)),
		System: g.sys.Latest(),
	}
	if history > 0 {
		o.History = g.sys.Last(history)
	}
	for i, v := range views {
		r := overview.Route{Prefix: v.Prefix, Algo: v.Algo, Available: v.Available, Backends: make([]overview.Backend, len(v.Backends))}
		for j, b := range v.Backends {
			r.Backends[j] = overview.Backend{URL: b.URL, Alive: b.Alive, Breaker: b.Breaker, InFlight: b.InFlight}
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

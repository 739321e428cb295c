package gateway

import (
	"encoding/json"
	"net/http"
	"runtime"
	"time"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/upstream"
)

// buildEndpoints fills the exact-path table of the gateway's own endpoints.
// The ops endpoints, and the /health that lists routes and backends, live
// on the OPS_ADDR listener; only OPS_ADDR=public puts them on the public
// one. The public /health says the status and nothing else.
func (g *Gateway) buildEndpoints() {
	g.own = map[string]http.Handler{
		"/livez":  http.HandlerFunc(g.livez),
		"/readyz": http.HandlerFunc(g.readyz),
		"/health": http.HandlerFunc(g.healthStatus),
		"/login":  http.HandlerFunc(login),
	}
	monitorPage, systemMetrics := g.buildMonitor()
	ops := map[string]http.Handler{
		"/metrics":            g.metrics.Handler(),
		"/stats":              http.HandlerFunc(g.stats),
		"/monitor":            monitorPage,
		"/api/system-metrics": systemMetrics,
	}
	for p, h := range g.admin.Routes() {
		ops[p] = h
	}
	for p, h := range g.reloadRoutes() {
		ops[p] = h
	}
	ops["/health"] = http.HandlerFunc(g.health)
	g.opsPaths = make(map[string]bool, len(ops))
	for p := range ops {
		g.opsPaths[p] = true
	}
	if g.cfg.OpsAddr == "" {
		for p, h := range ops {
			g.own[p] = h
		}
		return
	}
	g.ops = http.NewServeMux()
	for p, h := range ops {
		g.ops.Handle(p, exactly(p, h))
	}
	for _, p := range []string{"/livez", "/readyz"} {
		g.ops.Handle(p, exactly(p, g.own[p]))
	}
}

// exactly serves h at path only, labelled with it in the request metrics.
func exactly(path string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != path {
			http.NotFound(w, r)
			return
		}
		if in := request.From(r.Context()); in != nil {
			in.Endpoint = path
		}
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func (g *Gateway) livez(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (g *Gateway) readyz(w http.ResponseWriter, _ *http.Request) {
	if g.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

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

// routeViews describes every route and backend; degraded is true when a
// backend is dead or its breaker is not closed.
func (g *Gateway) routeViews() (views []routeView, degraded bool) {
	snap := g.snap.Load()
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

// health is the ops listener's /health: the status, and every route with
// its backends' liveness and breakers.
func (g *Gateway) health(w http.ResponseWriter, _ *http.Request) {
	routes, degraded := g.routeViews()
	status, code := g.status(degraded)
	writeJSON(w, code, map[string]any{"status": status, "routes": routes})
}

// healthStatus is the public /health: the status only. Backend addresses
// and which routes need auth are a map for an attacker, not for a load
// balancer.
func (g *Gateway) healthStatus(w http.ResponseWriter, _ *http.Request) {
	_, degraded := g.routeViews()
	status, code := g.status(degraded)
	writeJSON(w, code, map[string]string{"status": status})
}

// status is /health's verdict: draining (503), degraded (a backend dead,
// a breaker not closed, or cluster mode on its local fallback) or ok.
func (g *Gateway) status(degraded bool) (string, int) {
	switch {
	case g.draining.Load():
		return "draining", http.StatusServiceUnavailable
	case degraded || g.clusterDegraded():
		return "degraded", http.StatusOK
	}
	return "ok", http.StatusOK
}

func (g *Gateway) stats(w http.ResponseWriter, _ *http.Request) {
	routes, _ := g.routeViews()
	breakers := map[string]string{}
	for _, rt := range routes {
		for _, b := range rt.Backends {
			breakers[b.URL] = b.Breaker
		}
	}
	t := g.metrics.Totals.Snapshot()
	writeJSON(w, http.StatusOK, map[string]any{
		"version":            Version,
		"go_version":         runtime.Version(),
		"started_at":         g.started.UTC().Format(time.RFC3339),
		"uptime_seconds":     int64(time.Since(g.started).Seconds()),
		"requests_total":     t.Requests,
		"responses":          map[string]int64{"2xx": t.Status[2], "3xx": t.Status[3], "4xx": t.Status[4], "5xx": t.Status[5]},
		"active_connections": g.conns.Load(),
		"inflight_requests":  t.Inflight,
		"algorithm":          g.Config().LoadBalancingAlgo,
		"route_count":        len(routes),
		"routes":             routes,
		"breakers":           breakers,
		"draining":           g.draining.Load(),
		"blocked_ips":        g.guard.BlockedCount(),
		"tracked_ips":        map[string]int{"ratelimit": g.limits.Tracked(), "ddos": g.guard.Tracked()},
		"ip_lists":           map[string]int{"whitelist": g.lists.Len(iplist.Allow), "blacklist": g.lists.Len(iplist.Deny)},
		"cache":              g.cacheStats(),
		"cache_hit_ratio":    g.cacheHitRatio(),
		// Rates over the last sample (about a second; latency over 10 s),
		// from the same sampler as /api/system-metrics.
		"rates": g.rates(),
		"features": map[string]bool{
			"caching":     g.cfg.EnableCaching,
			"compression": g.cfg.EnableCompression,
			"tracing":     g.cfg.OTelEndpoint != "",
			"cluster":     g.cfg.ClusterMode != "off",
			"admin_api":   g.cfg.AdminToken != "",
			"ops_split":   g.cfg.OpsAddr != "",
		},
	})
}

func login(w http.ResponseWriter, r *http.Request) {
	gwerror.Write(w, r, http.StatusNotImplemented, "no login provider is configured")
}

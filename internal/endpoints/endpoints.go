// Package endpoints serves the gateway's own endpoints (probes, /health,
// /stats, /metrics, the web monitor, /login and the admin API) and decides
// which listener each lives on: the ops endpoints, and the /health that
// lists routes and backends, live on OPS_ADDR; only OPS_ADDR=public puts them
// on the public listener. The public /health says the status and nothing
// else.
package endpoints

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/admin"
	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/edge"
	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/monitor"
	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/sysmetrics"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Admin is an endpoint served behind the admin API's guard (ADMIN_TOKEN)
// for the listed methods ("POST", "GET, HEAD").
type Admin struct {
	Methods string
	Handler http.Handler
}

// Options is what the endpoints read. Every field but Cache (nil when
// caching is off), Admin and Certificates is required.
type Options struct {
	Config   *config.Static // listeners, tokens, features
	Version  string
	Started  time.Time
	Draining func() bool  // the process is shutting down
	Conns    func() int64 // open client connections
	Metrics  *telemetry.Metrics
	Routes   *routetable.Holder
	Edge     *edge.State
	Cache    *cache.Shared
	// Algorithm is LOAD_BALANCING_ALGO in force (a reload may change it).
	Algorithm func() string
	// Admin are further admin endpoints by path (hot reload's).
	Admin map[string]Admin
	// Certificates lists the certificates the public listener serves
	// (listener.Public.Certificates), for /stats, the monitor and the
	// dashboard; nil means none (no TLS).
	Certificates func() []overview.Certificate
	Log          *slog.Logger
}

// Set is the gateway's own endpoints, built once.
type Set struct {
	o     Options
	sys   *sysmetrics.Sampler
	admin *admin.API

	// Public is the exact-path table of the endpoints the public listener
	// serves before any route.
	Public map[string]http.Handler
	// Ops is the OPS_ADDR listener's handler; nil when OPS_ADDR=public.
	Ops   http.Handler
	paths map[string]bool // every own path, wherever it is served
}

// New builds the endpoints and the admin API.
func New(o Options) (*Set, error) {
	s := &Set{o: o}
	cfg := o.Config
	var err error
	s.admin, err = admin.New(admin.Options{
		Token: cfg.AdminToken,
		Lists: o.Edge.Lists,
		Blocker: admin.BlockerFuncs{
			BlockedFunc: func(now time.Time) []admin.Block {
				bs := o.Edge.Guard.Blocked(now)
				out := make([]admin.Block, len(bs))
				for i, b := range bs {
					out[i] = admin.Block{IP: b.IP, Until: b.Until}
				}
				return out
			},
			UnblockFunc: o.Edge.Guard.Unblock,
		},
		Trusted:    cfg.TrustedProxies,
		Log:        o.Log,
		Registerer: o.Metrics.Registry,
	})
	if err != nil {
		return nil, err
	}
	s.sys = sysmetrics.New(sysmetrics.Options{Traffic: s.Traffic, Log: telemetry.Component(o.Log, "gateway")})

	s.Public = map[string]http.Handler{
		"/livez":  http.HandlerFunc(s.livez),
		"/readyz": http.HandlerFunc(s.readyz),
		"/health": http.HandlerFunc(s.healthStatus),
		"/login":  http.HandlerFunc(login),
	}
	ops := map[string]http.Handler{
		"/metrics":            o.Metrics.Handler(),
		"/stats":              http.HandlerFunc(s.stats),
		"/monitor":            monitor.Page(),
		"/api/system-metrics": monitor.API(monitor.Options{Sampler: s.sys, Version: o.Version, Started: o.Started, Certificates: s.certificates}),
		"/health":             http.HandlerFunc(s.health),
	}
	for p, h := range s.admin.Routes() {
		ops[p] = h
	}
	for p, a := range o.Admin {
		ops[p] = s.admin.Guard(a.Methods, a.Handler)
	}
	s.paths = make(map[string]bool, len(ops)+len(s.Public))
	for p := range s.Public {
		s.paths[p] = true
	}
	for p := range ops {
		s.paths[p] = true
	}
	if cfg.OpsAddr == "" {
		for p, h := range ops {
			s.Public[p] = h
		}
		return s, nil
	}
	mux := http.NewServeMux()
	for p, h := range ops {
		mux.Handle(p, exactly(p, h))
	}
	for _, p := range []string{"/livez", "/readyz"} {
		mux.Handle(p, exactly(p, s.Public[p]))
	}
	s.Ops = mux
	return s, nil
}

// Run samples the host, the process and the traffic once a second for
// /api/system-metrics, /stats and the dashboard, until ctx ends.
func (s *Set) Run(ctx context.Context) { s.sys.Run(ctx) }

// certificates lists the served certificates; none without TLS.
func (s *Set) certificates() []overview.Certificate {
	if s.o.Certificates == nil {
		return nil
	}
	return s.o.Certificates()
}

// Serves reports whether path is one of the gateway's own endpoints, on
// either listener.
func (s *Set) Serves(path string) bool { return s.paths[path] }

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

func (s *Set) livez(w http.ResponseWriter, _ *http.Request) {
	gwerror.JSON(w, http.StatusOK, map[string]string{"status": "alive"})
}

func (s *Set) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.o.Draining() {
		gwerror.JSON(w, http.StatusServiceUnavailable, map[string]string{"status": "draining"})
		return
	}
	gwerror.JSON(w, http.StatusOK, map[string]string{"status": "ready"})
}

// health is the ops listener's /health: the status, and every route with
// its backends' liveness and breakers.
func (s *Set) health(w http.ResponseWriter, _ *http.Request) {
	routes, degraded := s.routeViews()
	status, code := s.status(degraded)
	gwerror.JSON(w, code, map[string]any{"status": status, "routes": routes})
}

// healthStatus is the public /health: the status only. Backend addresses
// and which routes need auth are a map for an attacker, not for a load
// balancer.
func (s *Set) healthStatus(w http.ResponseWriter, _ *http.Request) {
	_, degraded := s.routeViews()
	status, code := s.status(degraded)
	gwerror.JSON(w, code, map[string]string{"status": status})
}

// status is /health's verdict: draining (503), degraded (a backend dead,
// a breaker not closed, or cluster mode on its local fallback) or ok.
func (s *Set) status(degraded bool) (string, int) {
	switch {
	case s.o.Draining():
		return "draining", http.StatusServiceUnavailable
	case degraded || s.o.Edge.Degraded():
		return "degraded", http.StatusOK
	}
	return "ok", http.StatusOK
}

func login(w http.ResponseWriter, r *http.Request) {
	gwerror.Write(w, r, http.StatusNotImplemented, "no login provider is configured")
}

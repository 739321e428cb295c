// Package gateway wires the parts into a running gateway: listeners, the
// request chain, the route snapshot, health checks, the gateway's own
// endpoints, and graceful shutdown.
package gateway

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/auth"
	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/edge"
	"github.com/portcullis/portcullis/internal/endpoints"
	"github.com/portcullis/portcullis/internal/health"
	"github.com/portcullis/portcullis/internal/listener"
	"github.com/portcullis/portcullis/internal/middleware"
	"github.com/portcullis/portcullis/internal/proxy"
	"github.com/portcullis/portcullis/internal/reload"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/upstream"
	"github.com/portcullis/portcullis/internal/upstreamclient"
)

// Version is the build's version, stamped by the linker.
var Version = "dev"

// Gateway is one running gateway process.
type Gateway struct {
	// cfg is the configuration fixed at boot: listeners, limits, features.
	// What a reload may change (routes and their defaults) is read from
	// Config(), the configuration in force.
	cfg      *config.Static
	log      *slog.Logger
	metrics  *telemetry.Metrics
	registry *upstream.Registry
	engine   *proxy.Engine
	snap     routetable.Holder
	reload   *reload.Manager // CONFIG_FILE reloads; the configuration in force
	checker  *health.Checker
	upgrades *upgradeTracker

	// readHeaderTimeout and sendTimeout, when set, replace
	// listener.ReadHeaderTimeout and request.DefaultSendTimeout; tests
	// shorten them.
	readHeaderTimeout time.Duration
	sendTimeout       time.Duration

	started  time.Time
	draining atomic.Bool
	conns    atomic.Int64

	handler http.Handler // the public listener's whole chain

	public *listener.Public // GATEWAY_PORT: TLS certificates, protocols, connection caps
	edge   *edge.State      // client IPs, lists, DDoS, per-IP limits, cluster link
	auth   *auth.Verifier   // behind routes with require_auth
	cache  *cache.Shared    // nil when ENABLE_CACHING=false
	own    *endpoints.Set   // the gateway's own endpoints

	tracing *telemetry.Tracing
	// pipeline is the request path (middleware.New); Run runs its
	// background work.
	pipeline *middleware.Pipeline

	// life bounds background work started in New (JWKS refresh, key file
	// watch, the cluster link); Run's shutdown ends it.
	life     context.Context
	stopLife context.CancelFunc
	closers  []func() // clients to close at exit (Redis, PostgreSQL)
}

// New builds a gateway from a validated configuration.
func New(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{
		cfg:      &cfg.Static,
		log:      log,
		metrics:  telemetry.NewMetrics(Version),
		started:  time.Now(),
		upgrades: newUpgradeTracker(),
	}
	circuitLog := telemetry.Component(log, "circuit")
	g.registry = upstream.NewRegistry(upstream.BreakerSettings{
		MaxFailures: uint32(cfg.CircuitBreakerMax),
		OpenTimeout: cfg.CircuitBreakerTimeout,
		OnTrip:      func(*upstream.Backend) { g.metrics.BreakerTrips.Inc() },
		OnStateChange: func(b *upstream.Backend, from, to upstream.BreakerState) {
			circuitLog.Warn("breaker state changed", "backend", b.String(), "from", from.String(), "to", to.String())
		},
		MaxEjectedPercent: cfg.MaxEjectedPercent,
		OnEjectionRefused: func(b *upstream.Backend) {
			g.metrics.EjectionsRefused.Inc()
			circuitLog.Warn("breaker kept closed: MAX_EJECTED_PERCENT of its pool is already out", "backend", b.String(),
				"max_ejected_percent", cfg.MaxEjectedPercent)
		},
	})
	var err error
	if g.tracing, err = telemetry.NewTracing(cfg.OTelEndpoint, cfg.OTelProtocol, cfg.OTelServiceName, Version, telemetry.Component(log, "tracer")); err != nil {
		return nil, err
	}
	g.engine = &proxy.Engine{
		Tracer:          g.tracing.Tracer,
		Propagator:      g.tracing.Propagator,
		Client:          upstreamclient.NewSyncClient(cfg.MaxIdleConns, cfg.IdleConnTimeout, cfg.UpstreamDialTimeout),
		RetryMax:        cfg.RetryMax,
		BodyReadTimeout: cfg.BodyReadTimeout,
		BufferBytes:     cfg.RequestBufferBytes,
		HideHeaders:     cfg.HideUpstreamHeaders,
		Metrics:         g.metrics,
		Log:             telemetry.Component(log, "proxy"),
	}
	g.engine.ClientFor = func(tc *tls.Config, http2 bool) proxy.Client {
		return upstreamclient.NewRouteClient(upstreamclient.RouteOptions{
			TLS: tc, HTTP2: http2, Plain: g.engine.Client,
			MaxIdlePerHost: cfg.MaxIdleConns, IdleTimeout: cfg.IdleConnTimeout, DialTimeout: cfg.UpstreamDialTimeout,
		})
	}
	g.life, g.stopLife = context.WithCancel(context.Background())
	ok := false
	defer func() {
		if !ok {
			g.stopLife()
			for _, c := range g.closers {
				c()
			}
		}
	}()
	if err := g.build(cfg); err != nil {
		return nil, err
	}
	ok = true
	return g, nil
}

// build creates the parts New has not: the shared state, the route table
// of boot, the own endpoints and the request path. What it opens is closed
// by g.closers.
func (g *Gateway) build(boot *config.Config) error {
	cfg := g.cfg
	var closeAll func()
	var err error
	g.edge, closeAll, err = edge.Build(g.life, cfg, g.log, g.metrics.Registry)
	g.closers = append(g.closers, closeAll)
	if err != nil {
		return err
	}
	g.public, closeAll, err = listener.NewPublic(g.life, cfg, listener.Options{
		Caps: connCaps(cfg, g.edge), Log: g.log, Registerer: g.metrics.Registry,
	})
	g.closers = append(g.closers, closeAll)
	if err != nil {
		return err
	}
	g.auth, closeAll, err = auth.Build(g.life, cfg, g.log, g.metrics.Registry)
	g.closers = append(g.closers, closeAll)
	if err != nil {
		return err
	}
	g.warnAuthless(boot)
	g.cache, closeAll, err = cache.Build(g.life, cfg, telemetry.Component(g.log, "cache"), g.metrics.Registry)
	g.closers = append(g.closers, closeAll)
	if err != nil {
		return err
	}
	snap, err := g.buildRoutes(boot, nil)
	if err != nil {
		return fmt.Errorf("building routes: %w", err)
	}
	g.snap.Store(snap)
	for _, b := range snap.Backends {
		g.metrics.BackendHealth.WithLabelValues(b.String()).Set(1)
	}
	if g.reload, err = reload.New(reload.Options{
		Config: boot, Routes: &g.snap, Registry: g.registry, Build: g.buildRoutes,
		Forget: g.engine.Forget, Metrics: g.metrics, Applied: g.warnAuthless, Log: g.log,
	}); err != nil {
		return err
	}
	g.checker = health.New(health.Options{
		Interval: cfg.HealthCheckInterval,
		Path:     cfg.HealthCheckPath,
		Falls:    cfg.HealthCheckFalls,
		Rises:    cfg.HealthCheckRises,
		Timeout:  min(cfg.HealthCheckInterval, cfg.UpstreamDialTimeout),
		Logger:   g.log,
		OnProbe:  g.reload.OnProbe,
	})
	if g.own, err = endpoints.New(endpoints.Options{
		Config: cfg, Version: Version, Started: g.started,
		Draining: g.draining.Load, Conns: g.conns.Load, Certificates: g.public.Certificates,
		Metrics: g.metrics, Routes: &g.snap, Edge: g.edge, Cache: g.cache,
		Algorithm: func() string { return g.Config().LoadBalancingAlgo },
		Admin: map[string]endpoints.Admin{
			"/admin/reload": {Methods: "POST", Handler: http.HandlerFunc(g.reload.ServeReload)},
			"/admin/config": {Methods: "GET, HEAD", Handler: http.HandlerFunc(g.reload.ServeConfig)},
		},
		Log: g.log,
	}); err != nil {
		return err
	}
	g.metrics.GateEndpoints(g.liveEndpoint)
	if g.pipeline, err = middleware.New(g.deps()); err != nil {
		return err
	}
	g.handler = g.pipeline.Public
	return nil
}

// buildRoutes makes the route table of next, taking over the routes of
// prev (nil at boot) whose configuration did not change.
func (g *Gateway) buildRoutes(next *config.Config, prev *routetable.Snapshot) (*routetable.Snapshot, error) {
	return routetable.BuildFrom(prev, next.Routes, g.registry, g.engine, g.routeDeps(next).PerRoute)
}

// routeDeps is what every route's chain shares; the CORS origins come from
// the configuration the routes are built for.
func (g *Gateway) routeDeps(next *config.Config) middleware.RouteDeps {
	rd := middleware.RouteDeps{Limits: g.edge.Limits, CORSOrigins: next.CORSAllowedOrigins, Auth: g.auth, Cache: g.cache, Log: telemetry.Component(g.log, "auth")}
	if g.cfg.EnableCompression {
		rd.CompressMinBytes = g.cfg.CompressionMinBytes
	} else {
		rd.CompressMinBytes = -1
	}
	return rd
}

// warnAuthless warns when routes require auth that nothing can grant.
func (g *Gateway) warnAuthless(c *config.Config) {
	if g.auth.Enabled() {
		return
	}
	for _, r := range c.Routes {
		if r.RequireAuth {
			telemetry.Component(g.log, "config").Warn("routes require auth but no JWT_SECRET, JWT_JWKS_URL or API key source is set: every request to them gets 401")
			return
		}
	}
}

// liveEndpoint is the request metrics' endpoint gate
// (telemetry.Metrics.GateEndpoints): fixed words such as "unmatched" and
// the gateway's own paths always have series, a route prefix only while the
// table in force has that route. Without it every prefix a CONFIG_FILE ever
// held would keep its series, and a request finishing on a removed route
// would bring them back. It runs only when a label is first counted.
func (g *Gateway) liveEndpoint(label string) bool {
	if g.own.Serves(label) || !strings.HasPrefix(label, "/") {
		return true
	}
	e, ok := g.snap.Load().Table.Match(label)
	return ok && e.Value.Config.Prefix == label
}

// Config returns the configuration in force (the boot one until a reload).
func (g *Gateway) Config() *config.Config { return g.reload.Config() }

// Reload reads CONFIG_FILE again and swaps in its routes when it is valid
// whole (reload.Manager.Reload).
func (g *Gateway) Reload(trigger string) (reload.Result, error) { return g.reload.Reload(trigger) }

// ReloadOnSignal reloads CONFIG_FILE and the TLS certificates each time sig
// delivers, until ctx ends (SIGHUP, wired by main). Each logs its own
// outcome; with neither configured the signal is logged and ignored.
func (g *Gateway) ReloadOnSignal(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			_, err := g.reload.Reload(reload.TriggerSignal)
			if g.public.TLS() {
				_ = g.public.ReloadCertificates()
			} else if errors.Is(err, reload.ErrNoConfigFile) {
				telemetry.Component(g.log, "config").Warn("SIGHUP ignored: " + err.Error())
			}
		}
	}
}

// connCaps are the public listener's connection caps.
func connCaps(cfg *config.Static, e *edge.State) listener.Caps {
	return listener.Caps{
		MaxConnsPerIP:  cfg.MaxConnsPerIP,
		MaxConnections: cfg.MaxConnections,
		Trusted:        e.Resolver.Trusted,
		MaxTrackedIPs:  cfg.MaxTrackedIPs,
	}
}

// Endpoints are the gateway's own endpoints; the dashboard reads their
// Overview.
func (g *Gateway) Endpoints() *endpoints.Set { return g.own }

func (g *Gateway) deps() middleware.Deps {
	return middleware.Deps{
		Log:                 g.log,
		Metrics:             g.metrics,
		Resolver:            g.edge.Resolver,
		BodyReadTimeout:     g.cfg.BodyReadTimeout,
		SendTimeout:         g.sendTimeout,
		AccessLogRejectRate: g.cfg.AccessLogRejectRate,
		MaxTrackedIPs:       g.cfg.MaxTrackedIPs,
		Tracing:             g.tracing,
		Lists:               g.edge.Lists,
		Guard:               g.edge.Guard,
		Limits:              g.edge.Limits,
		RPS:                 g.cfg.MaxRequestsPerSecond,
		Burst:               g.cfg.MaxBurstSize,
		Own:                 g.own.Public,
		MaxInflight:         g.cfg.MaxInflight,
		Routes:              &g.snap,
		Tunnel:              g.tunnel,
	}
}

// Handler returns the public listener's handler: the whole request path
// (middleware.Public).
func (g *Gateway) Handler() http.Handler { return g.handler }

// tunnel wraps the client side of an upgraded connection: closed, with its
// backend side (cancel), after TUNNEL_IDLE_TIMEOUT without a byte, and told
// goodbye (1001) at shutdown.
func (g *Gateway) tunnel(c net.Conn, cancel func()) net.Conn {
	return g.upgrades.track(g.idleBound(c, cancel))
}

// Run listens and serves until ctx is cancelled (SIGTERM/SIGINT), then shuts
// down gracefully (docs/operations.md). ready, if not nil, gets the bound addresses.
func (g *Gateway) Run(ctx context.Context, ready func(public, ops net.Addr)) error {
	ln, err := g.public.Listen()
	if err != nil {
		return err
	}
	// HTTP/3 (HTTP3=true) on the same port number over UDP, advertised to
	// the TCP clients.
	h := g.handler
	var q *listener.QUIC
	if g.public.HTTP3() {
		if q, err = g.public.ListenQUIC(ln.Addr(), g.handler); err != nil {
			ln.Close()
			return err
		}
		h = listener.WithAltSvc(h, q)
	}
	srv := g.public.Server(h, g.readHeaderTimeout)
	srv.ConnState = g.connState

	// The side listeners: ops (unless OPS_ADDR=public) and the redirect
	// to https (HTTP_REDIRECT_ADDR).
	var side []served
	closeAll := func() {
		ln.Close()
		if q != nil {
			q.Close()
		}
		for _, sv := range side {
			sv.ln.Close()
		}
	}
	if g.own.Ops != nil {
		opsLn, err := net.Listen("tcp", g.cfg.OpsAddr)
		if err != nil {
			closeAll()
			return fmt.Errorf("OPS_ADDR: listening on %s: %w", g.cfg.OpsAddr, err)
		}
		side = append(side, served{"ops_addr", opsLn, g.newServer(g.pipeline.Ops(g.own.Ops))})
	}
	if a := g.cfg.HTTPRedirectAddr; a != "" {
		rln, err := net.Listen("tcp", a)
		if err != nil {
			closeAll()
			return fmt.Errorf("HTTP_REDIRECT_ADDR: listening on %s: %w", a, err)
		}
		side = append(side, served{"redirect_addr", rln, g.newServer(g.pipeline.Ops(g.public.Challenges(listener.Redirect(ln.Addr().String()))))})
	}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		g.checker.Run(bg, func() []*upstream.Backend { return g.snap.Load().Backends })
	})
	wg.Go(func() { g.edge.Run(bg) })
	wg.Go(func() { g.own.Run(bg) })
	wg.Go(func() { g.public.Run(bg) })
	// Stopped after the listeners drained, so its last summary counts
	// every request.
	wg.Go(func() { g.pipeline.Run(bg) })
	wg.Go(func() { g.reload.Watch(bg) })

	errc := make(chan error, 2+len(side))
	go func() { errc <- srv.Serve(ln) }()
	attrs := []any{"addr", ln.Addr().String(), "tls", g.public.TLS(), "routes", len(g.snap.Load().Routes), "version", Version}
	if q != nil {
		go func() { errc <- q.Serve() }()
		attrs = append(attrs, "http3_addr", q.Addr().String())
	}
	var opsAddr net.Addr
	for _, sv := range side {
		go func() { errc <- sv.srv.Serve(sv.ln) }()
		attrs = append(attrs, sv.name, sv.ln.Addr().String())
		if sv.name == "ops_addr" {
			opsAddr = sv.ln.Addr()
		}
	}
	g.log.Info("gateway listening", attrs...)
	if ready != nil {
		ready(ln.Addr(), opsAddr)
	}

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}
	g.shutdown(srv, side)
	if q != nil {
		q.Close()
	}
	stopBG()
	g.stopLife()
	for _, c := range g.closers {
		c()
	}
	wg.Wait()
	flushCtx, cancelFlush := context.WithTimeout(context.Background(), 2*time.Second)
	_ = g.tracing.Shutdown(flushCtx) // export what is queued
	cancelFlush()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// shutdown: readiness fails at once, traffic is still served for
// SHUTDOWN_DELAY, then the listener closes, WebSockets get a 1001 close and
// in-flight requests have SHUTDOWN_TIMEOUT to finish.
func (g *Gateway) shutdown(srv *http.Server, side []served) {
	g.draining.Store(true)
	log := telemetry.Component(g.log, "gateway")
	log.Info("shutting down", "delay", g.cfg.ShutdownDelay.String(), "timeout", g.cfg.ShutdownTimeout.String())
	if g.cfg.ShutdownDelay > 0 {
		time.Sleep(g.cfg.ShutdownDelay)
	}
	ctx, cancel := context.WithTimeout(context.Background(), g.cfg.ShutdownTimeout)
	defer cancel()
	closed := g.upgrades.closeAll()
	err := srv.Shutdown(ctx)
	if err != nil {
		log.Warn("drain window ended with requests in flight; closing them", "error", err.Error())
		srv.Close()
	}
	for _, sv := range side {
		_ = sv.srv.Shutdown(ctx)
	}
	log.Info("stopped", "websockets_closed", closed, "clean", err == nil)
}

// served is a side listener and its server; name is its address's key in
// the "gateway listening" log line.
type served struct {
	name string
	ln   net.Listener
	srv  *http.Server
}

func (g *Gateway) newServer(h http.Handler) *http.Server {
	return listener.Server(h, g.readHeaderTimeout, telemetry.Component(g.log, "gateway"))
}

func (g *Gateway) connState(_ net.Conn, s http.ConnState) {
	switch s {
	case http.StateNew:
		g.conns.Add(1)
		g.metrics.ActiveConnections.Inc()
	case http.StateClosed, http.StateHijacked:
		g.conns.Add(-1)
		g.metrics.ActiveConnections.Dec()
	}
}

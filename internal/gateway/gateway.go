// Package gateway wires the parts into a running gateway: listeners, the
// request chain, the route snapshot, health checks, the gateway's own
// endpoints, and graceful shutdown.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/admin"
	"github.com/portcullis/portcullis/internal/auth"
	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/connlimit"
	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/framing"
	"github.com/portcullis/portcullis/internal/health"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/middleware"
	"github.com/portcullis/portcullis/internal/proxy"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/sysmetrics"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/upstream"
	"github.com/portcullis/portcullis/internal/upstreamclient"
)

// Version is the build's version, stamped by the linker.
var Version = "dev"

// Server-side limits (docs/request-path.md, "Hostile input").
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// Gateway is one running gateway process.
type Gateway struct {
	cfg      *config.Config
	log      *slog.Logger
	metrics  *telemetry.Metrics
	registry *upstream.Registry
	engine   *proxy.Engine
	snap     routetable.Holder
	reload   *reloader // CONFIG_FILE reloads; the configuration in force
	checker  *health.Checker
	upgrades *upgradeTracker

	// readHeaderTimeout and sendTimeout are ReadHeaderTimeout and
	// request.DefaultSendTimeout; tests shorten them.
	readHeaderTimeout time.Duration
	sendTimeout       time.Duration

	started  time.Time
	draining atomic.Bool
	conns    atomic.Int64

	resolver *realip.Resolver
	handler  http.Handler // the public listener's whole chain

	lists  *iplist.Lists   // allow/deny, shared with the admin API
	guard  *flood.Guard    // DDoS blocks, shared with the admin API and /stats
	limits *limiter.Limits // per-IP and per-route token buckets
	admin  *admin.API
	auth   *auth.Verifier
	// canAuth: a JWT secret, JWKS or API key source is configured, so a
	// route with require_auth can be passed at all.
	canAuth bool
	cache   *cache.Shared // nil when ENABLE_CACHING=false

	cluster *clusterNode // shared limits and lists (CLUSTER_MODE=redis); nil when off

	tracing *telemetry.Tracing
	sys     *sysmetrics.Sampler // host, process and traffic samples for /monitor and the dashboard
	// pipeline is the request path (middleware.New); Run runs its
	// background work.
	pipeline *middleware.Pipeline

	// life bounds background work started in New (JWKS refresh, key file
	// watch); Run's shutdown ends it.
	life     context.Context
	stopLife context.CancelFunc
	closers  []func() // clients to close at exit (Redis, PostgreSQL)

	own      map[string]http.Handler // the gateway's own endpoints on the public listener
	ops      *http.ServeMux          // ops endpoints on OPS_ADDR, unless OPS_ADDR=public
	opsPaths map[string]bool         // the ops endpoints' paths, wherever they are served
}

// New builds a gateway from a validated configuration.
func New(cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{
		cfg:      cfg,
		log:      log,
		metrics:  telemetry.NewMetrics(Version),
		started:  time.Now(),
		upgrades: newUpgradeTracker(),

		readHeaderTimeout: ReadHeaderTimeout,
		sendTimeout:       request.DefaultSendTimeout,
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
	g.resolver = realip.NewResolver(cfg.TrustedProxies)
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
	if err := g.buildEdge(); err != nil {
		return nil, err
	}
	if err := g.buildAuth(); err != nil {
		return nil, err
	}
	if err := g.buildCache(); err != nil {
		return nil, err
	}
	if g.reload, err = newReloader(cfg, log, g.metrics.Registry); err != nil {
		return nil, err
	}
	snap, err := routetable.Build(cfg.Routes, g.registry, g.engine, g.routeDeps(cfg).PerRoute)
	if err != nil {
		return nil, fmt.Errorf("building routes: %w", err)
	}
	g.snap.Store(snap)
	for _, b := range snap.Backends {
		g.metrics.BackendHealth.WithLabelValues(b.String()).Set(1)
	}
	g.checker = health.New(health.Options{
		Interval: cfg.HealthCheckInterval,
		Path:     cfg.HealthCheckPath,
		Falls:    cfg.HealthCheckFalls,
		Rises:    cfg.HealthCheckRises,
		Timeout:  min(cfg.HealthCheckInterval, cfg.UpstreamDialTimeout),
		Logger:   log,
		OnProbe:  g.onProbe,
	})
	g.buildEndpoints()
	g.metrics.GateEndpoints(g.liveEndpoint)
	if g.pipeline, err = middleware.New(g.deps()); err != nil {
		return nil, err
	}
	g.handler = g.pipeline.Public
	ok = true
	return g, nil
}

// buildAuth creates the verifier behind routes with require_auth.
func (g *Gateway) buildAuth() error {
	v, closeAll, err := auth.Build(g.life, g.cfg, g.log, g.metrics.Registry)
	g.closers = append(g.closers, closeAll)
	if err != nil {
		return err
	}
	g.auth = v
	g.canAuth = v.Enabled()
	g.warnAuthless(g.cfg.Routes)
	return nil
}

// buildEdge creates the edge-protection state shared by the chain, the admin
// API and /stats.
func (g *Gateway) buildEdge() error {
	cfg := g.cfg
	g.lists = iplist.NewLists(cfg.IPWhitelist, cfg.IPBlacklist)
	var err error
	if g.cluster, err = g.buildCluster(); err != nil {
		return err
	}
	g.guard, err = flood.New(flood.Config{
		Threshold:     cfg.DDoSThreshold,
		BlockDuration: cfg.BlockDuration,
		MaxTrackedIPs: cfg.MaxTrackedIPs,
		Log:           g.log,
		Registerer:    g.metrics.Registry,
		Share:         g.clusterShare(),
	})
	if err != nil {
		return fmt.Errorf("DDOS_THRESHOLD/BLOCK_DURATION: %w", err)
	}
	g.limits, err = limiter.NewLimits(limiter.Config{
		MaxTrackedIPs: cfg.MaxTrackedIPs,
		Log:           g.log,
		Registerer:    g.metrics.Registry,
		Remote:        g.clusterRemote(),
	})
	if err != nil {
		return fmt.Errorf("MAX_TRACKED_IPS: %w", err)
	}
	g.startCluster()
	g.admin, err = admin.New(admin.Options{
		Token: cfg.AdminToken,
		Lists: g.lists,
		Blocker: admin.BlockerFuncs{
			BlockedFunc: func(now time.Time) []admin.Block {
				bs := g.guard.Blocked(now)
				out := make([]admin.Block, len(bs))
				for i, b := range bs {
					out[i] = admin.Block{IP: b.IP, Until: b.Until}
				}
				return out
			},
			UnblockFunc: g.guard.Unblock,
		},
		Trusted:    cfg.TrustedProxies,
		Log:        g.log,
		Registerer: g.metrics.Registry,
	})
	return err
}

func (g *Gateway) deps() middleware.Deps {
	return middleware.Deps{
		Log:                 g.log,
		Metrics:             g.metrics,
		Resolver:            g.resolver,
		BodyReadTimeout:     g.cfg.BodyReadTimeout,
		SendTimeout:         g.sendTimeout,
		AccessLogRejectRate: g.cfg.AccessLogRejectRate,
		MaxTrackedIPs:       g.cfg.MaxTrackedIPs,
		Tracing:             g.tracing,
		Lists:               g.lists,
		Guard:               g.guard,
		Limits:              g.limits,
		RPS:                 g.cfg.MaxRequestsPerSecond,
		Burst:               g.cfg.MaxBurstSize,
		Own:                 g.own,
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
	rawLn, err := net.Listen("tcp", g.cfg.ListenAddr)
	if err != nil {
		return fmt.Errorf("GATEWAY_PORT: listening on %s: %w", g.cfg.ListenAddr, err)
	}
	// Connection caps at accept time (MAX_CONNS_PER_IP, MAX_CONNECTIONS;
	// the ops listener is not capped, so it stays reachable when this one
	// is full), and a watch on each connection's request heads for what
	// net/http hides from handlers (package framing).
	var ln net.Listener = framing.Listener{Listener: connlimit.NewListener(rawLn, connlimit.Options{
		MaxConnsPerIP:  g.cfg.MaxConnsPerIP,
		MaxConnections: g.cfg.MaxConnections,
		Trusted:        g.resolver.Trusted,
		MaxTrackedIPs:  g.cfg.MaxTrackedIPs,
		Log:            telemetry.Component(g.log, "gateway"),
		Registerer:     g.metrics.Registry,
	})}
	srv := g.newServer(g.handler)
	srv.ConnState = g.connState

	var opsLn net.Listener
	var opsSrv *http.Server
	if g.cfg.OpsAddr != "" {
		if opsLn, err = net.Listen("tcp", g.cfg.OpsAddr); err != nil {
			ln.Close()
			return fmt.Errorf("OPS_ADDR: listening on %s: %w", g.cfg.OpsAddr, err)
		}
		opsSrv = g.newServer(g.pipeline.Ops(g.ops))
	}

	bg, stopBG := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		g.checker.Run(bg, func() []*upstream.Backend { return g.snap.Load().Backends })
	})
	wg.Go(func() { g.guard.Run(bg) })
	wg.Go(func() { g.limits.Run(bg) })
	wg.Go(func() { g.sys.Run(bg) })
	// Stopped after the listeners drained, so its last summary counts
	// every request.
	wg.Go(func() { g.pipeline.Run(bg) })
	if g.cfg.ConfigFile != "" {
		wg.Go(func() { g.watchConfig(bg) })
	}

	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	var opsAddr net.Addr
	if opsSrv != nil {
		opsAddr = opsLn.Addr()
		go func() { errc <- opsSrv.Serve(opsLn) }()
	}
	attrs := []any{"addr", ln.Addr().String(), "routes", len(g.snap.Load().Routes), "version", Version}
	if opsAddr != nil {
		attrs = append(attrs, "ops_addr", opsAddr.String())
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
	g.shutdown(srv, opsSrv)
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
func (g *Gateway) shutdown(srv, opsSrv *http.Server) {
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
	if opsSrv != nil {
		opsSrv.Shutdown(ctx)
	}
	log.Info("stopped", "websockets_closed", closed, "clean", err == nil)
}

func (g *Gateway) newServer(h http.Handler) *http.Server {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: g.readHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnContext:       request.ConnContext,
		ErrorLog:          slog.NewLogLogger(telemetry.Component(g.log, "gateway").Handler(), slog.LevelDebug),
	}
	// Plain HTTP/1.1 only: no h2c, so no HTTP/2 tunnel past routing.
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	return srv
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

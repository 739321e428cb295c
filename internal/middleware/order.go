// Package middleware fixes the order of the request path. Reading this file
// tells the whole story of a request, from the connection's envelope to
// the proxy; docs/request-path.md numbers the same steps
// (Path), and a test holds the two equal. Each step lives in its own
// package below this one, and every one has the same shape: New compiles
// its settings once and returns the wrapper of the rest of the chain.
package middleware

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"time"

	authn "github.com/portcullis/portcullis/internal/auth"
	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/middleware/accesslog"
	"github.com/portcullis/portcullis/internal/middleware/auth"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/middleware/compress"
	"github.com/portcullis/portcullis/internal/middleware/cors"
	"github.com/portcullis/portcullis/internal/middleware/ddos"
	"github.com/portcullis/portcullis/internal/middleware/endpoints"
	"github.com/portcullis/portcullis/internal/middleware/ipfilter"
	"github.com/portcullis/portcullis/internal/middleware/methods"
	"github.com/portcullis/portcullis/internal/middleware/ratelimit"
	"github.com/portcullis/portcullis/internal/middleware/recovery"
	"github.com/portcullis/portcullis/internal/middleware/requestid"
	"github.com/portcullis/portcullis/internal/middleware/respcache"
	"github.com/portcullis/portcullis/internal/middleware/route"
	"github.com/portcullis/portcullis/internal/middleware/sanitize"
	"github.com/portcullis/portcullis/internal/middleware/secheaders"
	"github.com/portcullis/portcullis/internal/middleware/shed"
	"github.com/portcullis/portcullis/internal/middleware/tracing"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Path names the steps of a request on the public listener, in order, as
// docs/request-path.md numbers them. The last three are the
// proxy's own (package proxy): the body is read, a backend chosen, the
// request sent.
var Path = []string{
	"Envelope",
	"Client IP",
	"Hostile input",
	"Trace",
	"Allow/deny lists",
	"DDoS guard",
	"Rate limit",
	"Own endpoints",
	"Load shedding",
	"Route",
	"Route rate limit",
	"CORS",
	"Methods",
	"Auth",
	"Compression",
	"Cache",
	"Body limit and buffering",
	"Balance",
	"Proxy",
}

// Deps is what the public listener's steps need.
type Deps struct {
	Log      *slog.Logger // base logger; steps add their component
	Metrics  *telemetry.Metrics
	Resolver *realip.Resolver
	// BodyReadTimeout bounds how long an unread request body may hold the
	// connection after the handler is done (BODY_READ_TIMEOUT).
	BodyReadTimeout time.Duration
	// SendTimeout bounds a blocked write to the client (see request.New);
	// 0 = request.DefaultSendTimeout.
	SendTimeout time.Duration
	// AccessLogRejectRate is ACCESS_LOG_REJECT_RATE: the access lines of
	// 403/429 answers a second per client; 0 writes them all.
	AccessLogRejectRate int
	// MaxTrackedIPs is MAX_TRACKED_IPS, the cap of per-client tables.
	MaxTrackedIPs int
	Tracing       *telemetry.Tracing // OpenTelemetry; Tracer nil = off

	// Edge protection, shared with the admin API, cluster mode and /stats.
	Lists  *iplist.Lists
	Guard  *flood.Guard
	Limits *limiter.Limits
	RPS    float64 // MAX_REQUESTS_PER_SECOND
	Burst  int     // MAX_BURST_SIZE

	// Own are the gateway's own endpoints on the public listener, by exact
	// path.
	Own map[string]http.Handler
	// MaxInflight is MAX_INFLIGHT.
	MaxInflight int
	// Routes is the route table in force; each route carries its own chain
	// (PerRoute).
	Routes *routetable.Holder
	// Tunnel wraps upgraded connections (idle timeout, goodbye at shutdown).
	Tunnel route.Tunnel
}

// step is one step of the path: its name (one of Path) and its wrapper.
type step struct {
	name string
	wrap func(http.Handler) http.Handler
}

// Pipeline is the request path, built once: the public listener's
// handler, the envelope of the ops listener, and the background work of
// the steps.
type Pipeline struct {
	// Public is the public listener's handler: every step a request
	// passes, outermost first, ending in the route table.
	Public http.Handler

	d         Deps
	ids       *requestid.Generator
	accessLog *accesslog.Sampler
}

// New builds the pipeline.
func New(d Deps) (*Pipeline, error) {
	if d.SendTimeout <= 0 {
		d.SendTimeout = request.DefaultSendTimeout
	}
	p := &Pipeline{d: d, ids: requestid.NewGenerator()}
	var err error
	if p.accessLog, err = accesslog.NewSampler(accesslog.SamplerConfig{
		Rate:          d.AccessLogRejectRate,
		MaxTrackedIPs: d.MaxTrackedIPs,
		Log:           d.Log,
		Registerer:    d.Metrics.Registry,
	}); err != nil {
		return nil, err
	}
	if p.Public, err = p.public(); err != nil {
		return nil, err
	}
	return p, nil
}

// Run does the steps' background work until ctx ends: the access log's
// summaries of the lines it sampled away (and a last one as it stops).
func (p *Pipeline) Run(ctx context.Context) { p.accessLog.Run(ctx) }

func (p *Pipeline) public() (http.Handler, error) {
	d := p.d
	limit, err := ratelimit.New(d.RPS, d.Burst, d.Limits)
	if err != nil {
		return nil, err
	}
	steps := append(p.envelope(),
		// The gateway.request span starts here, so rejections are traced too.
		step{"Trace", tracing.New(d.Tracing.Tracer, d.Tracing.Propagator)},
		// An allow-listed client skips every later IP check; a deny-listed
		// one gets 403.
		step{"Allow/deny lists", ipfilter.New(d.Lists, telemetry.Component(d.Log, "gateway"), d.Metrics.Registry)},
		// Too many requests in a sliding minute: blocked for a while.
		step{"DDoS guard", ddos.New(d.Guard)},
		// A token bucket per client.
		step{"Rate limit", limit},
		// The gateway's own endpoints win over routes, and are never shed.
		step{"Own endpoints", endpoints.New(d.Own)},
		// Beyond MAX_INFLIGHT, 503 at once rather than a queue.
		step{"Load shedding", shed.New(d.MaxInflight, d.Metrics.Registry)},
	)
	return chain(steps, step{"Route", func(http.Handler) http.Handler { return route.New(d.Routes, d.Tunnel) }})
}

// Ops returns the chain of the ops listener (OPS_ADDR) in front of mux: the
// envelope only. It is a private listener, so no client limits apply;
// request IDs, client IPs and the access log still do.
func (p *Pipeline) Ops(mux http.Handler) http.Handler {
	h, _ := chain(p.envelope(), step{"Own endpoints", func(http.Handler) http.Handler { return mux }})
	return h
}

// envelope is what every request on either listener gets first.
func (p *Pipeline) envelope() []step {
	d := p.d
	log := telemetry.Component(d.Log, "gateway")
	return []step{
		// begin allocates the request's shared state once; the request ID,
		// the security headers, the access line and metrics (outside every
		// rejection, so rejections are logged and counted too), and
		// recovery (inside the access log, so a panic is a 500 that is
		// logged and counted like any other answer).
		{"Envelope", begin(d.BodyReadTimeout, d.SendTimeout)},
		{"Envelope", requestid.New(p.ids)},
		{"Envelope", secheaders.New()},
		{"Envelope", accesslog.New(log, d.Metrics, p.accessLog)},
		{"Envelope", recovery.New(log)},
		// Computed once; every later step reads request.Info.
		{"Client IP", clientip.New(d.Resolver)},
		// Request shapes net/http lets through but a gateway must not.
		{"Hostile input", sanitize.New()},
	}
}

// RouteDeps is what the per-route steps need.
type RouteDeps struct {
	Limits      *limiter.Limits
	CORSOrigins []string // CORS_ALLOWED_ORIGINS
	Auth        *authn.Verifier
	// Cache is the shared response cache; nil = ENABLE_CACHING off.
	Cache *cache.Shared
	// CompressMinBytes is COMPRESSION_MIN_BYTES; negative = compression
	// off (ENABLE_COMPRESSION=false).
	CompressMinBytes int
	// Log gets the auth step's debug line per refusal (component auth).
	Log *slog.Logger
}

// PerRoute returns one route's chain, from the step after Route to the
// route's proxy (which reads the body, balances and proxies).
func (rd RouteDeps) PerRoute(rc config.Route, proxy http.Handler) (http.Handler, error) {
	var steps []step
	var errs []error
	add := func(name string, wrap func(http.Handler) http.Handler, err error) {
		if err != nil {
			errs = append(errs, err)
			return
		}
		steps = append(steps, step{name, wrap})
	}
	if rc.RateLimitRPS > 0 {
		// The route's own limit, on top of the per-client default.
		limit, err := ratelimit.NewRoute(rc.RateLimitRPS, rc.RateLimitBurst, rd.Limits)
		add("Route rate limit", limit, err)
	}
	// Preflights answered here, never forwarded.
	c, err := cors.New(rd.CORSOrigins)
	add("CORS", c, err)
	// 405 with Allow for a method the route does not serve; after CORS,
	// since a preflight asks about a method rather than being one.
	add("Methods", methods.New(rc.Methods), nil)
	// Before the cache, so a private answer never reaches an anonymous
	// caller.
	add("Auth", auth.New(rd.Auth, rc.RequireAuth, rd.Log), nil)
	if rd.CompressMinBytes >= 0 {
		// Outside the cache: the cache stores one unencoded answer and
		// every client, hit or miss, gets the encoding it accepts.
		gz, err := compress.New(rd.CompressMinBytes)
		add("Compression", gz, err)
	}
	if rd.Cache != nil && !rc.NoCache {
		add("Cache", respcache.New(rd.Cache, rc.CacheTTL, rc.CacheAuthenticated), nil)
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("route %s: %w", rc.Prefix, errors.Join(errs...))
	}
	return chain(steps, step{"Body limit and buffering", func(http.Handler) http.Handler { return proxy }})
}

// chain wraps last in steps, outermost first, checking that the steps come
// in Path's order: the order in this file is the order of docs/request-path.md.
func chain(steps []step, last step) (http.Handler, error) {
	at := -1
	for _, s := range append(steps, last) {
		i := slices.Index(Path, s.name)
		if i < 0 {
			return nil, fmt.Errorf("middleware: step %q is not in Path", s.name)
		}
		if i < at {
			return nil, fmt.Errorf("middleware: step %q is out of order (see Path)", s.name)
		}
		at = i
	}
	h := last.wrap(nil)
	for i := len(steps) - 1; i >= 0; i-- {
		h = steps[i].wrap(h)
	}
	return h, nil
}

// begin creates the request's shared state and hands the recording writer
// on. After the handler, it bounds what net/http does next with an unread
// request body: the server drains up to 256 KiB of it to reuse the
// connection, with no deadline of its own, so a client that declared a body
// and never sends it would hold the connection forever.
func begin(bodyTimeout, sendTimeout time.Duration) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in, r := request.New(w, r, time.Now(), sendTimeout)
			if f := in.Framing(); f != nil {
				// What the handler reads is a body: the connection scans only
				// the bytes read between requests (see package framing).
				f.Serving(true)
				defer f.Serving(false)
			}
			next.ServeHTTP(in.Writer(), r)
			if r.ContentLength == 0 || in.Status() == http.StatusSwitchingProtocols {
				return
			}
			deadline := time.Now().Add(bodyTimeout)
			if w.Header().Get("Connection") == "close" {
				deadline = time.Now() // closing anyway: do not wait for the rest
			}
			_ = http.NewResponseController(w).SetReadDeadline(deadline)
		})
	}
}

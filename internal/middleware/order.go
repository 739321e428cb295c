// Package middleware fixes the order of the request path. Reading this file
// tells the whole story of a request (README "How a request is handled"); each
// step lives in its own package below this one.
package middleware

import (
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/middleware/accesslog"
	"github.com/portcullis/portcullis/internal/middleware/auth"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/middleware/compress"
	"github.com/portcullis/portcullis/internal/middleware/cors"
	"github.com/portcullis/portcullis/internal/middleware/ddos"
	"github.com/portcullis/portcullis/internal/middleware/ipfilter"
	"github.com/portcullis/portcullis/internal/middleware/methods"
	"github.com/portcullis/portcullis/internal/middleware/ratelimit"
	"github.com/portcullis/portcullis/internal/middleware/recovery"
	"github.com/portcullis/portcullis/internal/middleware/requestid"
	"github.com/portcullis/portcullis/internal/middleware/respcache"
	"github.com/portcullis/portcullis/internal/middleware/sanitize"
	"github.com/portcullis/portcullis/internal/middleware/secheaders"
	"github.com/portcullis/portcullis/internal/middleware/tracing"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Deps is what the global steps need.
type Deps struct {
	Log      *slog.Logger // base logger; steps add their component
	Metrics  *telemetry.Metrics
	IDs      *requestid.Generator
	Resolver *realip.Resolver
	// BodyReadTimeout bounds how long an unread request body may hold the
	// connection after the handler is done (BODY_READ_TIMEOUT).
	BodyReadTimeout time.Duration
	// SendTimeout bounds a blocked write to the client (see request.New).
	SendTimeout time.Duration
	// AccessLog samples the access lines of 403/429 answers per client
	// (ACCESS_LOG_REJECT_RATE); nil writes them all.
	AccessLog *accesslog.Sampler

	// Edge protection: allow/deny, DDoS guard, rate limit. Lists and Guard are
	// shared with the admin API; a nil one leaves its step out (the ops
	// listener).
	Tracing *telemetry.Tracing // OpenTelemetry; Tracer nil = off

	Lists  *iplist.Lists
	Guard  *ddos.Guard
	Limits *ratelimit.Shared
	RPS    float64 // MAX_REQUESTS_PER_SECOND
	Burst  int     // MAX_BURST_SIZE
}

// step wraps the rest of the chain.
type step func(next http.Handler) (http.Handler, error)

// plain adapts a constructor that cannot fail.
func plain(f func(http.Handler) http.Handler) step {
	return func(h http.Handler) (http.Handler, error) { return f(h), nil }
}

// Global returns the steps every request on the public listener passes,
// outermost first, ending in next (the dispatcher: the gateway's own
// endpoints, then the routes).
func Global(d Deps, next http.Handler) (http.Handler, error) {
	steps := append(envelope(d),
		// The gateway.request span starts here, so rejections are traced too.
		plain(func(h http.Handler) http.Handler { return tracing.New(d.Tracing.Tracer, d.Tracing.Propagator, h) }),
		// 3. Allow/deny lists: an allow-listed client skips every later IP
		// check; a deny-listed one gets 403.
		plain(func(h http.Handler) http.Handler {
			return ipfilter.New(d.Lists, telemetry.Component(d.Log, "gateway"), d.Metrics.Registry, h)
		}),
		// 4. DDoS guard: too many requests in a sliding minute → blocked.
		plain(d.Guard.Wrap),
		// 5. Per-IP token bucket.
		func(h http.Handler) (http.Handler, error) { return ratelimit.New(d.RPS, d.Burst, d.Limits, h) },
	)
	return build(steps, next)
}

// Ops returns the chain of the ops listener (OPS_ADDR): the envelope only.
// It is a private listener, so no client limits apply; request IDs, client
// IPs and the access log still do.
func Ops(d Deps, next http.Handler) http.Handler {
	h, _ := build(envelope(d), next) // envelope steps cannot fail
	return h
}

// envelope: request ID, security headers, access log, recovery, client IP
// and the hostile-input checks.
func envelope(d Deps) []step {
	return []step{
		// 1. Envelope. begin allocates the request's shared state once.
		plain(func(h http.Handler) http.Handler { return begin(d.BodyReadTimeout, d.SendTimeout, h) }),
		plain(func(h http.Handler) http.Handler { return requestid.New(d.IDs, h) }),
		plain(secheaders.New),
		// Access log and metrics sit outside every rejection, so rejected
		// requests are logged and counted too.
		plain(func(h http.Handler) http.Handler {
			return accesslog.New(telemetry.Component(d.Log, "gateway"), d.Metrics, d.AccessLog, h)
		}),
		// Recovery sits just inside the access log, so a panic becomes a 500
		// that is logged and counted like any other answer.
		plain(func(h http.Handler) http.Handler { return recovery.New(telemetry.Component(d.Log, "gateway"), h) }),
		// 2. Client IP, computed once; everyone after reads request.Info.
		plain(func(h http.Handler) http.Handler { return clientip.New(d.Resolver, h) }),
		// Hostile input that net/http lets through (README "Hostile input").
		plain(sanitize.New),
	}
}

func build(steps []step, next http.Handler) (http.Handler, error) {
	h := next
	for i := len(steps) - 1; i >= 0; i-- {
		var err error
		if h, err = steps[i](h); err != nil {
			return nil, err
		}
	}
	return h, nil
}

// RouteDeps is what the per-route steps need.
type RouteDeps struct {
	Limits      *ratelimit.Shared
	CORSOrigins []string // CORS_ALLOWED_ORIGINS
	Auth        *auth.Shared
	// Cache is the shared response cache; nil = ENABLE_CACHING off.
	Cache *respcache.Shared
	// CompressMinBytes is COMPRESSION_MIN_BYTES; negative = compression
	// off (ENABLE_COMPRESSION=false).
	CompressMinBytes int
}

// PerRoute returns the steps of one route after it matched (route limit to proxy,
// 6–13), outermost first, ending in the route's proxy. The body limit and
// the balancing/proxy steps are the proxy's own.
func (rd RouteDeps) PerRoute(rc config.Route, proxy http.Handler) (http.Handler, error) {
	steps := []step{}
	if rc.RateLimitRPS > 0 {
		// 6. The route's own limit, on top of the per-IP default.
		steps = append(steps, func(h http.Handler) (http.Handler, error) {
			return ratelimit.NewRoute(rc.RateLimitRPS, rc.RateLimitBurst, rd.Limits, h)
		})
	}
	// 7. CORS: preflights answered here, never forwarded.
	steps = append(steps, func(h http.Handler) (http.Handler, error) { return cors.New(rd.CORSOrigins, h) })
	// The route's methods (405 with Allow otherwise), after CORS: a
	// preflight asks about a method, it is not one.
	steps = append(steps, plain(func(h http.Handler) http.Handler { return methods.New(rc.Methods, h) }))
	// 8. Auth, when the route requires it and the path is not public. It
	// sits before the cache, so a private answer never reaches an
	// anonymous caller.
	steps = append(steps, plain(func(h http.Handler) http.Handler { return auth.New(rd.Auth, rc.RequireAuth, h) }))
	// 11. Compression wraps the cache: it encodes the answer on its way
	// out, so the cache stores one unencoded answer and every client,
	// hit or miss, gets the encoding it accepts.
	if rd.CompressMinBytes >= 0 {
		steps = append(steps, func(h http.Handler) (http.Handler, error) { return compress.New(rd.CompressMinBytes, h) })
	}
	// 10. Cache (GET/HEAD, unless the route sets cache_ttl_secs: 0),
	// after auth.
	if rd.Cache != nil && !rc.NoCache {
		steps = append(steps, plain(func(h http.Handler) http.Handler {
			return respcache.New(rd.Cache, rc.CacheTTL, rc.CacheAuthenticated, h)
		}))
	}
	h, err := build(steps, proxy)
	if err != nil {
		return nil, fmt.Errorf("route %s: %w", rc.Prefix, err)
	}
	return h, nil
}

// begin creates the request's shared state and hands the recording writer
// on. After the handler, it bounds what net/http does next with an unread
// request body: the server drains up to 256 KiB of it to reuse the
// connection, with no deadline of its own, so a client that declared a body
// and never sends it would hold the connection forever.
func begin(bodyTimeout, sendTimeout time.Duration, next http.Handler) http.Handler {
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

// Package middleware fixes the order of the request path. Reading this file
// tells the whole story of a request (SPEC §3); each step lives in its own
// package below this one.
package middleware

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/middleware/accesslog"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/middleware/recovery"
	"github.com/portcullis/portcullis/internal/middleware/requestid"
	"github.com/portcullis/portcullis/internal/middleware/sanitize"
	"github.com/portcullis/portcullis/internal/middleware/secheaders"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Deps is what the global steps need.
type Deps struct {
	Log      *slog.Logger // base logger; steps add their component
	Metrics  *telemetry.Metrics
	IDs      *requestid.Generator
	Resolver *clientip.Resolver
	// BodyReadTimeout bounds how long an unread request body may hold the
	// connection after the handler is done (BODY_READ_TIMEOUT).
	BodyReadTimeout time.Duration
}

// step wraps the rest of the chain.
type step func(next http.Handler) http.Handler

// Global returns the steps every request passes, outermost first, ending in
// next (the dispatcher: the gateway's own endpoints, then the routes).
func Global(d Deps, next http.Handler) http.Handler {
	steps := []step{
		// 1. Envelope. begin allocates the request's shared state once.
		func(h http.Handler) http.Handler { return begin(d.BodyReadTimeout, h) },
		func(h http.Handler) http.Handler { return requestid.New(d.IDs, h) },
		secheaders.New,
		// Access log and metrics sit outside every rejection, so rejected
		// requests are logged and counted too.
		func(h http.Handler) http.Handler {
			return accesslog.New(telemetry.Component(d.Log, "gateway"), d.Metrics, h)
		},
		// Recovery sits just inside the access log, so a panic becomes a 500
		// that is logged and counted like any other answer.
		func(h http.Handler) http.Handler { return recovery.New(telemetry.Component(d.Log, "gateway"), h) },
		// 2. Client IP, computed once; everyone after reads request.Info.
		func(h http.Handler) http.Handler { return clientip.New(d.Resolver, h) },
		// Hostile input that net/http lets through (SPEC §9).
		sanitize.New,
		// 3–5. Allow/deny lists, DDoS guard and per-IP rate limits go here
		// (edge protection).
	}
	h := next
	for i := len(steps) - 1; i >= 0; i-- {
		h = steps[i](h)
	}
	return h
}

// PerRoute returns the steps of one route after it matched (SPEC §3 steps
// 7–13), ending in the route's proxy. CORS, auth, cache and compression slot
// in here, in that order; the body limit and the balancing/proxy steps are
// the proxy's own.
func PerRoute(_ config.Route, proxy http.Handler) http.Handler {
	return proxy
}

// begin creates the request's shared state and hands the recording writer
// on. After the handler, it bounds what net/http does next with an unread
// request body: the server drains up to 256 KiB of it to reuse the
// connection, with no deadline of its own, so a client that declared a body
// and never sends it would hold the connection forever.
func begin(bodyTimeout time.Duration, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now())
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

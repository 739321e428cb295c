// Package cors answers CORS preflights and puts the CORS headers on the
// responses of the routes behind it (docs/request-path.md, the
// CORS step), with github.com/rs/cors deciding.
//
// Policy:
//   - Origins are CORS_ALLOWED_ORIGINS, matched exactly (case-insensitively,
//     RFC 6454 §6.2 as config normalises them). "*" anywhere in the list is
//     wildcard mode: every origin is allowed, Access-Control-Allow-Origin is
//     "*" and credentials are NOT allowed (the Fetch standard refuses "*"
//     with credentials, and reflecting any origin with credentials would let
//     every site read a logged-in user's data). With an explicit list the
//     request's origin is echoed and Access-Control-Allow-Credentials is
//     "true". An empty list allows no origin.
//   - A preflight (OPTIONS with Origin and Access-Control-Request-Method) is
//     always answered here with 204 and never reaches auth or the upstream.
//     From a disallowed origin (or for a method not allowed) the 204 carries
//     no CORS headers, so the browser blocks the actual request; 403 would
//     tell the attacker nothing more and rs/cors answers this way.
//   - Requested headers are reflected only for allowed origins; allowed
//     methods are GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS; Max-Age 600.
//   - Every response behind this middleware carries Vary: Origin.
//   - The gateway owns the policy: Access-Control-* headers an upstream (or a
//     cached upstream answer) sends are dropped, so there is exactly one
//     Access-Control-Allow-Origin, the gateway's, and a disallowed origin
//     cannot get one from the upstream either. The only exception is
//     Access-Control-Expose-Headers, kept (next to the gateway's) for an
//     allowed origin: exposing a response header the upstream chose to
//     expose widens nothing the gateway decided.
//   - A request with more than one Origin header is served as one without
//     Origin (no CORS headers): browsers send one.
package cors

import (
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/rs/cors"
)

// MaxAge is the Access-Control-Max-Age of preflight answers, in seconds.
const MaxAge = 600

// Methods are the methods a cross-origin request may use.
var Methods = []string{
	http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
	http.MethodPatch, http.MethodDelete, http.MethodOptions,
}

// Exposed are response headers an allowed origin's scripts may read besides
// the CORS-safelisted ones: the request ID (to report errors) and the
// rate-limit answers.
var Exposed = []string{"X-Request-Id", "Retry-After", "RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"}

const (
	hdrOrigin      = "Origin"
	hdrAllowOrigin = "Access-Control-Allow-Origin"
	hdrAllowCreds  = "Access-Control-Allow-Credentials"
	hdrExpose      = "Access-Control-Expose-Headers"
	hdrVary        = "Vary"
	acPrefix       = "access-control-"
)

var varyOrigin = []string{hdrOrigin}

// New returns the CORS middleware for origins (config.CORSAllowedOrigins:
// "*" or lower-cased scheme://host[:port]). See the package doc for the
// policy. An origin holding "*" other than "*" itself is refused, since
// rs/cors would read it as a pattern.
func New(origins []string) (func(http.Handler) http.Handler, error) {
	opts := cors.Options{
		AllowedMethods:       Methods,
		AllowedHeaders:       []string{"*"}, // reflected, and only for allowed origins
		ExposedHeaders:       Exposed,
		MaxAge:               MaxAge,
		OptionsPassthrough:   false,
		OptionsSuccessStatus: http.StatusNoContent,
	}
	var errs []error
	wildcard := false
	list := make([]string, 0, len(origins))
	for i, o := range origins {
		switch {
		case o == "*":
			wildcard = true
		case o == "" || strings.ContainsAny(o, "* \t,"):
			errs = append(errs, fmt.Errorf("CORS_ALLOWED_ORIGINS[%d]: invalid origin %q: expected \"*\" or scheme://host[:port]", i, o))
		default:
			list = append(list, strings.ToLower(o))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	switch {
	case wildcard:
		opts.AllowedOrigins = []string{"*"}
		opts.AllowCredentials = false
	case len(list) == 0:
		// rs/cors reads an empty list as "allow all": say "none" explicitly.
		opts.AllowOriginFunc = func(string) bool { return false }
	default:
		opts.AllowedOrigins = list
		opts.AllowCredentials = true
	}
	c := cors.New(opts)
	return func(next http.Handler) http.Handler {
		inner := c.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if len(r.Header[hdrOrigin]) == 0 {
				// Not a cross-origin request (rs/cors has added Vary: Origin):
				// nothing to correct on the way back, no wrapper to allocate.
				next.ServeHTTP(w, r)
				return
			}
			// rs/cors has set its headers on w: remember them, so the upstream's
			// copies can be replaced when the response header goes out.
			h := w.Header()
			cw := &writer{rw: w, origin: h[hdrAllowOrigin], creds: h[hdrAllowCreds], expose: h[hdrExpose]}
			next.ServeHTTP(cw, r)
			if !cw.sent {
				// Nothing written: net/http sends an implicit 200 from w's header.
				cw.fix()
			}
		}))
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if v := r.Header[hdrOrigin]; len(v) > 1 {
				delete(r.Header, hdrOrigin)
			}
			inner.ServeHTTP(w, r)
		})
	}, nil
}

// writer fixes the CORS headers of an actual (non-preflight) response right
// before its header is sent. One allocation per request.
type writer struct {
	rw     http.ResponseWriter
	origin []string // the gateway's Access-Control-Allow-Origin, nil if none
	creds  []string // the gateway's Access-Control-Allow-Credentials
	expose []string // the gateway's Access-Control-Expose-Headers
	sent   bool
}

// fix drops every Access-Control-* header but the gateway's own and makes
// sure Vary names Origin (an inner step may have replaced Vary).
func (w *writer) fix() {
	w.sent = true
	h := w.rw.Header()
	allowed := w.origin != nil
	for k := range h {
		if len(k) < len(acPrefix) || !strings.EqualFold(k[:len(acPrefix)], acPrefix) {
			continue
		}
		if allowed && k == hdrExpose {
			continue
		}
		delete(h, k)
	}
	if allowed {
		h[hdrAllowOrigin] = w.origin
		if w.creds != nil {
			h[hdrAllowCreds] = w.creds
		}
		if len(w.expose) == 1 && !contains(h[hdrExpose], w.expose[0]) {
			v := h[hdrExpose]
			h[hdrExpose] = append(v[:len(v):len(v)], w.expose[0])
		}
	}
	if !varies(h[hdrVary]) {
		if v := h[hdrVary]; v == nil {
			h[hdrVary] = varyOrigin
		} else {
			// Full slice expression: v may be shared with another header
			// map (a cached answer's), so never append into its array.
			h[hdrVary] = append(v[:len(v):len(v)], hdrOrigin)
		}
	}
}

func contains(vals []string, s string) bool {
	for _, v := range vals {
		if v == s {
			return true
		}
	}
	return false
}

// varies reports whether a Vary header already covers Origin.
func varies(vals []string) bool {
	for _, v := range vals {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			f = strings.TrimSpace(f)
			if f == "*" || strings.EqualFold(f, hdrOrigin) {
				return true
			}
		}
	}
	return false
}

func (w *writer) Header() http.Header { return w.rw.Header() }

func (w *writer) WriteHeader(code int) {
	if !w.sent && (code < 100 || code >= 200 || code == http.StatusSwitchingProtocols) {
		w.fix()
	}
	w.rw.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	if !w.sent {
		w.fix()
	}
	return w.rw.Write(p)
}

// Flush is implemented here (not only through Unwrap) so a flush before any
// write still fixes the header first.
func (w *writer) Flush() {
	if !w.sent {
		w.fix()
	}
	_ = http.NewResponseController(w.rw).Flush()
}

// Unwrap lets http.ResponseController reach Hijack and deadlines.
func (w *writer) Unwrap() http.ResponseWriter { return w.rw }

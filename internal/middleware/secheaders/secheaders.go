// Package secheaders puts the security headers on every response: the
// gateway's own errors, cache hits and proxied answers alike. A header the
// upstream set itself (its own CSP or HSTS, say) is kept.
package secheaders

import (
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/internal/request"
)

// Defaults are the headers and values set when the response lacks them.
var Defaults = []struct{ Name, Value string }{
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
	// 0 disables the legacy XSS auditor, which itself enabled attacks (OWASP).
	{"X-Xss-Protection", "0"},
	{"Referrer-Policy", "no-referrer"},
}

// HSTS is added, on top of Defaults, to answers to requests that came over
// HTTPS: the gateway's own TLS, or X-Forwarded-Proto: https from a trusted
// proxy. Over plain HTTP browsers ignore it (RFC 6797 §8.1), and a client
// of a plain-HTTP gateway has no HTTPS to be pinned to.
var HSTS = struct{ Name, Value string }{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"}

// values are the prebuilt []string values, so the hot path does not allocate.
var (
	values = func() [][]string {
		v := make([][]string, len(Defaults))
		for i, d := range Defaults {
			v[i] = []string{d.Value}
		}
		return v
	}()
	hstsValue = []string{HSTS.Value}
)

func apply(h http.Header) {
	for i, d := range Defaults {
		if _, ok := h[d.Name]; !ok {
			h[d.Name] = values[i]
		}
	}
}

func applyHTTPS(h http.Header) {
	apply(h)
	if _, ok := h[HSTS.Name]; !ok {
		h[HSTS.Name] = hstsValue
	}
}

// headersFor picks the headers of r's answer. Only a request with an
// X-Forwarded-Proto header costs a closure: whether its sender is a
// trusted proxy is known once the client-IP step has run, before any
// answer is written.
func headersFor(r *http.Request, in *request.Info) func(http.Header) {
	if r.TLS != nil {
		return applyHTTPS
	}
	if _, ok := r.Header["X-Forwarded-Proto"]; !ok {
		return apply
	}
	proto, _, _ := strings.Cut(r.Header.Get("X-Forwarded-Proto"), ",") // the first hop's
	return func(h http.Header) {
		if in.PeerTrusted && strings.EqualFold(strings.TrimSpace(proto), "https") {
			applyHTTPS(h)
		} else {
			apply(h)
		}
	}
}

// New returns the middleware. The headers are added when the response header
// is sent, after the upstream's headers are known.
func New() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			set := headersFor(r, in)
			in.OnHeader(set)
			next.ServeHTTP(w, r)
			if !in.HeaderSent() {
				// The handler wrote nothing: net/http will send an implicit 200
				// without calling WriteHeader, so the headers go on here.
				set(w.Header())
			}
		})
	}
}

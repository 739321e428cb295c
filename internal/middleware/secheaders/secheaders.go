// Package secheaders puts the security headers on every response: the
// gateway's own errors, cache hits and proxied answers alike. A header the
// upstream set itself (its own CSP or HSTS, say) is kept.
package secheaders

import (
	"net/http"

	"github.com/portcullis/portcullis/internal/request"
)

// Defaults are the headers and values set when the response lacks them.
var Defaults = []struct{ Name, Value string }{
	{"X-Content-Type-Options", "nosniff"},
	{"X-Frame-Options", "DENY"},
	{"Strict-Transport-Security", "max-age=31536000; includeSubDomains"},
	{"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"},
	// 0 disables the legacy XSS auditor, which itself enabled attacks (OWASP).
	{"X-Xss-Protection", "0"},
	{"Referrer-Policy", "no-referrer"},
}

// values are the prebuilt []string values, so the hot path does not allocate.
var values = func() [][]string {
	v := make([][]string, len(Defaults))
	for i, d := range Defaults {
		v[i] = []string{d.Value}
	}
	return v
}()

func apply(h http.Header) {
	for i, d := range Defaults {
		if _, ok := h[d.Name]; !ok {
			h[d.Name] = values[i]
		}
	}
}

// New returns the middleware. The headers are added when the response header
// is sent, after the upstream's headers are known.
func New() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			in.OnHeader(apply)
			next.ServeHTTP(w, r)
			if !in.HeaderSent() {
				// The handler wrote nothing: net/http will send an implicit 200
				// without calling WriteHeader, so the headers go on here.
				apply(w.Header())
			}
		})
	}
}

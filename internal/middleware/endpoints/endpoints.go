// Package endpoints serves the gateway's own endpoints (/livez, /readyz,
// /health, /login, and the ops endpoints with OPS_ADDR=public): exact
// paths, matched before any route, so no route can shadow them.
package endpoints

import (
	"net/http"

	"github.com/portcullis/portcullis/internal/request"
)

// New returns the step: a request for one of own's paths is served there
// and counted under that path; any other goes on.
func New(own map[string]http.Handler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if h, ok := own[r.URL.Path]; ok {
				if in := request.From(r.Context()); in != nil {
					in.Endpoint = r.URL.Path
				}
				h.ServeHTTP(w, r)
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

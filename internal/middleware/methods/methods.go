// Package methods answers 405 to requests whose method a route does not
// serve (the route's "methods" field), with the Allow header RFC 9110
// §15.5.6 asks for.
package methods

import (
	"net/http"
	"slices"
	"strings"

	"github.com/portcullis/portcullis/internal/gwerror"
)

// New returns the step for a route serving only allowed (config.Route's
// Methods: upper case, sorted, HEAD beside GET), or next itself when
// allowed is empty (any method). A CORS preflight is not the method it asks
// about: it is the CORS step's to answer, so place this step after it.
func New(allowed []string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if len(allowed) == 0 {
			return next
		}
		allow := []string{strings.Join(allowed, ", ")}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !slices.Contains(allowed, r.Method) {
				w.Header()["Allow"] = allow
				gwerror.Write(w, r, http.StatusMethodNotAllowed, "method not allowed on this route")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

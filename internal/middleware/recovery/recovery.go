// Package recovery turns a panic in a handler into a 500 for that request
// only: the process and the connection's other requests live on.
package recovery

import (
	"errors"
	"log/slog"
	"net/http"
	"runtime/debug"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
)

// ErrPanic is recorded as the request's error after a recovered panic.
var ErrPanic = errors.New("handler panicked")

// New returns the middleware. http.ErrAbortHandler (the standard way to
// abort a response mid-stream, used by httputil.ReverseProxy when a backend
// dies mid-body) is re-raised so the server drops the connection quietly.
func New(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			defer func() {
				p := recover()
				if p == nil {
					return
				}
				if p == http.ErrAbortHandler {
					panic(p)
				}
				in := request.From(r.Context())
				in.Err = ErrPanic
				log.Error("panic serving request", "request_id", in.ID, "panic", p, "stack", string(debug.Stack()))
				if in.HeaderSent() {
					// Part of the answer is out: abort the connection so the
					// client sees a cut response, not a complete-looking one.
					panic(http.ErrAbortHandler)
				}
				request.CloseConnection(w, r)
				gwerror.Write(w, r, http.StatusInternalServerError, "internal error")
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// Package sanitize rejects or neutralises request shapes that net/http lets
// through but a public gateway must not: CONNECT and TRACE, over-long
// request lines, duplicate credentials, underscore twins of trusted
// headers, client copies of identity headers, h2c upgrades, and
// Content-Length/Transfer-Encoding ambiguity on a kept-alive connection
// (HTTP/1.0 with Transfer-Encoding is refused outright).
package sanitize

import (
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
)

// MaxRequestTarget is the longest request-target accepted (nginx's
// large_client_header_buffers 8k); longer → 414.
const MaxRequestTarget = 8 << 10

// identityHeaders are set only by the gateway's auth step; a client's copies
// are always removed, trusted peer or not.
var identityHeaders = []string{"X-User-Id", "X-Auth-Method", "X-Client-Cert-Subject"}

// allowAll is the Allow header of the gateway's own 405 to CONNECT and
// TRACE: the methods some route may serve.
var allowAll = []string{"GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS"}

// New returns the middleware.
func New() func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodConnect || r.Method == http.MethodTrace {
				// CONNECT asks for a tunnel past routing and auth; TRACE echoes
				// the request, credentials included, back to a script.
				w.Header()["Allow"] = allowAll
				request.CloseConnection(w, r)
				gwerror.Write(w, r, http.StatusMethodNotAllowed, "method not allowed")
				return
			}
			if cl := r.Header["Content-Length"]; len(cl) > 1 && !sameValues(cl) {
				// Two lengths: HTTP/1.1's parser refuses them before any
				// handler runs; over HTTP/2 and HTTP/3 one of them is used
				// and the request would go on, framed as its sender may
				// not have meant (RFC 9113 §8.1.1: malformed).
				request.CloseConnection(w, r)
				gwerror.Write(w, r, http.StatusBadRequest, "conflicting Content-Length values")
				return
			}
			if len(r.RequestURI) > MaxRequestTarget {
				request.CloseConnection(w, r)
				gwerror.Write(w, r, http.StatusRequestURITooLong, "request target too long")
				return
			}
			h := r.Header
			if len(h["Authorization"]) > 1 || len(h["X-Api-Key"]) > 1 {
				gwerror.Write(w, r, http.StatusBadRequest, "duplicate credential header")
				return
			}
			for k := range h {
				// nginx's underscores_in_headers off: an underscore twin such as
				// X_Real_IP must never reach an upstream that folds it.
				if strings.IndexByte(k, '_') >= 0 {
					delete(h, k)
				}
			}
			for _, k := range identityHeaders {
				delete(h, k)
			}
			if up := h["Upgrade"]; len(up) > 0 && !(len(up) == 1 && strings.EqualFold(strings.TrimSpace(up[0]), "websocket")) {
				// Only WebSocket is proxied; an h2c (or any other) upgrade would
				// tunnel a second protocol past routing and auth.
				delete(h, "Upgrade")
				delete(h, "Http2-Settings")
			}
			if !r.ProtoAtLeast(1, 1) {
				f := request.From(r.Context()).Framing()
				if f != nil && f.SawTransferEncoding() {
					// net/http ignored the header and framed the body some
					// other way: what follows on the connection would be
					// read as requests (RFC 9112 §6.1: faulty, close).
					request.CloseConnection(w, r)
					gwerror.Write(w, r, http.StatusBadRequest, "Transfer-Encoding in an HTTP/1.0 request")
					return
				}
				if f == nil {
					// No watch on this connection's bytes (TLS hides them
					// from the listener): whatever an ignored
					// Transfer-Encoding left behind must not be read as a
					// next request, so none is.
					request.CloseConnection(w, r)
				}
			}
			if len(r.TransferEncoding) > 0 || (!r.ProtoAtLeast(1, 1) && r.ContentLength != 0) {
				// net/http drops a Content-Length that came with
				// Transfer-Encoding and reads the body as chunked, but keeps the
				// connection open. We cannot tell whether a Content-Length was
				// there, so no request may follow a chunked one on the same
				// connection: nothing can ride on a framing disagreement. The
				// same for HTTP/1.0 with a body: net/http ignores a 1.0
				// Transfer-Encoding and frames by Content-Length, which the
				// sender may not have meant.
				request.CloseConnection(w, r)
			}
			next.ServeHTTP(w, r)
		})
	}
}

// sameValues reports whether every value of a repeated header is the same
// (ignoring surrounding spaces), as a repeated identical Content-Length is.
func sameValues(vs []string) bool {
	for _, v := range vs[1:] {
		if strings.TrimSpace(v) != strings.TrimSpace(vs[0]) {
			return false
		}
	}
	return true
}

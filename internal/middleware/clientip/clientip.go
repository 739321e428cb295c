// Package clientip is the step that resolves the client's address once per
// request (with internal/realip) and removes the forwarding headers an
// untrusted client sent. Every later step (limits, lists, ip-hash, logs)
// reads the result from request.Info.
package clientip

import (
	"net/http"

	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

// untrustedHeaders are forwarding headers only a trusted peer may send.
var untrustedHeaders = []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Forwarded-Port", "X-Forwarded-Prefix", "X-Real-Ip", "Forwarded"}

// New returns the middleware: it fills request.Info and removes forwarding
// headers that an untrusted client sent.
func New(res *realip.Resolver) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			out := res.Resolve(realip.PeerAddr(r.RemoteAddr), r.Header)
			in.ClientIP, in.PeerIP, in.PeerTrusted, in.ForwardedFor = out.Client, out.Peer, out.PeerTrusted, out.ForwardedFor
			in.ClientIPText = out.ClientText
			if !out.PeerTrusted {
				for _, k := range untrustedHeaders {
					delete(r.Header, k)
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

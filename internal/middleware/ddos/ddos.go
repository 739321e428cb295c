// Package ddos is the DDoS-guard step: a client internal/flood has blocked
// (more than DDOS_THRESHOLD requests in a sliding minute) gets 429 with
// Retry-After until its block ends.
package ddos

import (
	"errors"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

// ErrBlocked is the request's error (request.Info.Err) when its client is
// blocked.
var ErrBlocked = errors.New("client IP blocked for too many requests")

// New returns the step over g. Allow-listed clients are never counted; a
// trusted proxy that is itself the client (it sent no usable
// X-Forwarded-For) is never blocked, only logged, since blocking it would
// block everyone behind it.
func New(g *flood.Guard) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			var client netip.Addr
			var arrival time.Time
			who := flood.Who{}
			if in != nil {
				if in.Allowlisted {
					next.ServeHTTP(w, r)
					return
				}
				who = flood.Who{ClientIP: in.ClientIPText, RequestID: in.ID}
				if realip.Exempt(in.ClientIP, in.PeerIP, in.PeerTrusted) {
					g.NoteExempt(r.Context(), in.ClientIP, g.At(in.Start), who)
					next.ServeHTTP(w, r)
					return
				}
				client, arrival = in.ClientIP, in.Start
			} else {
				client = realip.PeerAddr(r.RemoteAddr) // outside the gateway's chain
				who.ClientIP = client.String()
			}
			if !client.IsValid() {
				// Only a listener without IP peers (a unix socket) gets here.
				next.ServeHTTP(w, r)
				return
			}
			refused, left := g.Hit(r.Context(), realip.Key(client), g.At(arrival), who)
			if !refused {
				next.ServeHTTP(w, r)
				return
			}
			w.Header().Set("Retry-After", strconv.FormatInt(max(ceilSeconds(left), 1), 10))
			if in != nil {
				in.Err = ErrBlocked
			}
			gwerror.Write(w, r, http.StatusTooManyRequests, "too many requests")
		})
	}
}

func ceilSeconds(d time.Duration) int64 { return int64((d + time.Second - 1) / time.Second) }

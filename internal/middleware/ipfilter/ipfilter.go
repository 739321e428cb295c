// Package ipfilter is the allow/deny step: an allow-listed client skips
// every later IP check, a deny-listed one gets 403 (the lists are
// internal/iplist's).
package ipfilter

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// ErrDenied is the request's error (request.Info.Err) when the client is on
// the deny list.
var ErrDenied = errors.New("client IP is on the deny list")

// New returns the allow/deny step. It reads the client IP that clientip
// resolved (the exact address, not its per-/64 key: lists hold single IPs
// as well as CIDRs). An allow-listed client is marked
// request.Info.Allowlisted and skips every later IP check; otherwise a
// deny-listed client gets 403, counted in denied_requests_total and logged
// at debug (an attack must not flood the log). The counter is registered on
// reg (nil: not registered); building the step twice on one registry reuses
// the first counter.
func New(l *iplist.Lists, log *slog.Logger, reg prometheus.Registerer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		denied := telemetry.MustRegister(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "denied_requests_total",
			Help: "Requests refused with 403 because the client IP is on the deny list (IP_BLACKLIST or /admin/blacklist).",
		}))
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			var client netip.Addr
			if in != nil {
				client = in.ClientIP
			} else {
				// Outside the gateway's chain (tests, misuse): the TCP peer.
				client = realip.PeerAddr(r.RemoteAddr)
			}
			if l.Allowed(client) {
				if in != nil {
					in.Allowlisted = true
				}
				next.ServeHTTP(w, r)
				return
			}
			if l.Denied(client) {
				denied.Inc()
				id := ""
				if in != nil {
					in.Err = ErrDenied
					id = in.ID
				}
				if log.Enabled(r.Context(), slog.LevelDebug) {
					log.LogAttrs(r.Context(), slog.LevelDebug, "request denied",
						slog.String("client_ip", client.String()), slog.String("request_id", id),
						slog.String("list", iplist.Deny.String()))
				}
				gwerror.Write(w, r, http.StatusForbidden, "forbidden")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

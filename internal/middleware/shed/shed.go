// Package shed caps the requests in flight (MAX_INFLIGHT, load
// shedding): beyond the cap a request gets 503 at once instead of queueing.
package shed

import (
	"errors"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// ErrShed is recorded in request.Info.Err for a shed request.
var ErrShed = errors.New("load shed: too many requests in flight")

// New returns the middleware: at most max requests are inside next at once;
// the next one is answered 503 with Retry-After: 1 and counted in
// load_shed_requests_total. An upgrade request holds its place until its
// connection is handed over (the upstream's 101): a tunnel lives for
// hours and is bounded by the connection caps, but asking for an upgrade
// must not be a way around the cap. max <= 0 disables it. reg may be nil
// (metric not registered); registering twice on one registry shares the
// counter. Place it so the gateway's own /health, /livez and /readyz
// bypass it.
func New(max int, reg prometheus.Registerer) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if max <= 0 {
			return next
		}
		shed := prometheus.NewCounter(prometheus.CounterOpts{
			Name: "load_shed_requests_total",
			Help: "Requests answered 503 at once because MAX_INFLIGHT requests were in flight.",
		})
		shed = telemetry.MustRegister(reg, shed)
		var inflight atomic.Int64
		limit := int64(max)
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if inflight.Add(1) > limit {
				inflight.Add(-1)
				shed.Inc()
				if in := request.From(r.Context()); in != nil {
					in.Err = ErrShed
				}
				w.Header().Set("Retry-After", "1")
				gwerror.Write(w, r, http.StatusServiceUnavailable, "overloaded, retry later")
				return
			}
			in := request.From(r.Context())
			if len(r.Header["Upgrade"]) == 0 || in == nil {
				defer inflight.Add(-1)
				next.ServeHTTP(w, r)
				return
			}
			// Hijack runs on this goroutine, so a plain flag will do.
			held := true
			release := func() {
				if held {
					held = false
					inflight.Add(-1)
				}
			}
			in.OnHijack(func(c net.Conn) net.Conn { release(); return c })
			defer release()
			next.ServeHTTP(w, r)
		})
	}
}

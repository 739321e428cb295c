// Package accesslog writes one JSON line per finished request and counts it
// in the request metrics. It sits outside every step that can reject a
// request, so rejections are counted and logged too. The lines of the
// edge's rejections (403, 429) are sampled per client by a Sampler, so a
// flood cannot fill the disk; every request is still counted.
package accesslog

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

var errAborted = errors.New("response aborted")

// New returns the middleware. Answers of 5xx are logged at warn, the rest,
// client rejections (4xx) included, at info: they are the audit trail of
// failed logins, deny-list hits and rate limits. The lines of 403 and 429
// answers go through s (nil: all written); every request is counted in
// metrics whether its line is written or not.
func New(log *slog.Logger, m *telemetry.Metrics, s *Sampler) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			m.InflightRequests.Inc()
			m.Totals.Begin()
			defer func() {
				m.InflightRequests.Dec()
				p := recover()
				if p != nil {
					// A response aborted mid-way (http.ErrAbortHandler): log it,
					// then let net/http drop the connection.
					defer panic(p)
					if in.Err == nil {
						in.Err = errAborted
					}
				}
				status := in.Status()
				if in.LogStatus != 0 {
					status = in.LogStatus
				}
				if status == 0 {
					if p != nil {
						status = http.StatusInternalServerError
					} else {
						// Nothing written: net/http answers 200.
						status = http.StatusOK
					}
				}
				m.Totals.End(status)
				end := time.Now() // one clock read for the duration and the line
				d := end.Sub(in.Start)
				m.Endpoint(in.Endpoint).Observe(r.Method, status, d.Seconds())
				level := slog.LevelInfo
				if status >= 500 {
					level = slog.LevelWarn
				}
				h := log.Handler()
				if !h.Enabled(context.Background(), level) {
					return
				}
				// Only the edge's rejections pay for sampling (a striped
				// lock); every other answer goes straight on.
				if sampled(status) && !s.admit(in.ClientIP, status) {
					return
				}
				attrs := make([]slog.Attr, 0, 16)
				attrs = append(attrs,
					slog.String("request_id", in.ID),
					slog.String("client_ip", in.ClientIPText),
					slog.String("method", r.Method),
					slog.String("path", r.URL.Path),
					slog.String("route", in.Endpoint),
					slog.Int("status", status),
					slog.Float64("duration_ms", float64(d.Microseconds())/1000),
					slog.Int64("bytes", in.Written()),
				)
				if in.Backend != "" {
					attrs = append(attrs, slog.String("backend", in.Backend))
				}
				if in.Cache != "" {
					attrs = append(attrs, slog.String("cache", in.Cache))
				}
				if in.Attempts > 1 {
					attrs = append(attrs, slog.Int("retries", in.Attempts-1))
				}
				if in.UserID != "" {
					attrs = append(attrs, slog.String("user.id", in.UserID))
				}
				if in.Err != nil {
					attrs = append(attrs, slog.String("error", in.Err.Error()))
				}
				// Straight to the handler: Logger.LogAttrs would walk the
				// stack (runtime.Callers) for a source location the line does
				// not carry, on every request.
				rec := slog.NewRecord(end, level, "request", 0)
				rec.AddAttrs(attrs...)
				_ = h.Handle(context.Background(), rec)
			}()
			next.ServeHTTP(w, r)
		})
	}
}

// Package tracing opens the `gateway.request` server span of every request
// (docs/operations.md, Tracing), continuing the client's W3C trace when it
// sent a traceparent, and records what the request path learned on it when the
// request ends.
package tracing

import (
	"net/http"
	"strconv"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/internal/request"
)

// New returns the step; with a nil tracer (tracing off) it is next itself.
func New(tracer trace.Tracer, prop propagation.TextMapPropagator) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		if tracer == nil {
			return next
		}
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			ctx, span := tracer.Start(ctx, "gateway.request", trace.WithSpanKind(trace.SpanKindServer))
			if !span.IsRecording() {
				// Not sampled: carry the context (so the upstream still gets a
				// traceparent) but build no attributes.
				next.ServeHTTP(w, r.WithContext(ctx))
				span.End()
				return
			}
			span.SetAttributes(
				attribute.String("http.request.method", r.Method),
				attribute.String("url.path", r.URL.Path),
				attribute.String("client.address", in.ClientIPText),
				attribute.String("request.id", in.ID),
			)
			defer func() {
				status := in.Status()
				if in.LogStatus != 0 {
					status = in.LogStatus
				}
				attrs := []attribute.KeyValue{
					attribute.String("http.route", in.Endpoint),
					attribute.Int("http.response.status_code", status),
				}
				if in.UserID != "" {
					attrs = append(attrs, attribute.String("user.id", in.UserID))
				}
				if in.Backend != "" {
					attrs = append(attrs, attribute.String("backend", in.Backend))
				}
				if in.Attempts > 1 {
					attrs = append(attrs, attribute.Int("retries", in.Attempts-1))
				}
				span.SetAttributes(attrs...)
				if in.Err != nil {
					span.SetAttributes(attribute.String("error", in.Err.Error()))
				}
				if status >= 500 {
					span.SetStatus(codes.Error, strconv.Itoa(status))
				}
				span.End()
			}()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
}

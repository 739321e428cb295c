package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Tracing is the gateway's OpenTelemetry set-up. With no endpoint it is off:
// Tracer is nil and nothing is created per request.
type Tracing struct {
	// Tracer makes spans; nil when tracing is off.
	Tracer trace.Tracer
	// Propagator reads and writes W3C traceparent/tracestate.
	Propagator propagation.TextMapPropagator

	provider *sdktrace.TracerProvider
}

// NewTracing exports spans over OTLP/HTTP to endpoint (OTEL_EXPORTER_OTLP_ENDPOINT,
// a base URL; /v1/traces is appended) as service (OTEL_SERVICE_NAME). The
// sampler follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default:
// parent-based, always on). Spans leave through a batch processor with a
// bounded queue, so a dead or slow collector never blocks a request: spans
// are dropped instead.
func NewTracing(endpoint, service, version string, log *slog.Logger) (*Tracing, error) {
	t := &Tracing{Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if endpoint == "" {
		return t, nil
	}
	url := strings.TrimSuffix(endpoint, "/")
	if !strings.HasSuffix(url, "/v1/traces") {
		url += "/v1/traces"
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(url), otlptracehttp.WithTimeout(5*time.Second))
	if err != nil {
		return nil, fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT: %w", err)
	}
	res := resource.NewSchemaless(
		attribute.String("service.name", service),
		attribute.String("service.version", version),
	)
	t.provider = sdktrace.NewTracerProvider(
		sdktrace.WithBatcher(exp, sdktrace.WithBatchTimeout(time.Second), sdktrace.WithMaxQueueSize(8192)),
		sdktrace.WithResource(res),
	)
	t.Tracer = t.provider.Tracer("github.com/portcullis/portcullis")
	if log != nil {
		log.Info("tracing on", "endpoint", url, "service", service)
	}
	return t, nil
}

// ForceFlush exports the spans still queued.
func (t *Tracing) ForceFlush(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	return t.provider.ForceFlush(ctx)
}

// Shutdown flushes and stops the exporter.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t.provider == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

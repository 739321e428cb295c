package telemetry

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
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

// NewTracing exports spans over OTLP to endpoint (OTEL_EXPORTER_OTLP_ENDPOINT)
// as service (OTEL_SERVICE_NAME): over HTTP (protocol "http/protobuf", the
// default; /v1/traces is appended to the base URL) or gRPC ("grpc"; the URL's
// host:port, TLS unless the scheme is http). The
// sampler follows OTEL_TRACES_SAMPLER / OTEL_TRACES_SAMPLER_ARG (default:
// parent-based, always on). Spans leave through a batch processor with a
// bounded queue, so a dead or slow collector never blocks a request: spans
// are dropped instead.
func NewTracing(endpoint, protocol, service, version string, log *slog.Logger) (*Tracing, error) {
	t := &Tracing{Propagator: propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})}
	if endpoint == "" {
		return t, nil
	}
	var (
		exp sdktrace.SpanExporter
		err error
		url = strings.TrimSuffix(endpoint, "/")
	)
	if protocol == "grpc" {
		// The gRPC exporter connects lazily and in the background: a dead
		// collector does not stop the boot.
		exp, err = otlptracegrpc.New(context.Background(), otlptracegrpc.WithEndpointURL(url), otlptracegrpc.WithTimeout(5*time.Second))
	} else {
		if !strings.HasSuffix(url, "/v1/traces") {
			url += "/v1/traces"
		}
		exp, err = otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(url), otlptracehttp.WithTimeout(5*time.Second))
	}
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
		log.Info("tracing on", "endpoint", url, "protocol", protocol, "service", service)
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

package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testsvc"
)

type jaegerTrace struct {
	Data []struct {
		TraceID string `json:"traceID"`
		Spans   []struct {
			SpanID        string `json:"spanID"`
			OperationName string `json:"operationName"`
			References    []struct {
				RefType string `json:"refType"`
				SpanID  string `json:"spanID"`
			} `json:"references"`
			Tags []struct {
				Key   string `json:"key"`
				Value any    `json:"value"`
			} `json:"tags"`
		} `json:"spans"`
	} `json:"data"`
}

// TestTracingIntoRealJaeger sends a request with a client traceparent through
// the gateway, then asks a real Jaeger for the trace: the client's trace id
// continued, the gateway.request span with its attributes, the upstream
// client span under it, and the upstream receiving the same trace id.
func TestTracingIntoRealJaeger(t *testing.T) {
	for _, tc := range []struct{ protocol, traceID string }{
		{protocol: "http/protobuf", traceID: "4bf92f3577b34da6a3ce929d0e0e4736"},
		{protocol: "grpc", traceID: "5cf92f3577b34da6a3ce929d0e0e4737"},
	} {
		t.Run(tc.protocol, func(t *testing.T) { traceThroughJaeger(t, tc.protocol, tc.traceID) })
	}
}

func traceThroughJaeger(t *testing.T, protocol, traceID string) {
	otlpHTTP, otlpGRPC, query := testsvc.Jaeger(t)
	otlp := otlpHTTP
	if protocol == "grpc" {
		otlp = otlpGRPC
	}
	var upstreamTP atomic.Value
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		upstreamTP.Store(r.Header.Get("Traceparent"))
		w.Write([]byte("ok"))
	}))
	gw := start(t, map[string]string{
		"OTEL_EXPORTER_OTLP_ENDPOINT": otlp,
		"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
		"OTEL_SERVICE_NAME":           "portcullis-test",
		"JWT_SECRET":                  testSecret,
		"SERVICE_ROUTES":              routes(`{"prefix":"/api","target_url":"` + up + `"}`),
	})
	resp, _ := get(t, gw.URL+"/api/orders", "Traceparent", "00-"+traceID+"-00f067aa0ba902b7-01")
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if tp, _ := upstreamTP.Load().(string); !strings.HasPrefix(tp, "00-"+traceID+"-") || strings.Contains(tp, "00f067aa0ba902b7") {
		t.Errorf("upstream traceparent %q: want the client's trace id with the gateway's own span id", tp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := gw.G.tracing.ForceFlush(ctx); err != nil {
		t.Fatalf("flush: %v", err)
	}

	var tr jaegerTrace
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := http.Get(query + "/api/traces/" + traceID)
		if err == nil {
			json.NewDecoder(r.Body).Decode(&tr)
			r.Body.Close()
			if len(tr.Data) == 1 && len(tr.Data[0].Spans) >= 2 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("trace %s not in Jaeger: %+v", traceID, tr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	spans := map[string]int{}
	for i, s := range tr.Data[0].Spans {
		spans[s.OperationName] = i
	}
	si, ok1 := spans["gateway.request"]
	ui, ok2 := spans["upstream"]
	if !ok1 || !ok2 {
		t.Fatalf("spans %v, want gateway.request and upstream", spans)
	}
	server, client := tr.Data[0].Spans[si], tr.Data[0].Spans[ui]
	if len(server.References) == 0 || server.References[0].SpanID != "00f067aa0ba902b7" {
		t.Errorf("gateway.request is not a child of the client's span: %+v", server.References)
	}
	if len(client.References) == 0 || client.References[0].SpanID != server.SpanID {
		t.Errorf("upstream span is not a child of gateway.request: %+v", client.References)
	}
	tags := map[string]any{}
	for _, tg := range server.Tags {
		tags[tg.Key] = tg.Value
	}
	for k, want := range map[string]any{"http.route": "/api", "http.request.method": "GET", "url.path": "/api/orders", "client.address": "127.0.0.1", "backend": up} {
		if tags[k] != want {
			t.Errorf("span tag %s = %v, want %v", k, tags[k], want)
		}
	}
	if tags["http.response.status_code"] != float64(200) {
		t.Errorf("status tag = %v", tags["http.response.status_code"])
	}
}

// TestDeadCollectorCostsNothing points tracing at a port where nothing
// listens: requests are answered as fast as without tracing.
func TestDeadCollectorCostsNothing(t *testing.T) {
	for _, protocol := range []string{"http/protobuf", "grpc"} {
		t.Run(protocol, func(t *testing.T) {
			up, _ := serve(t, echoHandler("a"))
			gw := start(t, map[string]string{
				"OTEL_EXPORTER_OTLP_ENDPOINT": deadURL(t),
				"OTEL_EXPORTER_OTLP_PROTOCOL": protocol,
				"MAX_BURST_SIZE":              "1000", "MAX_REQUESTS_PER_SECOND": "1000",
				"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`),
			})
			t0 := time.Now()
			for range 200 {
				if resp, _ := get(t, gw.URL+"/x"); resp.StatusCode != 200 {
					t.Fatalf("status %d", resp.StatusCode)
				}
			}
			if d := time.Since(t0); d > 5*time.Second {
				t.Errorf("200 requests with a dead collector took %v", d)
			}
		})
	}
}

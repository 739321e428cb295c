package e2e

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// echoService answers FullDuplexCall message by message, and UnaryCall
// after the delay its request asks for (ResponseSize, in milliseconds).
type echoService struct {
	testpb.UnimplementedTestServiceServer
}

func (echoService) UnaryCall(ctx context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	select {
	case <-time.After(time.Duration(in.GetResponseSize()) * time.Millisecond):
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	return &testpb.SimpleResponse{Payload: in.GetPayload()}, nil
}

func (echoService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	for {
		in, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := stream.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// grpcBackend is a real gRPC server over cleartext HTTP/2 on loopback.
func grpcBackend(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	hs := health.NewServer()
	hs.SetServingStatus("orders", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	testpb.RegisterTestServiceServer(srv, echoService{})
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)
	return ln.Addr().String()
}

// gRPC through the gateway, end to end: a real gRPC client over TLS and
// HTTP/2 to the gateway, an h2c:// target to a real gRPC server. Unary
// calls, a bidirectional stream answered message by message (nothing is
// buffered), a status carried in trailers, a deadline, and the gateway's
// own refusals as gRPC statuses.
func TestGRPCProxiedEndToEnd(t *testing.T) {
	s := newTLSSetup(t)
	s.write(t, "gw", "gw", "gw.portcullis.test")
	up := grpcBackend(t)
	// The health service sits behind API-key auth and a route rate limit,
	// like any other route.
	p := startGateway(t, "TLS_CERTS_DIR="+s.dir, "API_KEYS=grpc-client-key-0123456789abcdef",
		`SERVICE_ROUTES=[{"prefix":"/grpc.testing.TestService","target_url":"h2c://`+up+`","strip_prefix":false},`+
			`{"prefix":"/grpc.health.v1.Health","target_url":"h2c://`+up+`","strip_prefix":false,"require_auth":true,"rate_limit_rps":0.001,"rate_limit_burst":3}]`)
	conn, err := grpc.NewClient(p.addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: s.ca.Pool(), ServerName: "gw.portcullis.test"})))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	hc := healthpb.NewHealthClient(conn)
	// Without credentials: the gateway's 401, as gRPC's UNAUTHENTICATED.
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "orders"}); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no credentials: %v, want Unauthenticated", err)
	}
	authed := metadata.AppendToOutgoingContext(ctx, "x-api-key", "grpc-client-key-0123456789abcdef")
	if r, err := hc.Check(authed, &healthpb.HealthCheckRequest{Service: "orders"}); err != nil || r.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("unary call: %v %v", r, err)
	}
	// The backend's own error status travels in its trailers.
	if _, err := hc.Check(authed, &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Errorf("a status in trailers: %v, want NotFound", err)
	}
	// The route's burst of 3 is spent (the refused call counted too): the
	// gateway's 429, as RESOURCE_EXHAUSTED.
	if _, err := hc.Check(authed, &healthpb.HealthCheckRequest{Service: "orders"}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("over the route limit: %v, want ResourceExhausted", err)
	}

	tc := testpb.NewTestServiceClient(conn)
	stream, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i, word := range []string{"one", "two", "three"} {
		// Each answer must come before the next message is sent: a
		// gateway that buffered the request body would stall here.
		if err := stream.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte(word)}}); err != nil {
			t.Fatal(err)
		}
		got, err := stream.Recv()
		if err != nil || string(got.GetPayload().GetBody()) != word {
			t.Fatalf("message %d: %q %v", i, got.GetPayload().GetBody(), err)
		}
	}
	if err := stream.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); !errors.Is(err, io.EOF) {
		t.Errorf("end of stream: %v", err)
	}

	// A deadline the backend cannot meet ends the call as DeadlineExceeded.
	short, cancelShort := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancelShort()
	if _, err := tc.UnaryCall(short, &testpb.SimpleRequest{ResponseSize: 3000}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("deadline: %v", err)
	}

	// No route: the gateway's 404, as UNIMPLEMENTED.
	err = conn.Invoke(ctx, "/nowhere.Service/Method", &healthpb.HealthCheckRequest{}, &healthpb.HealthCheckResponse{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("no route: %v, want Unimplemented", err)
	}
	_, metrics := get(t, p.opsURL("/metrics"))
	if sumMetric(metrics, "http_requests_total", `status="401"`) < 1 || sumMetric(metrics, "http_requests_total", `status="429"`) < 1 {
		t.Errorf("the refusal is not counted as a 401:\n%s", grepLines(metrics, "http_requests_total"))
	}
}

package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	goruntime "runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/telemetry"
)

type running struct {
	URL  string
	Addr string
	// OpsURL is the ops listener's (OPS_ADDR) base URL; the same as URL
	// when a test sets OPS_ADDR=public.
	OpsURL  string
	G       *Gateway
	Logs    *testutil.SyncBuffer
	cancel  context.CancelFunc
	done    chan error
	stopped bool
}

// stop cancels the gateway as a signal would and waits for Run to return.
func (r *running) stop(t *testing.T) {
	t.Helper()
	if r.stopped {
		return
	}
	r.stopped = true
	r.cancel()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		buf := make([]byte, 1<<20)
		t.Fatalf("gateway did not stop; goroutines:\n%s", buf[:goruntime.Stack(buf, true)])
	}
}

// start runs a gateway on a free loopback port with env as its environment.
func start(t *testing.T, env map[string]string) *running {
	t.Helper()
	return startWith(t, env, nil)
}

// startWith is start with a hook to adjust the gateway before it runs.
func startWith(t *testing.T, env map[string]string, adjust func(*Gateway)) *running {
	t.Helper()
	// Caching is off unless a test turns it on: the tests of other
	// features count what reaches the upstream, and their echo answers
	// would be stored (the cache's own tests are in cache_test.go).
	// Tests drive thousands of requests from loopback, an ordinary client
	// like any other: the per-IP limits are raised out of their way unless
	// a test sets its own.
	full := map[string]string{"GATEWAY_PORT": "127.0.0.1:0", "OPS_ADDR": "127.0.0.1:0", "LOG_LEVEL": "debug", "ENABLE_CACHING": "false",
		"MAX_REQUESTS_PER_SECOND": "1000000", "MAX_BURST_SIZE": "1000000", "DDOS_THRESHOLD": "100000000"}
	for k, v := range env {
		full[k] = v
	}
	var environ []string
	for k, v := range full {
		environ = append(environ, k+"="+v)
	}
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := full[k]; return v, ok }, environ)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	logs := &testutil.SyncBuffer{}
	g, err := New(cfg, telemetry.NewLogger(logs, slog.LevelDebug))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if adjust != nil {
		adjust(g)
		if err = rebuildPipeline(g); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{G: g, Logs: logs, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan [2]net.Addr, 1)
	go func() { r.done <- g.Run(ctx, func(a, ops net.Addr) { ready <- [2]net.Addr{a, ops} }) }()
	select {
	case a := <-ready:
		r.Addr = a[0].String()
		r.URL = "http://" + a[0].String()
		r.OpsURL = r.URL
		if a[1] != nil {
			r.OpsURL = "http://" + a[1].String()
		}
	case err := <-r.done:
		t.Fatalf("Run: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("gateway did not start")
	}
	t.Cleanup(func() {
		r.stop(t)
		if t.Failed() {
			t.Logf("gateway log:\n%s", logs.String())
		}
	})
	return r
}

// echo is what the echo backend saw.
type echo struct {
	Method  string      `json:"method"`
	Path    string      `json:"path"`
	RawPath string      `json:"raw_path"`
	Query   string      `json:"query"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
	BodyLen int         `json:"body_len"`
	Name    string      `json:"name"`
}

// echoHandler answers with what it received, as JSON.
func echoHandler(name string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echo{
			Method: r.Method, Path: r.URL.Path, RawPath: r.URL.EscapedPath(), Query: r.URL.RawQuery,
			Host: r.Host, Header: r.Header, BodyLen: len(body), Name: name,
		})
	}
}

// serve starts h on a loopback port and returns its URL.
func serve(t *testing.T, h http.Handler) (url string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	var once sync.Once
	stop = func() { once.Do(func() { srv.Close() }) }
	t.Cleanup(stop)
	return "http://" + ln.Addr().String(), stop
}

// deadURL returns a loopback URL on which nothing listens.
func deadURL(t *testing.T) string {
	t.Helper()
	return "http://" + testutil.DeadAddr(t)
}

func routes(rs ...string) string { return "[" + strings.Join(rs, ",") + "]" }

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func decodeEcho(t *testing.T, b []byte) echo {
	t.Helper()
	var e echo
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("decoding echo %q: %v", b, err)
	}
	return e
}

// rawRequest writes raw bytes on a fresh connection and returns everything
// read until the server closes the connection or the deadline passes.
func rawRequest(t *testing.T, addr, raw string, wait time.Duration) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c)
	closed := err == nil // EOF: the server closed the connection
	return string(b), closed
}

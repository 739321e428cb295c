package gateway

// Regression tests for defects found in review, each named after the bug.

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestPostRetriedAfterRefusedDialReachesLiveBackend(t *testing.T) {
	var got atomic.Value
	live := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got.Store(string(b))
	}))
	gw := start(t, map[string]string{
		"LOAD_BALANCING_ALGO": "round-robin",
		"CIRCUIT_BREAKER_MAX": "2",
		"SERVICE_ROUTES":      routes(`{"prefix":"/","target_url":"` + deadURL(t) + `,` + live + `"}`),
	})
	for i := range 6 { // half of them start on the dead backend
		body := fmt.Sprintf("order-%d", i)
		resp, err := client.Post(gw.URL+"/orders", "text/plain", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || got.Load() != body {
			t.Fatalf("POST %d: %d, backend got %q", i, resp.StatusCode, got.Load())
		}
	}
	if _, h := get(t, gw.OpsURL+"/health"); strings.Count(string(h), `"breaker": "open"`) > 1 {
		t.Errorf("the live backend's breaker opened: %s", h)
	}
}

func TestSlowUploadIsTheClientsFaultNotTheBackends(t *testing.T) {
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	gw := start(t, map[string]string{
		"CIRCUIT_BREAKER_MAX": "1",
		// Streamed: a buffered body would never reach the backend (see
		// TestDribbledBodyHoldsNoBackendConnection).
		"REQUEST_BUFFER_BYTES": "0",
		"SERVICE_ROUTES":       routes(`{"prefix":"/","target_url":"` + up + `","timeout_secs":0.3}`),
	})
	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n")
	done := make(chan struct{})
	go func() { // dribble a chunk every 100ms, well past the route timeout
		defer close(done)
		for range 8 {
			time.Sleep(100 * time.Millisecond)
			if _, err := io.WriteString(c, "1\r\na\r\n"); err != nil {
				return
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	<-done
	if resp.StatusCode != http.StatusRequestTimeout {
		t.Errorf("slow upload: %d, want 408", resp.StatusCode)
	}
	if _, h := get(t, gw.OpsURL+"/health"); !strings.Contains(string(h), `"breaker": "closed"`) {
		t.Errorf("a slow client opened the backend's breaker: %s", h)
	}
}

func TestClientThatStopsReadingIsCutOff(t *testing.T) {
	big := strings.Repeat("x", 32<<20)
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }))
	gw := startWith(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`),
	}, func(g *Gateway) { g.sendTimeout = 300 * time.Millisecond })
	d := net.Dialer{Control: nil}
	c, err := d.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4096)
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	// Never read. Within a few send timeouts the request must be over.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, h := get(t, gw.OpsURL+"/health")
		if strings.Contains(string(h), `"in_flight": 0`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a client that stopped reading still holds its request: %s", h)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestUpgradeHeaderAloneDoesNotEscapeInflightCap(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	stop := func() { once.Do(func() { close(release) }) }
	defer stop()
	slow := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	gw := start(t, map[string]string{
		"MAX_INFLIGHT":   "1",
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + slow + `"}`),
	})
	go func() {
		if resp, err := client.Get(gw.URL + "/slow"); err == nil {
			resp.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond)
	resp, _ := get(t, gw.URL+"/x", "Upgrade", "websocket")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("Upgrade without Connection: upgrade skipped the in-flight cap: %d", resp.StatusCode)
	}
	stop()
}

func TestTrailersAreNotForwarded(t *testing.T) {
	var trailer atomic.Value
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		trailer.Store(fmt.Sprint(r.Trailer))
	}))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`)})
	out, _ := rawRequest(t, gw.Addr, "POST /t HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTrailer: X-User-Id\r\n\r\n1\r\na\r\n0\r\nX-User-Id: admin\r\nX_Real_IP: 1.2.3.4\r\n\r\n", 2*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200") {
		t.Fatalf("got %q", firstLine(out))
	}
	if v, _ := trailer.Load().(string); strings.Contains(v, "admin") || strings.Contains(v, "1.2.3.4") {
		t.Errorf("client trailers reached the backend: %s", v)
	}
}

func TestHTTP10WithBodyClosesConnection(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`)})
	out, closed := rawRequest(t, gw.Addr, "POST /a HTTP/1.0\r\nHost: x\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\nhelloGET /smuggled HTTP/1.0\r\nHost: x\r\n\r\n", 2*time.Second)
	if n := strings.Count("\n"+out, "\nHTTP/1."); !closed || n > 1 {
		t.Errorf("HTTP/1.0 with a body: closed=%v, %d responses", closed, n)
	}
}

func TestRetryNotAttemptedWithoutTimeLeft(t *testing.T) {
	gw := start(t, map[string]string{
		"RETRY_MAX":      "3",
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + deadURL(t) + `,` + deadURL(t) + `,` + deadURL(t) + `","timeout_secs":0.12}`),
	})
	resp, body := get(t, gw.URL+"/x")
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("refused everywhere with no time for the backoff: %d %s, want 502", resp.StatusCode, body)
	}
}

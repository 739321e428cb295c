package gateway

import (
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A backend that closes idle keep-alive connections quickly (Node's default
// is 5s): every POST after an idle pause still reaches it exactly once, and
// none is answered 502 because the gateway sent it on a connection the
// backend had closed.
func TestUpstreamIdleCloseNoFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var hits, conns atomic.Int32
	srv := &http.Server{
		IdleTimeout: 20 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			hits.Add(1)
			io.WriteString(w, "ok")
		}),
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"http://` + ln.Addr().String() + `"}`),
	})
	post := func() int {
		resp, err := client.Post(gw.URL+"/x", "text/plain", strings.NewReader(strings.Repeat("b", 100<<10)))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	sent := 0
	for round := range 5 {
		// A few at once fill the pool; then the backend closes them all.
		var wg sync.WaitGroup
		for range 4 {
			sent++
			wg.Go(func() {
				if code := post(); code != 200 {
					t.Errorf("round %d: status %d", round, code)
				}
			})
		}
		wg.Wait()
		time.Sleep(60 * time.Millisecond)
	}
	if got := int(hits.Load()); got != sent {
		t.Errorf("backend saw %d requests, sent %d", got, sent)
	}
	if conns.Load() < 5 {
		t.Errorf("only %d backend connections: the backend did not close idle ones, the test proves nothing", conns.Load())
	}
}

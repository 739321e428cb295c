package recovery

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"

	"github.com/portcullis/portcullis/internal/middleware/requestid"
	"github.com/portcullis/portcullis/internal/request"
)

// serve runs mux behind begin (request.New) → request id → recovery on a
// real server, and returns the server and its log.
func serve(t *testing.T, mux http.Handler) (*httptest.Server, *testutil.SyncBuffer) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, nil))
	inner := requestid.New(requestid.NewGenerator())(New(log)(mux))
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		inner.ServeHTTP(in.Writer(), r)
	}))
	// net/http logs the re-raised ErrAbortHandler nowhere, but keep any
	// other server complaint out of the test output.
	srv.Config.ErrorLog = slog.NewLogLogger(slog.NewTextHandler(io.Discard, nil), slog.LevelError)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, logs
}

func testMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
	mux.HandleFunc("/panic", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Partial", "yes")
		panic("boom")
	})
	mux.HandleFunc("/panic-error", func(w http.ResponseWriter, r *http.Request) { panic(fmt.Errorf("wrapped: %w", io.EOF)) })
	mux.HandleFunc("/abort", func(w http.ResponseWriter, r *http.Request) { panic(http.ErrAbortHandler) })
	mux.HandleFunc("/late-panic", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "partial")
		w.(http.Flusher).Flush()
		panic("late boom")
	})
	return mux
}

func TestPanicBecomes500(t *testing.T) {
	srv, logs := serve(t, testMux())
	for _, path := range []string{"/panic", "/panic-error"} {
		t.Run(path, func(t *testing.T) {
			resp, err := http.Get(srv.URL + path)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusInternalServerError {
				t.Fatalf("status %d, want 500", resp.StatusCode)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q, want application/json", ct)
			}
			if !resp.Close {
				t.Errorf("response does not close the connection (Connection: %q)", resp.Header.Get("Connection"))
			}
			var got struct {
				Error     string `json:"error"`
				RequestID string `json:"request_id"`
			}
			if err := json.Unmarshal(body, &got); err != nil {
				t.Fatalf("body %q is not JSON: %v", body, err)
			}
			id := resp.Header.Get(requestid.Header)
			if got.RequestID == "" || got.RequestID != id {
				t.Errorf("request_id %q, want the response's %s %q", got.RequestID, requestid.Header, id)
			}
			if got.Error == "" || strings.Contains(string(body), "boom") {
				t.Errorf("error message %q: want a generic message that does not leak the panic value", got.Error)
			}
			if !strings.Contains(logs.String(), id) {
				t.Errorf("log does not name request %q: %s", id, logs.String())
			}
		})
	}
}

func TestServerKeepsServingAfterPanic(t *testing.T) {
	srv, _ := serve(t, testMux())
	c := srv.Client()
	for i := range 5 {
		for _, tc := range []struct {
			path   string
			status int
		}{
			{path: "/panic", status: http.StatusInternalServerError},
			{path: "/ok", status: http.StatusOK},
		} {
			resp, err := c.Get(srv.URL + tc.path)
			if err != nil {
				t.Fatalf("round %d %s: %v", i, tc.path, err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.status {
				t.Fatalf("round %d %s: status %d, want %d", i, tc.path, resp.StatusCode, tc.status)
			}
		}
	}
}

func TestErrAbortHandlerIsReraised(t *testing.T) {
	srv, logs := serve(t, testMux())
	resp, err := srv.Client().Get(srv.URL + "/abort")
	if err == nil {
		resp.Body.Close()
		t.Fatalf("got status %d; want the connection aborted (client error), not an answer", resp.StatusCode)
	}
	if strings.Contains(logs.String(), "panic serving request") {
		t.Errorf("ErrAbortHandler logged as a panic: %s", logs.String())
	}
	// The server is still there.
	resp, err = srv.Client().Get(srv.URL + "/ok")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("after abort: status %d, want 200", resp.StatusCode)
	}
}

// latePanic sends GET /late-panic and returns the raw response bytes.
func latePanic(t *testing.T) []byte {
	t.Helper()
	srv, _ := serve(t, testMux())
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, "GET /late-panic HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(conn) // until the server closes or the deadline
	return raw
}

// A panic after the header went out cannot become a 500: no second header
// (no "superfluous WriteHeader", no JSON appended to the body).
func TestPanicAfterHeaderSent(t *testing.T) {
	raw := latePanic(t)
	if n := bytes.Count(raw, []byte("HTTP/1.1 ")); n != 1 {
		t.Fatalf("got %d status lines, want 1:\n%s", n, raw)
	}
	if !bytes.HasPrefix(raw, []byte("HTTP/1.1 202 ")) {
		t.Fatalf("want the 202 the handler sent first:\n%s", raw)
	}
	if bytes.Contains(raw, []byte("internal error")) || bytes.Contains(raw, []byte("request_id")) {
		t.Fatalf("an error body was appended to the sent response:\n%s", raw)
	}
}

// Regression: a response cut short by a panic must be visibly truncated (as
// without this middleware, where net/http aborts the connection), not end in
// a clean chunked terminator that makes the partial body look complete.
func TestPanicAfterHeaderSentAbortsResponse(t *testing.T) {
	raw := latePanic(t)
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Errorf("a panic after the header was sent ended the chunked body cleanly: the truncated 202 body %q looks complete; "+
			"want the response aborted (http.ErrAbortHandler) so the truncation is visible", body)
	}
}

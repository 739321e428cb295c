package sanitize

import (
	"bufio"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/request"
)

// serve runs sanitize in front of a handler that echoes the request headers
// it received as JSON.
func serve(t *testing.T) *httptest.Server {
	t.Helper()
	inner := New()(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(r.Header)
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		inner.ServeHTTP(in.Writer(), r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// roundTrip writes raw on a fresh connection and reads one response.
func roundTrip(t *testing.T, srv *httptest.Server, raw string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response: %v", err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, body
}

func TestSanitize(t *testing.T) {
	long := func(n int) string { return "/" + strings.Repeat("a", n-1) }
	tests := []struct {
		name      string
		target    string   // request-target; "/" if empty
		headers   []string // raw header lines
		body      string   // raw body (after the blank line)
		status    int
		absent    []string // headers the handler must not see
		present   []string // headers the handler must see
		connClose bool     // the response must close the connection
	}{
		{name: "plain request passes", status: 200},
		{name: "request target of 8 KiB accepted", target: long(MaxRequestTarget), status: 200},
		{name: "request target over 8 KiB is 414", target: long(MaxRequestTarget + 1), status: 414, connClose: true},
		{name: "long query counts too", target: "/?q=" + strings.Repeat("b", MaxRequestTarget), status: 414, connClose: true},
		{name: "single Authorization passes", headers: []string{"Authorization: Bearer a"}, status: 200, present: []string{"Authorization"}},
		{name: "duplicate Authorization is 400", headers: []string{"Authorization: Bearer a", "Authorization: Bearer b"}, status: 400},
		{name: "differently-cased duplicate Authorization is 400", headers: []string{"authorization: Bearer a", "AUTHORIZATION: Bearer b"}, status: 400},
		{name: "duplicate X-API-Key is 400", headers: []string{"X-API-Key: a", "X-API-Key: b"}, status: 400},
		{name: "differently-cased duplicate X-API-Key is 400", headers: []string{"x-api-key: a", "X-Api-Key: b"}, status: 400},
		{name: "identical duplicate X-API-Key is 400", headers: []string{"X-API-Key: a", "x-API-key: a"}, status: 400},
		{name: "Authorization plus X-API-Key passes", headers: []string{"Authorization: Bearer a", "X-API-Key: k"}, status: 200, present: []string{"Authorization", "X-Api-Key"}},
		{
			name:    "underscore headers removed",
			headers: []string{"X_Real_IP: 6.6.6.6", "X_Forwarded_For: 6.6.6.6", "x_user_id: admin", "Foo_Bar: 1", "X-Real-IP: 1.1.1.1"},
			status:  200,
			absent:  []string{"X_real_ip", "X_forwarded_for", "X_user_id", "Foo_bar"},
			present: []string{"X-Real-Ip"},
		},
		{
			name:    "identity headers removed",
			headers: []string{"X-User-ID: admin", "x-auth-method: jwt", "X-USER-ID: root"},
			status:  200,
			absent:  []string{"X-User-Id", "X-Auth-Method"},
		},
		{
			name:    "h2c upgrade removed with HTTP2-Settings",
			headers: []string{"Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c", "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA"},
			status:  200,
			absent:  []string{"Upgrade", "Http2-Settings"},
		},
		{
			name:    "mixed h2c and websocket upgrade removed",
			headers: []string{"Connection: Upgrade", "Upgrade: websocket, h2c"},
			status:  200,
			absent:  []string{"Upgrade"},
		},
		{
			name:    "websocket upgrade kept",
			headers: []string{"Connection: Upgrade", "Upgrade: websocket", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"},
			status:  200,
			present: []string{"Upgrade", "Sec-Websocket-Key"},
		},
		{
			name:      "chunked request closes the connection",
			headers:   []string{"Transfer-Encoding: chunked"},
			body:      "5\r\nhello\r\n0\r\n\r\n",
			status:    200,
			connClose: true,
		},
		{
			name:      "Content-Length with chunked closes the connection",
			headers:   []string{"Content-Length: 3", "Transfer-Encoding: chunked"},
			body:      "5\r\nhello\r\n0\r\n\r\n",
			status:    200,
			connClose: true,
		},
		{
			name:    "Content-Length request keeps the connection",
			headers: []string{"Content-Length: 5"},
			body:    "hello",
			status:  200,
		},
	}
	srv := serve(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			target := tc.target
			if target == "" {
				target = "/"
			}
			method := "GET"
			if tc.body != "" {
				method = "POST"
			}
			raw := method + " " + target + " HTTP/1.1\r\nHost: example.test\r\n"
			for _, h := range tc.headers {
				raw += h + "\r\n"
			}
			raw += "\r\n" + tc.body
			resp, body := roundTrip(t, srv, raw)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d; body %s", resp.StatusCode, tc.status, body)
			}
			if resp.Close != tc.connClose {
				t.Errorf("connection close = %v, want %v (Connection: %q)", resp.Close, tc.connClose, resp.Header.Get("Connection"))
			}
			if tc.status != 200 {
				var e struct{ Error string }
				if err := json.Unmarshal(body, &e); err != nil || e.Error == "" {
					t.Errorf("error body %q is not the gateway's JSON error", body)
				}
				return
			}
			var seen http.Header
			if err := json.Unmarshal(body, &seen); err != nil {
				t.Fatalf("echo body %q: %v", body, err)
			}
			for _, k := range tc.absent {
				if v, ok := seen[k]; ok {
					t.Errorf("handler saw %s: %q, want it removed", k, v)
				}
			}
			for _, k := range tc.present {
				if _, ok := seen[k]; !ok {
					t.Errorf("handler did not see %s; got %v", k, seen)
				}
			}
			for k := range seen {
				if strings.Contains(k, "_") {
					t.Errorf("underscore header %q reached the handler", k)
				}
			}
		})
	}
}

// No request may ride behind a chunked one on the same connection.
func TestChunkedRequestNoPipelinedSecond(t *testing.T) {
	srv := serve(t)
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	raw := "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
		"GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatal(err)
	}
	all, _ := io.ReadAll(conn)
	if n := strings.Count(string(all), "HTTP/1.1 "); n != 1 {
		t.Fatalf("got %d responses on the connection, want 1:\n%s", n, all)
	}
}

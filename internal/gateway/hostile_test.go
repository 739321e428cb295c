package gateway

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHostileInput sends raw requests that net/http alone would mishandle
// (docs/request-path.md, "Hostile input") and checks what the gateway answers and what,
// if anything, reaches the backend.
func TestHostileInput(t *testing.T) {
	var seen atomic.Value // last echo seen by the backend
	var hits atomic.Int64
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		body, _ := io.ReadAll(r.Body)
		seen.Store(echo{Path: r.URL.Path, Header: r.Header.Clone(), BodyLen: len(body)})
		w.Write([]byte("ok"))
	}))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES": "10.99.99.99/32",
		"SERVICE_ROUTES":  routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	tests := []struct {
		name       string
		raw        string
		wantStatus string // prefix of the status line
		wantClosed bool
		forwarded  bool
		check      func(t *testing.T, e echo)
	}{
		{
			name:       "CL with TE: read as chunked, connection closed, smuggled request never served",
			raw:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: "HTTP/1.1 200", wantClosed: true, forwarded: true,
			check: func(t *testing.T, e echo) {
				if e.Path == "/smuggled" {
					t.Error("the smuggled request reached the backend")
				}
			},
		},
		{
			name:       "differing duplicate Content-Length",
			raw:        "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde",
			wantStatus: "HTTP/1.1 400", wantClosed: true,
		},
		{
			name:       "bad chunk size",
			raw:        "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n",
			wantStatus: "HTTP/1.1 400", wantClosed: true,
		},
		{
			name:       "percent-encoded slash",
			raw:        "GET /a%2F..%2Fb HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: "HTTP/1.1 400",
		},
		{
			name:       "percent-encoded NUL",
			raw:        "GET /a%00b HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: "HTTP/1.1 400",
		},
		{
			name:       "path parameter used for traversal",
			raw:        "GET /api/public/..;/secure/x HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: "HTTP/1.1 400",
		},
		{
			name:       "encoded semicolon",
			raw:        "GET /api/secure%3bjsessionid=1/x HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: "HTTP/1.1 400",
		},
		{
			name:       "duplicate Authorization",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer a\r\nAuthorization: Bearer b\r\n\r\n",
			wantStatus: "HTTP/1.1 400",
		},
		{
			name:       "duplicate X-API-Key in different case",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nX-API-Key: a\r\nx-api-key: b\r\n\r\n",
			wantStatus: "HTTP/1.1 400",
		},
		{
			name:       "request line over 8 KiB",
			raw:        "GET /" + strings.Repeat("a", 9000) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			wantStatus: "HTTP/1.1 414", wantClosed: true,
		},
		{
			name:       "header block over 64 KiB",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 70000) + "\r\n\r\n",
			wantStatus: "HTTP/1.1 431", wantClosed: true,
		},
		{
			name:       "h2c upgrade is stripped",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n",
			wantStatus: "HTTP/1.1 200", forwarded: true,
			check: func(t *testing.T, e echo) {
				if e.Header.Get("Upgrade") != "" || e.Header.Get("Http2-Settings") != "" {
					t.Errorf("backend saw Upgrade %q / HTTP2-Settings %q", e.Header.Get("Upgrade"), e.Header.Get("Http2-Settings"))
				}
			},
		},
		{
			name:       "underscore twins and identity headers dropped",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nX_Real_IP: 6.6.6.6\r\nX_Forwarded_For: 6.6.6.6\r\nX-User-ID: root\r\nx-auth-method: jwt\r\n\r\n",
			wantStatus: "HTTP/1.1 200", forwarded: true,
			check: func(t *testing.T, e echo) {
				for k := range e.Header {
					if strings.Contains(k, "_") || k == "X-User-Id" || k == "X-Auth-Method" {
						t.Errorf("backend saw %s: %q", k, e.Header[k])
					}
				}
				if e.Header.Get("X-Real-Ip") != "127.0.0.1" {
					t.Errorf("X-Real-Ip = %q", e.Header.Get("X-Real-Ip"))
				}
			},
		},
		{
			name:       "Connection naming gateway headers does not remove them",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nConnection: X-Forwarded-For, X-Real-IP, X-Request-ID, X-Forwarded-Proto\r\n\r\n",
			wantStatus: "HTTP/1.1 200", forwarded: true,
			check: func(t *testing.T, e echo) {
				for _, k := range []string{"X-Forwarded-For", "X-Real-Ip", "X-Request-Id", "X-Forwarded-Proto"} {
					if e.Header.Get(k) == "" {
						t.Errorf("%s was removed by the client's Connection header", k)
					}
				}
			},
		},
		{
			name:       "control characters in X-Request-ID replaced",
			raw:        "GET /a HTTP/1.1\r\nHost: x\r\nX-Request-ID: evil\x01id\r\n\r\n",
			wantStatus: "HTTP/1.1 400", // net/http refuses control bytes in header values
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			out, closed := rawRequest(t, gw.Addr, tc.raw, 2*time.Second)
			if !strings.HasPrefix(out, tc.wantStatus) {
				t.Fatalf("got %q, want %s", firstLine(out), tc.wantStatus)
			}
			if tc.wantClosed && !closed {
				t.Error("connection left open")
			}
			if strings.Count(out, "HTTP/1.1 ") > 1 {
				t.Errorf("more than one response on the connection: %q", out)
			}
			forwarded := hits.Load() > before
			if forwarded != tc.forwarded {
				t.Errorf("forwarded = %v, want %v", forwarded, tc.forwarded)
			}
			if tc.check != nil && forwarded {
				tc.check(t, seen.Load().(echo))
			}
		})
	}
}

func TestLongRequestIDReplaced(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`)})
	for _, id := range []string{strings.Repeat("a", 129), "has space", "semi;colon"} {
		resp, body := get(t, gw.URL+"/x", "X-Request-ID", id)
		got := resp.Header.Get("X-Request-Id")
		if got == id || got == "" {
			t.Errorf("client id %q kept or missing: %q", id, got)
		}
		if up := decodeEcho(t, body).Header.Get("X-Request-Id"); up != got {
			t.Errorf("upstream saw id %q, client got %q", up, got)
		}
	}
}

// TestWebSocketPassesAndGetsGoingAwayOnShutdown upgrades through the
// gateway to a raw WebSocket-speaking backend, then stops the gateway and
// expects a close frame with status 1001.
func TestWebSocketPassesAndGetsGoingAwayOnShutdown(t *testing.T) {
	up := mustServe(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" {
			http.Error(w, "want websocket", 400)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: x\r\n\r\n")
		brw.Flush()
		io.Copy(c, brw) // echo bytes back
	}))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/ws","target_url":"` + up + `"}`)})
	c, err := net.Dial("tcp", gw.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /ws/chat HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", err, resp)
	}
	io.WriteString(c, "ping")
	buf := make([]byte, 4)
	if _, err := io.ReadFull(br, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo through the tunnel: %q %v", buf, err)
	}
	gw.stop(t)
	rest, _ := io.ReadAll(br)
	if !bytes.Contains(rest, []byte{0x88, 0x02, 0x03, 0xE9}) {
		t.Errorf("no 1001 close frame on shutdown; got %x", rest)
	}
}

package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// diffCase is one exchange through the proxy. run checks what the case is
// about on the client it is given, and returns what a client of the
// gateway observed: TestProxySameOnBothClients then requires both clients
// to produce the same transcript, so a difference the case did not think
// of asserting still shows.
type diffCase struct {
	name string
	run  func(t *testing.T, c Client) string
}

// TestProxySameOnBothClients runs every case on http.Transport and on
// SyncClient, each against real loopback backends.
// newHeadBackend is a raw backend that reads each connection's request
// head, then leaves the rest (the body, the answer) to write.
func newHeadBackend(t testing.TB, write func(c net.Conn, br *bufio.Reader)) *testutil.RawBackend {
	t.Helper()
	return testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		write(c, br)
	})
}

func TestProxySameOnBothClients(t *testing.T) {
	for _, tc := range diffCases {
		t.Run(tc.name, func(t *testing.T) {
			seen := make([]string, len(upstreamClients))
			ok := true
			for i, uc := range upstreamClients {
				ok = t.Run(uc.name, func(t *testing.T) {
					c := uc.new()
					t.Cleanup(c.CloseIdleConnections)
					seen[i] = tc.run(t, c)
				}) && ok
			}
			if ok && seen[0] != seen[1] {
				t.Errorf("the clients differ:\n--- %s\n%s\n--- %s\n%s", upstreamClients[0].name, seen[0], upstreamClients[1].name, seen[1])
			}
		})
	}
}

func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s
}

// payload is n deterministic bytes.
func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i*7%26)
	}
	return b
}

// echoBody answers with what the backend received: the framing of the
// request body and the body itself.
func echoBody(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	w.Header().Set("X-Seen", fmt.Sprintf("%s length=%d te=%v expect=%q sum=%x", r.Method, r.ContentLength, r.TransferEncoding,
		r.Header.Get("Expect"), sha256.Sum256(body)))
	w.Write(body)
}

func want(t *testing.T, what string, got, want any) {
	t.Helper()
	if got != want {
		t.Errorf("%s: got %v, want %v", what, got, want)
	}
}

var diffCases = []diffCase{
	{"GET", func(t *testing.T, c Client) string {
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen", fmt.Sprintf("%s %s xff=%s real-ip=%s ua=%q ae=%q conn=%q", r.Method, r.URL.RequestURI(),
				r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Real-Ip"), r.UserAgent(), r.Header.Get("Accept-Encoding"), r.Header.Get("Connection")))
			io.WriteString(w, "hello")
		})
		f := newFront(t, c, be.URL, routeOpts{})
		a := f.get(t, "/a/b?q=1&r=%2F")
		want(t, "status", a.status, 200)
		want(t, "body", a.body, "hello")
		want(t, "what the backend saw", a.header.Get("X-Seen"),
			`GET /a/b?q=1&r=%2F xff=127.0.0.1 real-ip=127.0.0.1 ua="Go-http-client/1.1" ae="" conn=""`)
		return a.String()
	}},

	{"POST with a body", func(t *testing.T, c Client) string {
		be := serve(t, echoBody)
		f := newFront(t, c, be.URL, routeOpts{})
		body := payload(100 << 10)
		req, _ := http.NewRequest(http.MethodPost, f.url("/upload"), bytes.NewReader(body))
		a := f.do(t, req)
		want(t, "status", a.status, 200)
		want(t, "body echoed", a.body, string(body))
		want(t, "what the backend saw", a.header.Get("X-Seen"), fmt.Sprintf(`POST length=%d te=[] expect="" sum=%x`, len(body), sha256.Sum256(body)))
		return a.String()
	}},

	// A chunked body the proxy streams (REQUEST_BUFFER_BYTES=0) goes on
	// chunked; one it buffers goes with its length.
	{"chunked request body, streamed", func(t *testing.T, c Client) string {
		return chunkedUpload(t, c, routeOpts{stream: true}, "te=[chunked]")
	}},
	{"chunked request body, buffered", func(t *testing.T, c Client) string {
		return chunkedUpload(t, c, routeOpts{}, "te=[]")
	}},

	// The first part reaches the client before the backend writes the
	// second: nothing in between holds the answer back.
	{"streamed response", func(t *testing.T, c Client) string {
		next := make(chan struct{})
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, "first\n")
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
			io.WriteString(w, "second\n")
		})
		f := newFront(t, c, be.URL, routeOpts{})
		resp, err := f.client.Get(f.url("/stream"))
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("first part: %v", err)
		}
		want(t, "first part", line, "first\n")
		close(next)
		rest, err := io.ReadAll(br)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		want(t, "second part", string(rest), "second\n")
		a := answer{status: resp.StatusCode, header: resp.Header, contentLength: resp.ContentLength, body: line + string(rest)}
		return a.String()
	}},

	// The client waits for 100 Continue before it sends its body (as curl
	// does). The gateway reads the body to buffer it, which sends the
	// first 100; the backend's own 100 is forwarded too.
	{"100-continue", func(t *testing.T, c Client) string {
		be := serve(t, echoBody)
		f := newFront(t, c, be.URL, routeOpts{})
		conn, br := f.dial(t)
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: gateway\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "status before the body", resp.StatusCode, 100)
		io.WriteString(conn, "hello")
		codes := []int{resp.StatusCode}
		for resp.StatusCode < 200 {
			if resp, err = http.ReadResponse(br, nil); err != nil {
				t.Fatal(err)
			}
			codes = append(codes, resp.StatusCode)
		}
		a := readAnswer(resp)
		want(t, "final status", a.status, 200)
		want(t, "body", a.body, "hello")
		want(t, "the backend was asked to continue", strings.Contains(a.header.Get("X-Seen"), `expect="100-continue"`), true)
		return fmt.Sprintf("statuses %v\n%s", codes, a)
	}},

	// With the body streamed, the client's 100 may come from the gateway
	// (its server sends one when the body is first read) or be the
	// backend's forwarded, or both: which, and in what number, is a race
	// in net/http whichever client runs, so only the order is compared.
	{"100-continue, streamed body", func(t *testing.T, c Client) string {
		be := serve(t, echoBody)
		f := newFront(t, c, be.URL, routeOpts{stream: true})
		conn, br := f.dial(t)
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: gateway\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "status before the body", resp.StatusCode, 100)
		io.WriteString(conn, "hello")
		for resp.StatusCode < 200 {
			if resp, err = http.ReadResponse(br, nil); err != nil {
				t.Fatal(err)
			}
		}
		a := readAnswer(resp)
		want(t, "final status", a.status, 200)
		want(t, "body", a.body, "hello")
		return fmt.Sprintf("100 first\n%s", a)
	}},

	// A backend that refuses an upload on its header alone, without
	// asking for the body, spares the client sending it: the gateway
	// passes the refusal on without a 100 Continue of its own.
	{"100-continue refused by the backend", func(t *testing.T, c Client) string {
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\nwho?")
		})
		f := newFront(t, c, be.URL(), routeOpts{stream: true})
		conn, br := f.dial(t)
		io.WriteString(conn, "POST /upload HTTP/1.1\r\nHost: gateway\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "status", resp.StatusCode, http.StatusUnauthorized)
		a := readAnswer(resp)
		want(t, "body", a.body, "who?")
		return a.String()
	}},

	{"103 Early Hints", func(t *testing.T, c Client) string {
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Link", "</style.css>; rel=preload; as=style")
			w.WriteHeader(http.StatusEarlyHints)
			w.Header().Del("Link")
			io.WriteString(w, "page")
		})
		f := newFront(t, c, be.URL, routeOpts{})
		var hints []string
		req, _ := http.NewRequest(http.MethodGet, f.url("/page"), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				hints = append(hints, fmt.Sprintf("%d %s", code, h.Get("Link")))
				return nil
			},
		}))
		a := f.do(t, req)
		want(t, "status", a.status, 200)
		want(t, "hints", fmt.Sprint(hints), "[103 </style.css>; rel=preload; as=style]")
		return fmt.Sprintf("hints %q\n%s", hints, a)
	}},

	// A backend may send any number of interim answers; the transport
	// hands every one to ReverseProxy, which forwards it.
	{"many interim answers", func(t *testing.T, c Client) string {
		const n = 100
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n", n)+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			io.Copy(io.Discard, br)
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		var hints atomic.Int32
		req, _ := http.NewRequest(http.MethodGet, f.url("/"), nil)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			Got1xxResponse: func(int, textproto.MIMEHeader) error { hints.Add(1); return nil },
		}))
		a := f.do(t, req)
		want(t, "status", a.status, 200)
		want(t, "interim answers forwarded", int(hints.Load()), n)
		return fmt.Sprintf("%d hints\n%s", hints.Load(), a)
	}},

	{"101 upgrade", func(t *testing.T, c Client) string {
		be := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			if req.Header.Get("Upgrade") != "websocket" {
				io.WriteString(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
				return
			}
			// The switch and the first frame in one write.
			io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello ")
			io.Copy(c, br) // echo
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		conn, br := f.dial(t)
		io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: gateway\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		want(t, "status", resp.StatusCode, http.StatusSwitchingProtocols)
		io.WriteString(conn, "world")
		got := make([]byte, len("hello world"))
		if _, err := io.ReadFull(br, got); err != nil {
			t.Fatalf("reading the echo: %v", err)
		}
		want(t, "echo", string(got), "hello world")
		var b strings.Builder
		fmt.Fprintf(&b, "%d\n", resp.StatusCode)
		writeHeader(&b, resp.Header)
		fmt.Fprintf(&b, "echo %q", got)
		return b.String()
	}},

	// The backend hangs up each connection after one answer, as one whose
	// keep-alive timeout is shorter than ours: no request may fail for it.
	{"backend closes an idle connection", func(t *testing.T, c Client) string {
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		var b strings.Builder
		for i := range 3 {
			a := f.get(t, "/")
			want(t, fmt.Sprint("status of request ", i), a.status, 200)
			b.WriteString(a.String())
			be.WaitClosed(t, 1)
		}
		want(t, "backend connections", int(be.Conns()), 3)
		return b.String()
	}},

	// The backend closes a kept connection just as the next request
	// reaches it (both idle timeouts raced): a GET is sent again on a new
	// connection rather than failed.
	{"backend closes a connection as a request arrives", func(t *testing.T, c Client) string {
		be := testutil.NewRawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
			if n > 1 {
				testutil.ServeOK(n, c, br)
				return
			}
			for i := 0; ; i++ {
				if _, err := http.ReadRequest(br); err != nil || i == 1 {
					return // the second request: read, then hang up
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		first, second := f.get(t, "/"), f.get(t, "/")
		want(t, "first status", first.status, 200)
		want(t, "second status", second.status, 200)
		want(t, "backend connections", int(be.Conns()), 2)
		return first.String() + second.String()
	}},

	{"backend resets in the answer's header", func(t *testing.T, c Client) string {
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Len")
			reset(c)
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		a := f.get(t, "/")
		want(t, "status", a.status, http.StatusBadGateway)
		want(t, "body", a.body, `{"error":"upstream connection failed","request_id":"req-1"}`+"\n")
		return a.String()
	}},

	// Once the header went out, a reset can only cut the client's body
	// short.
	{"backend resets in the answer's body", func(t *testing.T, c Client) string {
		gotPart := make(chan struct{})
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			// With a Content-Type: otherwise the gateway's server sniffs
			// one from the first part, unless ReverseProxy's immediate
			// flush of a streamed header wins the race, whichever the
			// client.
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nTransfer-Encoding: chunked\r\n\r\n7\r\npartial\r\n")
			select {
			case <-gotPart:
			case <-time.After(5 * time.Second):
			}
			reset(c)
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		resp, err := f.client.Get(f.url("/"))
		if err != nil {
			t.Fatal(err)
		}
		part := make([]byte, len("partial"))
		if _, err := io.ReadFull(resp.Body, part); err != nil {
			t.Fatal(err)
		}
		close(gotPart)
		a := readAnswer(resp)
		a.body = string(part) + a.body
		want(t, "status", a.status, 200)
		want(t, "body", a.body, "partial")
		want(t, "body cut short", a.cut, true)
		return a.String()
	}},

	{"backend slower than the route timeout", func(t *testing.T, c Client) string {
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done() // the gateway gives up and hangs up
		})
		f := newFront(t, c, be.URL, routeOpts{timeout: 100 * time.Millisecond})
		start := time.Now()
		a := f.get(t, "/")
		want(t, "status", a.status, http.StatusGatewayTimeout)
		want(t, "body", a.body, `{"error":"upstream timeout","request_id":"req-1"}`+"\n")
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the 504 took %v", d)
		}
		return a.String()
	}},

	// Past the header, the route timeout bounds each wait for the body:
	// a stream that stalls longer is cut.
	{"stalled stream cut after the route timeout", func(t *testing.T, c Client) string {
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "start")
			w.(http.Flusher).Flush()
			<-r.Context().Done()
		})
		f := newFront(t, c, be.URL, routeOpts{timeout: 200 * time.Millisecond})
		start := time.Now()
		a := f.get(t, "/")
		want(t, "status", a.status, 200)
		want(t, "body", a.body, "start")
		want(t, "body cut short", a.cut, true)
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("the stalled stream was cut after %v", d)
		}
		return a.String()
	}},

	// A backend may answer an upload before reading it (a 413 on the
	// declared size) and read nothing more: the answer reaches the client
	// although neither the backend nor the socket buffers take the body.
	{"early answer to an upload the backend does not read", func(t *testing.T, c Client) string {
		release := make(chan struct{})
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: text/plain\r\nContent-Length: 8\r\n\r\ntoo big\n")
			<-release
		})
		t.Cleanup(func() { close(release) }) // before the backend's own cleanup
		f := newFront(t, c, be.URL(), routeOpts{stream: true})
		req, _ := http.NewRequest(http.MethodPost, f.url("/upload"), bytes.NewReader(make([]byte, maxTestBody)))
		a := f.do(t, req)
		want(t, "status", a.status, http.StatusRequestEntityTooLarge)
		want(t, "body", a.body, "too big\n")
		return a.String()
	}},

	{"response header over 64 KiB", func(t *testing.T, c Client) string {
		return bigHeader(t, c, 70<<10, http.StatusBadGateway)
	}},
	{"response header under 64 KiB", func(t *testing.T, c Client) string {
		return bigHeader(t, c, 60<<10, http.StatusOK)
	}},

	// The gateway neither asks for compression nor undoes it.
	{"gzip body passes through", func(t *testing.T, c Client) string {
		var gz bytes.Buffer
		zw := gzip.NewWriter(&gz)
		zw.Write(bytes.Repeat([]byte("compress me "), 100))
		zw.Close()
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen-Accept-Encoding", r.Header.Get("Accept-Encoding"))
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/plain")
			w.Write(gz.Bytes())
		})
		f := newFront(t, c, be.URL, routeOpts{})
		plain := f.get(t, "/")
		req, _ := http.NewRequest(http.MethodGet, f.url("/"), nil)
		req.Header.Set("Accept-Encoding", "gzip")
		asked := f.do(t, req)
		for _, a := range []answer{plain, asked} {
			want(t, "status", a.status, 200)
			want(t, "Content-Encoding", a.header.Get("Content-Encoding"), "gzip")
			want(t, "body is the backend's gzip", a.body, gz.String())
		}
		want(t, "Accept-Encoding added", plain.header.Get("X-Seen-Accept-Encoding"), "")
		want(t, "Accept-Encoding forwarded", asked.header.Get("X-Seen-Accept-Encoding"), "gzip")
		return plain.String() + asked.String()
	}},

	// The backend's Connection: close ends its connection, not the
	// client's: each request gets a new backend connection, and the
	// client keeps its own.
	{"Connection: close from the backend", func(t *testing.T, c Client) string {
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
			io.Copy(io.Discard, br) // until the gateway hangs up
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		var b strings.Builder
		for i := range 3 {
			var reused bool
			req, _ := http.NewRequest(http.MethodGet, f.url("/"), nil)
			req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
				GotConn: func(ci httptrace.GotConnInfo) { reused = ci.Reused },
			}))
			a := f.do(t, req)
			want(t, "status", a.status, 200)
			want(t, "client connection reused", reused, i > 0)
			b.WriteString(a.String())
			be.WaitClosed(t, 1) // the gateway closed it
		}
		want(t, "backend connections", int(be.Conns()), 3)
		return b.String()
	}},

	// upstream_keepalive: false (req.Close): each request says
	// Connection: close and has a connection of its own, which the gateway
	// closes after the answer even though the backend would keep it.
	{"upstream_keepalive false", func(t *testing.T, c Client) string {
		conn := make(chan string, 10)
		be := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
			for {
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				conn <- req.Header.Get("Connection")
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
			}
		})
		f := newFront(t, c, be.URL(), routeOpts{noKeepalive: true})
		var b strings.Builder
		for i := range 3 {
			a := f.get(t, "/")
			want(t, "status", a.status, 200)
			want(t, "Connection header sent", <-conn, "close")
			want(t, "Connection header answered", a.header.Get("Connection"), "")
			b.WriteString(a.String())
			be.WaitClosed(t, 1)
			want(t, "backend connections", int(be.Conns()), i+1)
		}
		return b.String()
	}},

	// Headers named in Connection are hop-by-hop, as Keep-Alive is: they
	// go neither to the backend nor back to the client.
	{"headers named in Connection are not forwarded", func(t *testing.T, c Client) string {
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("X-Seen", fmt.Sprintf("x-hop=%q keep-alive=%q x-end=%q conn=%q",
				r.Header.Get("X-Hop"), r.Header.Get("Keep-Alive"), r.Header.Get("X-End"), r.Header.Get("Connection")))
			w.Header().Set("Connection", "X-Internal")
			w.Header().Set("X-Internal", "backend secret")
			w.Header().Set("X-Public", "yes")
			io.WriteString(w, "ok")
		})
		f := newFront(t, c, be.URL, routeOpts{})
		req, _ := http.NewRequest(http.MethodGet, f.url("/"), nil)
		req.Header.Set("Connection", "X-Hop")
		req.Header.Set("X-Hop", "client secret")
		req.Header.Set("Keep-Alive", "timeout=5")
		req.Header.Set("X-End", "kept")
		a := f.do(t, req)
		want(t, "status", a.status, 200)
		want(t, "what the backend saw", a.header.Get("X-Seen"), `x-hop="" keep-alive="" x-end="kept" conn=""`)
		want(t, "X-Internal answered", a.header.Get("X-Internal"), "")
		want(t, "X-Public answered", a.header.Get("X-Public"), "yes")
		return a.String()
	}},

	// Answers without a body (HEAD, 204, 304) leave the connection ready for
	// the next request.
	{"bodyless answers", func(t *testing.T, c Client) string {
		var conns atomic.Int32
		be := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/204":
				w.WriteHeader(http.StatusNoContent)
			case "/304":
				w.Header().Set("ETag", `"v1"`)
				w.WriteHeader(http.StatusNotModified)
			default:
				w.Header().Set("Content-Length", "5")
				io.WriteString(w, "hello")
			}
		}))
		be.Config.ConnState = func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				conns.Add(1)
			}
		}
		be.Start()
		t.Cleanup(be.Close)
		f := newFront(t, c, be.URL, routeOpts{})
		var b strings.Builder
		head, _ := http.NewRequest(http.MethodHead, f.url("/"), nil)
		a := f.do(t, head)
		want(t, "HEAD status", a.status, 200)
		want(t, "HEAD length", a.contentLength, int64(5))
		b.WriteString(a.String())
		for _, p := range []string{"/204", "/304", "/"} {
			a := f.get(t, p)
			b.WriteString(a.String())
		}
		want(t, "backend connections", int(conns.Load()), 1)
		return b.String()
	}},

	// A body without a length ends when the backend hangs up.
	{"body delimited by the backend's close", func(t *testing.T, c Client) string {
		be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
		})
		f := newFront(t, c, be.URL(), routeOpts{})
		var b strings.Builder
		for range 2 {
			a := f.get(t, "/")
			want(t, "body", a.body, "until close")
			want(t, "cut", a.cut, false)
			b.WriteString(a.String())
		}
		want(t, "backend connections", int(be.Conns()), 2)
		return b.String()
	}},

	{"response trailers", func(t *testing.T, c Client) string {
		be := serve(t, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Trailer", "X-Checksum")
			io.WriteString(w, "hello ")
			w.(http.Flusher).Flush()
			io.WriteString(w, "world")
			w.Header().Set("X-Checksum", "42")
		})
		f := newFront(t, c, be.URL, routeOpts{})
		a := f.get(t, "/")
		want(t, "body", a.body, "hello world")
		want(t, "trailer", a.trailer.Get("X-Checksum"), "42")
		return a.String()
	}},
}

// chunkedUpload sends a body of unknown length (so the client sends it
// chunked) and returns what the backend saw of it.
func chunkedUpload(t *testing.T, c Client, o routeOpts, wantTE string) string {
	be := serve(t, echoBody)
	f := newFront(t, c, be.URL, o)
	body := payload(64 << 10)
	// A reader of no known length: the request goes chunked.
	req, _ := http.NewRequest(http.MethodPost, f.url("/upload"), struct{ io.Reader }{bytes.NewReader(body)})
	a := f.do(t, req)
	want(t, "status", a.status, 200)
	want(t, "body echoed", a.body, string(body))
	if seen := a.header.Get("X-Seen"); !strings.Contains(seen, wantTE) || !strings.Contains(seen, fmt.Sprintf("sum=%x", sha256.Sum256(body))) {
		t.Errorf("the backend saw %s, want %s and the body whole", seen, wantTE)
	}
	return a.String()
}

// bigHeader has the backend answer with a header block of about n bytes.
func bigHeader(t *testing.T, c Client, n, status int) string {
	be := newHeadBackend(t, func(c net.Conn, br *bufio.Reader) {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", n)+"\r\nContent-Length: 2\r\n\r\nok")
		io.Copy(io.Discard, br)
	})
	f := newFront(t, c, be.URL(), routeOpts{})
	a := f.get(t, "/")
	want(t, "status", a.status, status)
	return a.String()
}

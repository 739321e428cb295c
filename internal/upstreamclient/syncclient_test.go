package upstreamclient

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

func newTestSyncClient(t *testing.T, maxIdle int, idle time.Duration) *SyncClient {
	c := NewSyncClient(maxIdle, idle, time.Second)
	t.Cleanup(c.CloseIdleConnections)
	return c
}

func get(t *testing.T, c *SyncClient, ctx context.Context, method, url string, body io.Reader) (*http.Response, error) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	return c.RoundTrip(req)
}

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return string(b)
}

func TestSyncClientReusesConnections(t *testing.T) {
	b := testutil.NewRawBackend(t, testutil.ServeOK)
	c := newTestSyncClient(t, 4, time.Minute)
	for i := range 20 {
		resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if got := readAll(t, resp); got != "ok" {
			t.Fatalf("body %q", got)
		}
	}
	// A POST with a body goes the writer-goroutine way; the connection
	// still comes back once the answer is read and the body written (the
	// writer may report a moment after the answer's end).
	p := c.pool(b.Addr())
	for i := range 5 {
		resp, err := get(t, c, context.Background(), http.MethodPost, b.URL()+"/", strings.NewReader(strings.Repeat("x", 10000)))
		if err != nil {
			t.Fatalf("post %d: %v", i, err)
		}
		readAll(t, resp)
		for deadline := time.Now().Add(time.Second); p.idleCount() != 1; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("post %d: the connection did not come back to the pool", i)
			}
		}
	}
	if n := b.Conns(); n != 1 {
		t.Errorf("25 sequential requests used %d connections, want 1", n)
	}
}

func TestSyncClientConnectionClose(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
		io.Copy(io.Discard, br) // until the client closes
	})
	c := newTestSyncClient(t, 4, time.Minute)
	for range 3 {
		resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		b.WaitClosed(t, 1) // we closed it: Connection: close
	}
	if n := b.Conns(); n != 3 {
		t.Errorf("%d connections, want 3", n)
	}
}

// HTTP/1.0 without keep-alive and a body delimited by the close are not
// reused either.
func TestSyncClientReadUntilClose(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\n\r\nuntil close")
	})
	c := newTestSyncClient(t, 4, time.Minute)
	for range 2 {
		resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "until close" {
			t.Fatalf("body %q", got)
		}
	}
	if n := c.pool(b.Addr()).idleCount(); n != 0 {
		t.Errorf("%d idle connections, want 0", n)
	}
}

// The backend closes its idle connection while the client keeps it: the
// next request must not fail (the peek at checkout finds it closed).
func TestSyncClientStaleIdleConnection(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		// and close: an idle timeout of zero
	})
	c := newTestSyncClient(t, 4, time.Minute)
	for i := range 5 {
		resp, err := get(t, c, context.Background(), http.MethodPost, b.URL()+"/", strings.NewReader("payload"))
		if err != nil {
			t.Fatalf("request %d on a stale pool: %v", i, err)
		}
		readAll(t, resp)
		b.WaitClosed(t, 1)
	}
}

// The backend closes the connection as the request arrives (its idle
// timeout raced ours): a GET is sent again on a new connection; a POST with
// a body, which may have been seen, is not.
func TestSyncClientStaleRace(t *testing.T) {
	b := testutil.NewRawBackend(t, func(n int, c net.Conn, br *bufio.Reader) {
		for i := 0; ; i++ {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			io.Copy(io.Discard, req.Body)
			if i == 1 {
				return // read the second request and hang up: no answer
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newTestSyncClient(t, 4, time.Minute)
	resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	resp, err = get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatalf("GET on a connection the backend dropped was not retried: %v", err)
	}
	readAll(t, resp)
	if n := b.Conns(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
	// Now the second connection is pooled (it answered once); its next
	// request is a POST with a body: it fails and is not retried.
	_, err = get(t, c, context.Background(), http.MethodPost, b.URL()+"/", strings.NewReader("once"))
	if err == nil {
		t.Fatal("a POST the backend may have seen was sent again")
	}
	if n := b.Conns(); n != 2 {
		t.Errorf("%d connections after the POST, want 2 (no retry)", n)
	}
}

// A backend that answers 413 without reading a large upload must not
// deadlock the client, and the connection (out of step) is not reused.
func TestSyncClientEarlyAnswerDuringUpload(t *testing.T) {
	release := make(chan struct{})
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 3\r\n\r\nbig")
		<-release // keep the connection open, reading nothing
	})
	defer close(release)
	c := newTestSyncClient(t, 4, time.Minute)
	body := &closeNotifier{Reader: bytes.NewReader(make([]byte, 64<<20)), closed: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	done := make(chan struct{})
	var resp *http.Response
	var err error
	go func() {
		defer close(done)
		resp, err = get(t, c, ctx, http.MethodPost, b.URL()+"/upload", body)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the client is stuck writing a body the backend does not read")
	}
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if got := readAll(t, resp); got != "big" {
		t.Fatalf("body %q", got)
	}
	// The connection waits maxWriteWait for the write to end, then closes,
	// which fails the write and closes the body: by then it is settled.
	select {
	case <-body.closed:
	case <-time.After(3 * time.Second):
		t.Fatal("the half-written request was never abandoned")
	}
	if n := c.pool(b.Addr()).idleCount(); n != 0 {
		t.Errorf("a connection with half a request on it was pooled")
	}
}

func TestSyncClientUpgrade(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil || req.Header.Get("Upgrade") != "websocket" {
			return
		}
		// The switch and the first frame in one write: the client's
		// reader buffers both.
		io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\nhello ")
		io.Copy(c, br) // echo
	})
	c := newTestSyncClient(t, 4, time.Minute)
	req, _ := http.NewRequest(http.MethodGet, b.URL()+"/ws", nil)
	req.Header.Set("Connection", "Upgrade")
	req.Header.Set("Upgrade", "websocket")
	resp, err := c.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rw, ok := resp.Body.(io.ReadWriteCloser)
	if !ok {
		t.Fatalf("101 body %T is no io.ReadWriteCloser", resp.Body)
	}
	defer rw.Close()
	if _, err := io.WriteString(rw, "world"); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len("hello world"))
	if _, err := io.ReadFull(rw, got); err != nil {
		t.Fatal(err)
	}
	if string(got) != "hello world" {
		t.Fatalf("read %q", got)
	}
}

// Cancelling the request while its body streams unblocks the reader at once,
// reports the context's cause, and closes the connection.
func TestSyncClientCancelMidBody(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\npart")
		io.Copy(io.Discard, br) // until the client closes
	})
	c := newTestSyncClient(t, 4, time.Minute)
	ctx, cancel := context.WithCancelCause(context.Background())
	resp, err := get(t, c, ctx, http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	cause := errors.New("route timeout")
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	_, err = resp.Body.Read(buf)
	if !errors.Is(err, cause) {
		t.Errorf("read after cancel: %v, want the cause", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the read took %v to notice the cancel", d)
	}
	resp.Body.Close()
	b.WaitClosed(t, 1)
}

// Cancelling before the answer's header returns the cause promptly (the
// route's header timeout works this way).
func TestSyncClientCancelBeforeHeader(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		http.ReadRequest(br)
		io.Copy(io.Discard, br) // never answers
	})
	c := newTestSyncClient(t, 4, time.Minute)
	ctx, cancel := context.WithCancelCause(context.Background())
	cause := errors.New("route timeout")
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	_, err := get(t, c, ctx, http.MethodGet, b.URL()+"/", nil)
	if !errors.Is(err, cause) {
		t.Errorf("err %v, want the context's cause", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("took %v", d)
	}
	b.WaitClosed(t, 1)
}

func TestSyncClientChunkedTrailers(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Sum\r\n\r\n"+
				"5\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 42\r\n\r\n")
		}
	})
	c := newTestSyncClient(t, 4, time.Minute)
	for range 3 {
		resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if got := readAll(t, resp); got != "hello world" {
			t.Fatalf("body %q", got)
		}
		if got := resp.Trailer.Get("X-Sum"); got != "42" {
			t.Fatalf("trailer %q", got)
		}
	}
	if n := b.Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

// A truncated chunked body is an error and its connection is not reused.
func TestSyncClientTruncatedChunked(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel")
	})
	c := newTestSyncClient(t, 4, time.Minute)
	resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadAll(resp.Body); err == nil {
		t.Fatal("a truncated body read cleanly")
	}
	resp.Body.Close()
	if n := c.pool(b.Addr()).idleCount(); n != 0 {
		t.Errorf("a broken connection was pooled")
	}
}

func TestSyncClientEarlyCloseClosesConn(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
		}
	})
	c := newTestSyncClient(t, 4, time.Minute)
	resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 3)
	io.ReadFull(resp.Body, buf)
	resp.Body.Close()
	b.WaitClosed(t, 1)
	if _, err := resp.Body.Read(buf); err == nil {
		t.Error("read after Close succeeded")
	}
	resp, err = get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "0123456789" {
		t.Fatalf("body %q", got)
	}
	if n := b.Conns(); n != 2 {
		t.Errorf("%d connections, want 2", n)
	}
}

func TestSyncClientPoolBoundsAndIdleTimeout(t *testing.T) {
	gate := make(chan struct{})
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			<-gate
			io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newTestSyncClient(t, 2, 200*time.Millisecond)
	var wg sync.WaitGroup
	for range 5 {
		wg.Go(func() {
			resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
			if err != nil {
				t.Error(err)
				return
			}
			readAll(t, resp)
		})
	}
	for deadline := time.Now().Add(3 * time.Second); b.Conns() < 5; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d connections dialed for 5 concurrent requests", b.Conns())
		}
	}
	close(gate)
	wg.Wait()
	p := c.pool(b.Addr())
	if n := p.idleCount(); n != 2 {
		t.Errorf("%d idle connections, want MAX_IDLE_CONNS 2", n)
	}
	b.WaitClosed(t, 3) // the ones over the bound
	b.WaitClosed(t, 2) // the rest, after IDLE_CONN_TIMEOUT
	if n := p.idleCount(); n != 0 {
		t.Errorf("%d idle connections after the idle timeout", n)
	}
}

func TestSyncClientInterimResponses(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\n"+
				"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	c := newTestSyncClient(t, 4, time.Minute)
	var got []string
	ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
		Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
			got = append(got, h.Get("Link"))
			return nil
		},
	})
	for range 2 {
		resp, err := get(t, c, ctx, http.MethodGet, b.URL()+"/", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || readAll(t, resp) != "ok" {
			t.Fatalf("status %d", resp.StatusCode)
		}
	}
	if len(got) != 4 || got[1] != "</a.css>" {
		t.Errorf("1xx seen %q", got)
	}
	if n := b.Conns(); n != 1 {
		t.Errorf("%d connections, want 1", n)
	}
}

func TestSyncClientHeaderLimit(t *testing.T) {
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		if _, err := http.ReadRequest(br); err != nil {
			return
		}
		io.WriteString(c, "HTTP/1.1 200 OK\r\nX-Big: "+strings.Repeat("a", 70<<10)+"\r\nContent-Length: 0\r\n\r\n")
	})
	c := newTestSyncClient(t, 4, time.Minute)
	if _, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil); err == nil {
		t.Fatal("a 70 KiB response header was accepted")
	}
}

func TestSyncClientDialError(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	c := newTestSyncClient(t, 4, time.Minute)
	body := &closeTracker{Reader: strings.NewReader("x")}
	_, err := get(t, c, context.Background(), http.MethodPost, "http://"+addr+"/", body)
	// The proxy tells "nothing was sent" (a POST may go elsewhere) by a
	// *net.OpError whose Op is "dial".
	var oe *net.OpError
	if !errors.As(err, &oe) || oe.Op != "dial" {
		t.Fatalf("err %v: want the dialer's *net.OpError", err)
	}
	if !body.closed {
		t.Error("the request body was not closed")
	}
}

// No Accept-Encoding is added and the request reaches the backend as
// written.
func TestSyncClientNoAcceptEncoding(t *testing.T) {
	seen := make(chan http.Header, 1)
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		seen <- req.Header
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 4\r\n\r\nzzzz")
	})
	c := newTestSyncClient(t, 4, time.Minute)
	resp, err := get(t, c, context.Background(), http.MethodGet, b.URL()+"/", nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := readAll(t, resp); got != "zzzz" {
		t.Fatalf("body %q", got)
	}
	if h := <-seen; h.Get("Accept-Encoding") != "" {
		t.Errorf("Accept-Encoding %q was added", h.Get("Accept-Encoding"))
	}
}

type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

// closeNotifier closes its channel when the client closes the body, which
// it does when it has written the request or given up on it.
type closeNotifier struct {
	io.Reader
	closed chan struct{}
	once   sync.Once
}

func (c *closeNotifier) Close() error { c.once.Do(func() { close(c.closed) }); return nil }

// BenchmarkUpstreamClient compares the CPU and allocations of a keep-alive
// GET with a 100-byte answer through http.Transport and SyncClient.
func BenchmarkUpstreamClient(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	answer := "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, answer)
				}
			}()
		}
	}()
	url := "http://" + ln.Addr().String() + "/"
	for _, tc := range []struct {
		name string
		c    http.RoundTripper
	}{
		{"transport", NewTransport(64, time.Minute, time.Second)},
		{"sync", NewSyncClient(64, time.Minute, time.Second)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(http.MethodGet, url, nil)
					resp, err := tc.c.RoundTrip(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		})
	}
}

// Interim answers are bounded as http.Transport bounds them: those a
// Got1xxResponse hook takes are the hook's to count, each with the whole
// header limit; without a hook they share the final header's 64 KiB.
func TestInterimAnswersBoundedAsTransport(t *testing.T) {
	const hint = "HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\n"
	n := (maxResponseHeaderBytes / len(hint)) + 100 // more than the limit holds
	b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, strings.Repeat(hint, n)+"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
		}
	})
	for _, tc := range bothClients {
		t.Run(tc.name, func(t *testing.T) {
			c := newClient(t, tc.new)
			hints := 0
			ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
				Got1xxResponse: func(int, textproto.MIMEHeader) error { hints++; return nil },
			})
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, b.URL()+"/", nil)
			resp, err := c.RoundTrip(req)
			if err != nil {
				t.Fatalf("with a hook: %v", err)
			}
			if got := readAll(t, resp); got != "ok" || hints != n {
				t.Errorf("with a hook: body %q after %d hints, want %q after %d", got, hints, "ok", n)
			}
			req, _ = http.NewRequest(http.MethodGet, b.URL()+"/", nil)
			if resp, err := c.RoundTrip(req); err == nil {
				resp.Body.Close()
				t.Errorf("without a hook, %d bytes of interim answers were accepted", n*len(hint))
			}
		})
	}
}

// bothClients are SyncClient and the transport whose semantics it keeps,
// for tests that hold the first to the second.
var bothClients = []struct {
	name string
	new  func() idleCloser
}{
	{"transport", func() idleCloser { return NewTransport(4, time.Minute, time.Second) }},
	{"sync", func() idleCloser { return NewSyncClient(4, time.Minute, time.Second) }},
}

type idleCloser interface {
	http.RoundTripper
	CloseIdleConnections()
}

// newClient makes a client that t's end closes; made after t's backends,
// its idle connections close before they stop.
func newClient(t *testing.T, new func() idleCloser) idleCloser {
	c := new()
	t.Cleanup(c.CloseIdleConnections)
	return c
}

// watchedBody records whether the client read it and when it closed it.
type watchedBody struct {
	r      io.Reader
	read   atomic.Bool
	closed chan struct{}
	once   sync.Once
}

func newWatchedBody(s string) *watchedBody {
	return &watchedBody{r: strings.NewReader(s), closed: make(chan struct{})}
}

func (b *watchedBody) Read(p []byte) (int, error) { b.read.Store(true); return b.r.Read(p) }
func (b *watchedBody) Close() error               { b.once.Do(func() { close(b.closed) }); return nil }

func expectRequest(t *testing.T, url string, body *watchedBody) *http.Request {
	req, err := http.NewRequest(http.MethodPost, url, body)
	if err != nil {
		t.Fatal(err)
	}
	req.ContentLength = 5
	req.Header.Set("Expect", "100-continue")
	return req
}

// A request that says Expect: 100-continue sends its header alone and its
// body only when the backend asks for it, as http.Transport does: on a 100,
// on a final answer when the connection stays (it must carry the whole
// request), or after a second of silence; a final answer on a connection
// that closes spares the body.
func TestExpectContinueAsTransport(t *testing.T) {
	for _, tc := range bothClients {
		t.Run(tc.name, func(t *testing.T) {
			t.Run("continue", func(t *testing.T) {
				b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 100 Continue\r\n\r\n")
					body, _ := io.ReadAll(req.Body)
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"+string(body))
				})
				c := newClient(t, tc.new)
				got100 := false
				body := newWatchedBody("hello")
				req := expectRequest(t, b.URL()+"/", body)
				req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
					Got1xxResponse: func(code int, _ textproto.MIMEHeader) error { got100 = code == 100; return nil },
				}))
				resp, err := c.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, resp); got != "hello" || !got100 {
					t.Errorf("echo %q, 100 seen %v", got, got100)
				}
			})

			t.Run("refused on a closing connection", func(t *testing.T) {
				b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
					if _, err := http.ReadRequest(br); err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nConnection: close\r\nContent-Length: 4\r\n\r\nwho?")
				})
				c := newClient(t, tc.new)
				body := newWatchedBody("hello")
				resp, err := c.RoundTrip(expectRequest(t, b.URL()+"/", body))
				if err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, resp); resp.StatusCode != 401 || got != "who?" {
					t.Errorf("%d %q", resp.StatusCode, got)
				}
				select {
				case <-body.closed:
				case <-time.After(3 * time.Second):
					t.Fatal("the held body was never closed")
				}
				if body.read.Load() {
					t.Error("the body of a refused request was read")
				}
			})

			t.Run("refused on a kept connection", func(t *testing.T) {
				got := make(chan string, 1)
				b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.WriteString(c, "HTTP/1.1 401 Unauthorized\r\nContent-Length: 4\r\n\r\nwho?")
					body, _ := io.ReadAll(req.Body)
					got <- string(body)
					io.Copy(io.Discard, br)
				})
				c := newClient(t, tc.new)
				resp, err := c.RoundTrip(expectRequest(t, b.URL()+"/", newWatchedBody("hello")))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, resp)
				select {
				case body := <-got:
					if body != "hello" {
						t.Errorf("the backend got %q", body)
					}
				case <-time.After(3 * time.Second):
					t.Error("the body was not sent: the kept connection is out of step")
				}
			})

			t.Run("backend that ignores Expect", func(t *testing.T) {
				b := testutil.NewRawBackend(t, func(_ int, c net.Conn, br *bufio.Reader) {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, _ := io.ReadAll(req.Body) // waits for the body, says nothing
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"+string(body))
				})
				c := newClient(t, tc.new)
				start := time.Now()
				resp, err := c.RoundTrip(expectRequest(t, b.URL()+"/", newWatchedBody("hello")))
				if err != nil {
					t.Fatal(err)
				}
				if got := readAll(t, resp); got != "hello" {
					t.Errorf("echo %q", got)
				}
				if d := time.Since(start); d < expectContinueTimeout/2 {
					t.Errorf("the body went after %v, without waiting for a 100", d)
				}
			})
		})
	}
}

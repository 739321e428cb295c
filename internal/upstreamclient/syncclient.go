package upstreamclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
)

// SyncClient is an HTTP/1.1 upstream client that does all of a request's
// work on the caller's goroutine: the request is written and the response
// read there, on a keep-alive connection taken from a per-backend pool.
// http.Transport runs a read and a write goroutine per connection and hands
// every request and response between them over channels; under load those
// handoffs cost more CPU than the proxying itself.
//
// Semantics follow http.Transport as NewTransport configures it: HTTP/1.1
// only, no transparent decompression (Accept-Encoding is never added), a
// response header limit of 64 KiB, 1xx interim answers skipped (and passed to
// an httptrace Got1xxResponse hook, which ReverseProxy uses to forward them),
// a 101 answer's Body is the raw connection, the body of a request that says
// Expect: 100-continue held back until the backend asks for it (or answers,
// or a second passes), a connection reused only after its response body was
// read to a clean end, and a request that fails on a reused connection which
// the backend had closed retried once on a new connection when that is safe.
// https backends go to the fallback http.Transport.
type SyncClient struct {
	maxIdle     int
	idleTimeout time.Duration
	dialer      net.Dialer
	fallback    *http.Transport

	mu    sync.RWMutex
	pools map[string]*hostPool
}

// maxResponseHeaderBytes bounds a response's header block, for both clients:
// a backend must not make the gateway buffer an unbounded header.
const maxResponseHeaderBytes = 64 << 10

// NewSyncClient returns a SyncClient keeping up to maxIdlePerHost idle
// connections per backend (0 means 2, as http.Transport), closing them after
// idleTimeout idle (0: never), and dialing within dialTimeout.
func NewSyncClient(maxIdlePerHost int, idleTimeout, dialTimeout time.Duration) *SyncClient {
	if maxIdlePerHost <= 0 {
		maxIdlePerHost = http.DefaultMaxIdleConnsPerHost
	}
	return &SyncClient{
		maxIdle:     maxIdlePerHost,
		idleTimeout: idleTimeout,
		dialer:      net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		fallback:    NewTransport(maxIdlePerHost, idleTimeout, dialTimeout),
		pools:       make(map[string]*hostPool),
	}
}

// CloseIdleConnections closes every idle connection.
func (c *SyncClient) CloseIdleConnections() {
	c.mu.RLock()
	pools := make([]*hostPool, 0, len(c.pools))
	for _, p := range c.pools {
		pools = append(pools, p)
	}
	c.mu.RUnlock()
	for _, p := range pools {
		p.closeIdle()
	}
	c.fallback.CloseIdleConnections()
}

func (c *SyncClient) pool(host string) *hostPool {
	c.mu.RLock()
	p := c.pools[host]
	c.mu.RUnlock()
	if p != nil {
		return p
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if p = c.pools[host]; p == nil {
		addr := host
		if h, port, err := net.SplitHostPort(host); err != nil || port == "" {
			name := host
			if err == nil {
				name = h
			}
			// No port: the scheme's default. A bracketed IPv6 literal
			// loses its brackets to JoinHostPort's own.
			if len(name) > 1 && name[0] == '[' && name[len(name)-1] == ']' {
				name = name[1 : len(name)-1]
			}
			addr = net.JoinHostPort(name, "80")
		}
		p = &hostPool{c: c, addr: addr}
		c.pools[host] = p
	}
	return p
}

// The errors' "proxy:" prefix predates this package; it is kept because
// the texts reach traces and logs, which must not change with the move.
var errNoHost = errors.New("proxy: no host in request URL")

func (c *SyncClient) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Scheme != "http" {
		return c.fallback.RoundTrip(req)
	}
	if req.URL.Host == "" {
		closeBody(req)
		return nil, errNoHost
	}
	if err := validHeaders(req.Header); err != nil {
		closeBody(req)
		return nil, err
	}
	ctx := req.Context()
	p := c.pool(req.URL.Host)
	for retried := false; ; retried = true {
		if ctx.Err() != nil {
			closeBody(req)
			return nil, context.Cause(ctx)
		}
		var sc *syncConn
		if !retried && !req.Close {
			// A request that asks to close its connection gets one of
			// its own: it must not end a pooled one another route reuses.
			sc = p.get()
		}
		if sc == nil {
			var err error
			if sc, err = c.dial(ctx, p); err != nil {
				closeBody(req)
				return nil, err
			}
		}
		resp, err := sc.roundTrip(ctx, req)
		if err == nil {
			return resp, nil
		}
		if retried || !sc.reused || ctx.Err() != nil || !staleRetry(req, sc) {
			return nil, err
		}
		// The backend closed this idle connection as we sent on it:
		// once more, on a connection of our own making.
	}
}

// staleRetry reports whether a request that failed on a reused connection
// may be sent again, as http.Transport decides it: nothing of it was written
// and it has no body, or it is replayable (no body, idempotent) and nothing
// of an answer was read.
func staleRetry(req *http.Request, sc *syncConn) bool {
	noBody := req.Body == nil || req.Body == http.NoBody
	if !noBody {
		return false
	}
	if sc.nwrite.Load() == sc.startW {
		return true
	}
	if sc.nread != sc.startR {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, k1 := req.Header["Idempotency-Key"]
	_, k2 := req.Header["X-Idempotency-Key"]
	return k1 || k2
}

func closeBody(req *http.Request) {
	if req.Body != nil {
		req.Body.Close()
	}
}

// validHeaders rejects what http.Transport rejects: header names and values
// that are not valid HTTP.
func validHeaders(h http.Header) error {
	for k, vv := range h {
		if !httpguts.ValidHeaderFieldName(k) {
			return fmt.Errorf("net/http: invalid header field name %q", k)
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return fmt.Errorf("net/http: invalid header field value for %q", k)
			}
		}
	}
	return nil
}

func (c *SyncClient) dial(ctx context.Context, p *hostPool) (*syncConn, error) {
	nc, err := c.dialer.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		// Left as the dialer's *net.OpError with Op "dial": the proxy
		// reads it as "nothing was sent" and may retry even a POST on
		// another backend.
		return nil, err
	}
	sc := &syncConn{pool: p, nc: nc, readLimit: math.MaxInt64}
	sc.br = bufio.NewReaderSize(sc, 4<<10)
	sc.bw = bufio.NewWriterSize(connWriter{sc}, 4<<10)
	return sc, nil
}

// hostPool holds one backend's idle connections, oldest first.
type hostPool struct {
	c    *SyncClient
	addr string

	mu    sync.Mutex
	idle  []*syncConn
	timer *time.Timer
	armed bool
}

// get returns an idle connection that still looks alive, or nil. The most
// recently used is taken first, so that the oldest ones age out.
func (p *hostPool) get() *syncConn {
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil
		}
		sc := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		if (p.c.idleTimeout > 0 && time.Since(sc.idleAt) >= p.c.idleTimeout) || !alive(sc.nc) {
			sc.close()
			continue
		}
		sc.reused = true
		return sc
	}
}

func (p *hostPool) put(sc *syncConn) {
	if sc.br.Buffered() > 0 {
		// The backend sent more than its answer: nothing after it can be
		// trusted.
		sc.close()
		return
	}
	sc.idleAt = time.Now()
	p.mu.Lock()
	if len(p.idle) >= p.c.maxIdle {
		p.mu.Unlock()
		sc.close()
		return
	}
	p.idle = append(p.idle, sc)
	if !p.armed && p.c.idleTimeout > 0 {
		p.armed = true
		if p.timer == nil {
			p.timer = time.AfterFunc(p.c.idleTimeout, p.sweep)
		} else {
			p.timer.Reset(p.c.idleTimeout)
		}
	}
	p.mu.Unlock()
}

// sweep closes the connections idle for IDLE_CONN_TIMEOUT and rearms itself
// for the oldest of the rest.
func (p *hostPool) sweep() {
	now := time.Now()
	p.mu.Lock()
	i := 0
	for i < len(p.idle) && now.Sub(p.idle[i].idleAt) >= p.c.idleTimeout {
		i++
	}
	expired := make([]*syncConn, i)
	copy(expired, p.idle[:i])
	n := copy(p.idle, p.idle[i:])
	clear(p.idle[n:])
	p.idle = p.idle[:n]
	if n > 0 {
		p.timer.Reset(p.c.idleTimeout - now.Sub(p.idle[0].idleAt))
	} else {
		p.armed = false
	}
	p.mu.Unlock()
	for _, sc := range expired {
		sc.close()
	}
}

func (p *hostPool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	for _, sc := range idle {
		sc.close()
	}
}

func (p *hostPool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// syncConn is one upstream connection. Between requests it belongs to its
// pool; during one it belongs to that request.
type syncConn struct {
	pool   *hostPool
	nc     net.Conn
	br     *bufio.Reader // reads through the syncConn: counted and limited
	bw     *bufio.Writer
	idleAt time.Time
	reused bool

	nread     int64 // bytes read from nc, by the request's goroutine
	readLimit int64 // left for the response header
	nwrite    atomic.Int64
	startR    int64 // nread and nwrite when the request began
	startW    int64
	closed    atomic.Bool
}

func (sc *syncConn) Read(p []byte) (int, error) {
	if sc.readLimit <= 0 {
		return 0, fmt.Errorf("proxy: upstream response header larger than %d bytes", maxResponseHeaderBytes)
	}
	if int64(len(p)) > sc.readLimit {
		p = p[:sc.readLimit]
	}
	n, err := sc.nc.Read(p)
	sc.nread += int64(n)
	sc.readLimit -= int64(n)
	return n, err
}

type connWriter struct{ sc *syncConn }

func (w connWriter) Write(p []byte) (int, error) {
	n, err := w.sc.nc.Write(p)
	w.sc.nwrite.Add(int64(n))
	return n, err
}

func (sc *syncConn) close() {
	if sc.closed.CompareAndSwap(false, true) {
		sc.nc.Close()
	}
}

// roundTrip sends req and reads its answer's header. The context closes the
// connection when it ends, which unblocks whatever waits on it; a body is
// written from its own goroutine so that a backend answering before it read
// the whole body (an early 413) cannot deadlock the two sides.
func (sc *syncConn) roundTrip(ctx context.Context, req *http.Request) (*http.Response, error) {
	sc.startR, sc.startW = sc.nread, sc.nwrite.Load()
	stop := context.AfterFunc(ctx, sc.close)
	var bw *bodyWrite
	fail := func(err error) (*http.Response, error) {
		stop()
		sc.close()
		if bw != nil {
			bw.decide(false)
			// Let the body writer finish (the connection is closed, so it
			// does at once unless it is blocked on the client's body):
			// when the client's body is what failed, the caller must see
			// that fault, not the cancellation net/http raised for it
			// first. http.Transport waits for its write loop the same way.
			t := time.NewTimer(maxWriteWait)
			select {
			case <-bw.done:
			case <-t.C:
			}
			t.Stop()
		}
		if ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return nil, err
	}

	if req.Body == nil || req.Body == http.NoBody {
		err := req.Write(sc.bw)
		if err == nil {
			err = sc.bw.Flush()
		}
		if err != nil {
			return fail(err)
		}
	} else {
		bw = &bodyWrite{done: make(chan struct{})}
		if req.ProtoAtLeast(1, 1) && httpguts.HeaderValuesContainsToken([]string{req.Header.Get("Expect")}, "100-continue") {
			bw.cont = make(chan bool, 1)
		}
		go bw.run(sc, req)
	}
	writeErr := func(err error) error {
		if bw != nil && bw.state.Load() == wFailed {
			return bw.err
		}
		return err
	}

	var trace *httptrace.ClientTrace
	sc.readLimit = maxResponseHeaderBytes
	for {
		resp, err := http.ReadResponse(sc.br, req)
		if err != nil {
			return fail(writeErr(err))
		}
		code := resp.StatusCode
		if code == http.StatusContinue {
			bw.decide(true)
		}
		if code >= 100 && code <= 199 && code != http.StatusSwitchingProtocols {
			if trace == nil {
				trace = httptrace.ContextClientTrace(ctx)
				if trace == nil {
					trace = &httptrace.ClientTrace{}
				}
			}
			if trace.Got1xxResponse != nil {
				if err := trace.Got1xxResponse(code, textproto.MIMEHeader(resp.Header)); err != nil {
					return fail(err)
				}
				// As http.Transport: an interim answer the hook took
				// is the hook's to bound (ReverseProxy forwards each
				// one and the route timeout ends an endless series),
				// so the next header gets the whole limit again.
				// Untaken ones share the final header's limit.
				sc.readLimit = maxResponseHeaderBytes
			}
			continue
		}
		// Answered without being asked for the body: as http.Transport,
		// send it only if the connection is to carry more requests, which
		// needs the request whole; on one that closes, the client is
		// spared sending a body nobody reads.
		bw.decide(!resp.Close && !req.Close)
		sc.readLimit = math.MaxInt64
		if code == http.StatusSwitchingProtocols {
			// The connection now belongs to the caller (ReverseProxy's
			// upgrade copy, which watches the request context itself).
			if !stop() {
				return fail(context.Cause(ctx))
			}
			resp.Body = &upgradeBody{br: sc.br, nc: sc.nc}
			return resp, nil
		}
		b := &syncBody{sc: sc, rc: resp.Body, ctx: ctx, stop: stop, bw: bw,
			keep: !resp.Close && !req.Close && resp.ProtoAtLeast(1, 0)}
		if resp.Body == http.NoBody {
			// No body to wait for (HEAD, 204, 304): the connection is
			// free now.
			b.finish(true)
		}
		resp.Body = b
		return resp, nil
	}
}

// syncBody is an upstream response body. Read to a clean end, it gives its
// connection back to the pool; closed early or failed, it closes it.
type syncBody struct {
	sc   *syncConn
	rc   io.ReadCloser
	ctx  context.Context
	stop func() bool
	bw   *bodyWrite
	keep bool
	done atomic.Bool
	eof  atomic.Bool
}

var errBodyClosed = errors.New("proxy: read on closed response body")

func (b *syncBody) Read(p []byte) (int, error) {
	if b.done.Load() {
		if b.eof.Load() {
			return 0, io.EOF
		}
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	switch {
	case err == io.EOF:
		b.finish(true)
	case err != nil:
		b.finish(false)
		if b.ctx.Err() != nil {
			err = context.Cause(b.ctx)
		}
	}
	return n, err
}

func (b *syncBody) Close() error {
	b.finish(false)
	return nil
}

func (b *syncBody) finish(eof bool) {
	if !b.done.CompareAndSwap(false, true) {
		return
	}
	b.eof.Store(eof)
	stopped := b.stop()
	switch {
	case !eof || !b.keep || !stopped:
		b.sc.close()
	case b.bw == nil:
		b.sc.pool.put(b.sc)
	default:
		b.bw.answered(b.sc)
	}
}

// bodyWrite is a request body written by its own goroutine. The connection
// is reusable once both the answer was read whole and the request written
// whole; whichever of the two ends last pools it. A backend may answer
// before it read the whole body: then, as http.Transport, the connection
// waits a little for the write to end and is closed if it does not.
type bodyWrite struct {
	state atomic.Int32
	err   error         // the write's error, set before state becomes wFailed
	done  chan struct{} // closed when run returns

	// cont, for a request that expects 100-continue, carries the one
	// decision whether its body goes; decided is the reader's, so that
	// only its first decision is sent.
	cont    chan bool
	decided bool
}

const (
	wPending  = iota // writing; the answer is not read whole yet
	wAnswered        // the answer was read whole; the writer pools
	wWritten         // written whole; the answer's end pools
	wFailed          // the write failed; the connection is closed
	wSettled         // pooled or closed
)

// maxWriteWait is how long a connection whose answer was read waits for its
// request to be written whole: as long as http.Transport waits.
const maxWriteWait = 50 * time.Millisecond

func (w *bodyWrite) run(sc *syncConn, req *http.Request) {
	defer close(w.done)
	var held *heldBody
	if w.cont != nil {
		r := *req // the caller's request is not ours to change
		held = &heldBody{ReadCloser: req.Body, cont: w.cont}
		r.Body = held
		req = &r
	}
	err := req.Write(sc.bw) // closes req.Body
	if err == nil {
		err = sc.bw.Flush()
	}
	if held != nil && held.skipped {
		// The header went alone, on a connection that closes after the
		// answer: the answer's end closes it.
		w.state.Store(wSettled)
		return
	}
	if err != nil {
		// A half-sent request: the backend must not take it for a whole
		// one, and the reader must stop waiting.
		w.err = err
		w.state.Store(wFailed)
		sc.close()
		return
	}
	if w.state.CompareAndSwap(wPending, wWritten) {
		return
	}
	if w.state.CompareAndSwap(wAnswered, wSettled) {
		sc.pool.put(sc)
	}
}

// decide lets a body held back for 100 Continue go, or not. Only the
// reader calls it; a nil w (no body) or a body not held is a no-op.
func (w *bodyWrite) decide(send bool) {
	if w == nil || w.cont == nil || w.decided {
		return
	}
	w.decided = true
	w.cont <- send
}

// expectContinueTimeout is how long a body held for 100 Continue waits for
// the backend before it is sent anyway (NewTransport's
// ExpectContinueTimeout): a backend that ignores Expect still gets it.
const expectContinueTimeout = time.Second

// heldBody is the body of a request that expects 100-continue. Its first
// Read waits for the reader's decision or expectContinueTimeout. Request.Write
// has flushed the header by then: it does so before the first Read of any
// body it does not know to be in memory.
type heldBody struct {
	io.ReadCloser
	cont    <-chan bool
	waited  bool
	skipped bool
}

var errBodySkipped = errors.New("upstreamclient: request body not sent: the backend answered without asking for it")

func (b *heldBody) Read(p []byte) (int, error) {
	if !b.waited {
		b.waited = true
		t := time.NewTimer(expectContinueTimeout)
		select {
		case send := <-b.cont:
			b.skipped = !send
		case <-t.C:
		}
		t.Stop()
	}
	if b.skipped {
		return 0, errBodySkipped
	}
	return b.ReadCloser.Read(p)
}

// answered is called when the answer was read whole on a connection that
// may be kept.
func (w *bodyWrite) answered(sc *syncConn) {
	if w.state.CompareAndSwap(wPending, wAnswered) {
		time.AfterFunc(maxWriteWait, func() {
			if w.state.CompareAndSwap(wAnswered, wSettled) {
				sc.close()
			}
		})
		return
	}
	if w.state.CompareAndSwap(wWritten, wSettled) {
		sc.pool.put(sc)
		return
	}
	sc.close() // wFailed
}

// upgradeBody is a 101 answer's body: the connection itself, with what the
// reader had already buffered first.
type upgradeBody struct {
	br *bufio.Reader
	nc net.Conn
}

func (u *upgradeBody) Read(p []byte) (int, error) {
	if u.br != nil {
		if n := u.br.Buffered(); n > 0 {
			if len(p) > n {
				p = p[:n]
			}
			return u.br.Read(p)
		}
		u.br = nil
	}
	return u.nc.Read(p)
}

func (u *upgradeBody) Write(p []byte) (int, error) { return u.nc.Write(p) }
func (u *upgradeBody) Close() error                { return u.nc.Close() }

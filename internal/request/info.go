// Package request carries the per-request state every middleware shares: the
// request ID, the resolved client IP, the matched route, the chosen backend and
// what was written to the client. One Info is allocated per request and put
// in the context once, so later steps read and update it without copying the
// *http.Request again.
package request

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"
)

type ctxKey struct{}

// Info is the shared state of one request. Fields are written by the step
// that owns them (see the comments) and read by the steps after it; a request
// is served by one goroutine, so no locking is needed.
type Info struct {
	Start time.Time
	// ID is the request ID (set by requestid); IDValues is the header value
	// slice holding it, shared by every header map that carries the ID.
	ID       string
	IDValues []string
	// ClientIP is the client address as step 2 of docs/request-path.md resolves it (set by
	// clientip); ClientIPText is its text form, made once.
	ClientIP     netip.Addr
	ClientIPText string
	// PeerIP is the TCP peer; PeerTrusted reports whether it is a trusted proxy.
	PeerIP      netip.Addr
	PeerTrusted bool
	// Allowlisted is set by the allow/deny step when the client is on the
	// allow list: every later IP check (DDoS, rate limit) is skipped.
	Allowlisted bool
	// ForwardedFor is the X-Forwarded-For value to send upstream.
	ForwardedFor string
	// Endpoint is the metrics label: the matched route prefix, one of the
	// gateway's own paths, or "unmatched".
	Endpoint string
	// Path is the cleaned request path that was routed and authorised; it
	// is what goes upstream (minus the prefix when the route strips it).
	Path string
	// Proxy is the proxy package's per-request state.
	Proxy any
	// Backend is the URL of the last backend tried.
	Backend string
	// Cache is the response cache's verdict (HIT, MISS, BYPASS), set by
	// the cache step on routes that cache.
	Cache string
	// Attempts counts upstream attempts (retries = Attempts-1).
	Attempts int
	// UserID and AuthMethod describe the authenticated caller, if any.
	UserID, AuthMethod string
	// LogStatus, when set, is logged instead of the status written (499 when
	// the client went away before an answer could be sent).
	LogStatus int
	// Err is the reason for a gateway error, for the access log.
	Err error

	rw      http.ResponseWriter
	status  int
	written int64

	// Send timeout: the underlying connection's write deadline, pushed
	// forward as the response makes progress.
	deadliner   writeDeadliner
	extended    time.Time
	sendTimeout time.Duration
	conn        *connState
	onHdr       func(h http.Header)
	hijack      func(net.Conn) net.Conn
}

// DefaultSendTimeout bounds how long one write to the client may block: a client
// that stops reading (a full TCP window) is cut off after it, as nginx's
// send_timeout does, instead of holding its connection, its upstream
// connection and a MAX_CONNECTIONS slot forever. Long responses are fine as
// long as the client keeps reading.
const DefaultSendTimeout = 60 * time.Second

type writeDeadliner interface{ SetWriteDeadline(time.Time) error }

type connKey struct{}

// connState is per HTTP/1.x client connection, whose requests come one at
// a time: when its write deadline was last armed, so keep-alive requests
// re-arm it only every sendTimeout/4, and what its raw bytes showed.
type connState struct {
	armed   time.Time
	framing Framing
	// began and watch: see ConnContextWatched.
	began atomic.Bool
	watch *time.Timer
}

// Framing is what the public listener's connection saw of the raw bytes
// net/http parsed (framing.Conn); the envelope tells it when a handler runs.
type Framing interface {
	Serving(on bool)
	SawTransferEncoding() bool
}

// ConnContext is for http.Server.ConnContext: it gives each connection the
// state the send timeout uses, and its Framing when it has one.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	st := &connState{}
	st.framing, _ = c.(Framing)
	return context.WithValue(ctx, connKey{}, st)
}

// ConnContextWatched is ConnContext for a listener whose connections must
// begin their first request within firstRequest of being accepted, or be
// closed. net/http bounds an HTTP/1.1 head and a TLS handshake by its
// ReadHeaderTimeout, but not the first header block of an HTTP/2
// connection: a client could open connections and send HEADERS without
// END_HEADERS, then nothing (or empty CONTINUATION frames), and hold each
// until the idle timeout.
func ConnContextWatched(firstRequest time.Duration) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		st := &connState{}
		st.framing, _ = c.(Framing)
		st.watch = time.AfterFunc(firstRequest, func() {
			if !st.began.Load() {
				_ = c.Close()
			}
		})
		return context.WithValue(ctx, connKey{}, st)
	}
}

// Framing returns the connection's Framing, nil when it has none (the ops
// listener, tests' own servers).
func (in *Info) Framing() Framing {
	if in == nil || in.conn == nil {
		return nil
	}
	return in.conn.framing
}

// New returns the Info for r and the request carrying it. Use Writer as the
// ResponseWriter from then on, so the status and byte count are recorded.
// It arms the send timeout (0 = none) on the client connection.
func New(w http.ResponseWriter, r *http.Request, now time.Time, sendTimeout time.Duration) (*Info, *http.Request) {
	in := &Info{Start: now, Endpoint: "unmatched", rw: w}
	conn, _ := r.Context().Value(connKey{}).(*connState)
	if conn != nil && conn.watch != nil && !conn.began.Load() && conn.began.CompareAndSwap(false, true) {
		conn.watch.Stop() // the first request has begun
	}
	if r.ProtoMajor == 1 {
		in.conn = conn
	}
	// HTTP/2 and HTTP/3 streams of one connection run at once, and a
	// stream's write deadline is its own: each gets a state of its own
	// (below), never the connection's, which its requests would share
	// unsynchronised and which would let one stream's deadline excuse the
	// others.
	if d, ok := w.(writeDeadliner); ok && sendTimeout > 0 {
		in.deadliner, in.sendTimeout = d, sendTimeout
		if in.conn == nil {
			in.conn = &connState{}
		}
		// The deadline is at least 3/4 of the timeout away whenever a
		// request starts (a stale one from an idle spell is re-armed).
		in.extended = in.conn.armed
		in.extendWrite()
	}
	return in, r.WithContext(context.WithValue(r.Context(), ctxKey{}, in))
}

// extendWrite pushes the write deadline forward when a quarter of the send
// timeout has passed since it was last set (a netpoll call per write would
// cost more than the write).
func (in *Info) extendWrite() {
	if in.deadliner == nil {
		return
	}
	if now := time.Now(); now.Sub(in.extended) > in.sendTimeout/4 {
		in.extended, in.conn.armed = now, now
		_ = in.deadliner.SetWriteDeadline(now.Add(in.sendTimeout))
	}
}

// From returns the Info of the request, or nil outside the gateway's chain.
func From(ctx context.Context) *Info {
	in, _ := ctx.Value(ctxKey{}).(*Info)
	return in
}

// Writer returns the ResponseWriter that records status and size.
func (in *Info) Writer() http.ResponseWriter { return (*writer)(in) }

// OnHeader registers fn to run once right before the response header goes
// out. Several may be registered: they run in the order they were.
func (in *Info) OnHeader(fn func(http.Header)) {
	if prev := in.onHdr; prev != nil {
		in.onHdr = func(h http.Header) { prev(h); fn(h) }
		return
	}
	in.onHdr = fn
}

// OnHijack registers fn to wrap a hijacked (upgraded) connection. Several
// may be registered: they run in order, each wrapping what the one before
// returned.
func (in *Info) OnHijack(fn func(net.Conn) net.Conn) {
	if prev := in.hijack; prev != nil {
		in.hijack = func(c net.Conn) net.Conn { return fn(prev(c)) }
		return
	}
	in.hijack = fn
}

// Status is the status written to the client (0 if nothing was written yet).
func (in *Info) Status() int { return in.status }

// Written is the number of body bytes written to the client.
func (in *Info) Written() int64 { return in.written }

// HeaderSent reports whether the response header has gone out.
func (in *Info) HeaderSent() bool { return in.status != 0 }

// writer is Info seen as an http.ResponseWriter. It supports Flush, Hijack
// and Unwrap, so httputil.ReverseProxy's streaming and upgrades still work.
type writer Info

func (w *writer) Header() http.Header { return w.rw.Header() }

func (w *writer) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// Informational answers (100 Continue, 103 Early Hints) are not final.
		w.rw.WriteHeader(code)
		return
	}
	if w.onHdr != nil {
		w.onHdr(w.rw.Header())
	}
	w.status = code
	w.rw.WriteHeader(code)
}

func (w *writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	(*Info)(w).extendWrite()
	n, err := w.rw.Write(p)
	w.written += int64(n)
	return n, err
}

func (w *writer) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	(*Info)(w).extendWrite()
	_ = http.NewResponseController(w.rw).Flush()
}

// Hijack hands the connection over (WebSocket after a 101). The status is
// recorded as 101 for the access log.
func (w *writer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.rw.(http.Hijacker)
	if !ok {
		return nil, nil, errors.New("request: connection cannot be hijacked")
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	if w.status == 0 {
		w.status = http.StatusSwitchingProtocols
	}
	// The tunnel is the proxy's now: no send timeout on it.
	_ = c.SetWriteDeadline(time.Time{})
	w.deadliner = nil
	if w.hijack != nil {
		c = w.hijack(c)
	}
	return c, brw, nil
}

func (w *writer) Unwrap() http.ResponseWriter { return w.rw }

// CloseConnection asks net/http to close the connection after this answer,
// on HTTP/1.x only. An HTTP/2 or HTTP/3 stream shares its connection with
// the client's other requests: a stream ends on its own, and net/http
// would turn the header into a shutdown of the whole HTTP/2 connection,
// so that one refused or cancelled request costs the client every other
// stream and a new handshake.
func CloseConnection(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

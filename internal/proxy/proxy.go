// Package proxy forwards a routed request to a backend of its route with
// httputil.ReverseProxy: it picks a live backend, sets the forwarding
// headers, retries failed attempts on other backends within the route's
// timeout and retry budget, feeds each backend's circuit breaker, and
// maps failures to 502/503/504 (or to the client's own 408/413/499).
package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/portcullis/portcullis/internal/balancer"
	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/router"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/tlscert"
	"github.com/portcullis/portcullis/internal/upstream"
)

// Client sends one request to one backend. Package upstreamclient provides
// both implementations, SyncClient and the http.Transport of its
// NewTransport; the interface stays this small so the proxy behaves the same
// on either.
type Client interface {
	RoundTrip(*http.Request) (*http.Response, error)
}

// MinBufferBudget is the least memory all requests together may hold in
// buffered bodies; the budget is the larger of it and 64 buffers of
// REQUEST_BUFFER_BYTES. Beyond it a body streams, as with buffering off.
const MinBufferBudget = 64 << 20

// Engine is the process-wide part of proxying that every route's handler
// uses: the upstream client, the retry policy, the request-buffering
// budget, and the upstream metrics.
type Engine struct {
	Client Client
	// ClientFor builds the client of a route that needs its own: https
	// targets verified with tlsConfig (upstream_tls; nil = the defaults),
	// HTTP/2 offered to them (upstream_http2), h2c:// targets. nil = every
	// route uses Client.
	ClientFor       func(tlsConfig *tls.Config, http2 bool) Client
	RetryMax        int           // attempts per request, first included (RETRY_MAX)
	BodyReadTimeout time.Duration // BODY_READ_TIMEOUT
	// BufferBytes is REQUEST_BUFFER_BYTES: a body up to this size is read
	// whole from the client before a backend is chosen, so a slow client
	// holds no backend connection; 0 = bodies always stream.
	BufferBytes int64
	// HideHeaders are HIDE_UPSTREAM_HEADERS, removed from upstream answers.
	HideHeaders []string
	Metrics     *telemetry.Metrics
	Log         *slog.Logger
	// Backoff is the base of the exponential retry backoff (100ms).
	Backoff time.Duration
	// Tracer, when set, makes a client span per upstream attempt and the
	// Propagator puts its traceparent on the upstream request.
	Tracer     trace.Tracer
	Propagator propagation.TextMapPropagator

	bufPool   bufferPool
	errorLog  *slogWriter
	observers sync.Map     // *upstream.Backend -> prometheus.Observer
	buffered  atomic.Int64 // bytes held in buffered request bodies
}

// upstreamObserver caches each backend's upstream_request_duration_seconds
// child, so the hot path does no label hashing.
func (sh *Engine) upstreamObserver(b *upstream.Backend) prometheus.Observer {
	if o, ok := sh.observers.Load(b); ok {
		return o.(prometheus.Observer)
	}
	if b.Retired() {
		// A request still running on an older table: its backend's series
		// is gone with the reload that dropped it, and must stay gone.
		return discardObserver{}
	}
	o := sh.Metrics.UpstreamDuration.WithLabelValues(b.String())
	sh.observers.Store(b, o)
	if b.Retired() { // a reload dropped b meanwhile
		sh.Forget(b)
	}
	return o
}

// Forget releases what the proxy keeps for a backend a reload dropped from
// every route: its cached observer and its upstream_request_duration_seconds
// series. Without it each reload that replaces a backend leaks both.
func (sh *Engine) Forget(b *upstream.Backend) {
	sh.observers.Delete(b)
	sh.Metrics.UpstreamDuration.DeleteLabelValues(b.String())
}

type discardObserver struct{}

func (discardObserver) Observe(float64) {}

// Route is one route's upstream side.
type Route struct {
	Prefix      string
	StripPrefix bool
	Timeout     time.Duration // until response headers, all attempts together; then the body's idle bound
	MaxBody     int64
	Pool        *upstream.Pool
	Selector    balancer.Selector
	Budget      *RetryBudget
	// BreakerOn5xx (breaker_on_5xx) counts the backend's own 502/503/504
	// against its breaker; otherwise only transport failures count.
	BreakerOn5xx bool
	// Keepalive (upstream_keepalive) reuses upstream connections; false
	// sends each request on a connection of its own, closed after it.
	Keepalive bool
	// Client is the route's own client (Engine.ClientFor); nil = the
	// engine's.
	Client Client
}

// Handler proxies requests of one route.
type Handler struct {
	route  *Route
	shared *Engine
	rp     *httputil.ReverseProxy
}

// state is the per-request state the transport needs.
type state struct {
	body   *clientBody
	replay []byte // a fully buffered body, replayable
	held   int64  // bytes of the buffer budget this request holds
}

// New returns the proxy handler of one route.
func New(rt *Route, sh *Engine) *Handler {
	if sh.Backoff == 0 {
		sh.Backoff = 100 * time.Millisecond
	}
	if sh.errorLog == nil {
		sh.errorLog = &slogWriter{log: sh.Log}
	}
	h := &Handler{route: rt, shared: sh}
	h.rp = &httputil.ReverseProxy{
		Rewrite:      rewrite,
		Transport:    &transport{h: h},
		ErrorHandler: errorHandler,
		BufferPool:   &sh.bufPool,
		ErrorLog:     sh.errorLog.logger(),
	}
	h.rp.ModifyResponse = sh.hideHeaders
	return h
}

// hideHeaders removes HIDE_UPSTREAM_HEADERS from an upstream answer (a
// Server or X-Powered-By tells an attacker which exploits to try), and
// always Alt-Svc: a backend's alternative services name the backend, not
// the gateway clients must keep talking to.
func (sh *Engine) hideHeaders(resp *http.Response) error {
	for _, k := range sh.HideHeaders {
		delete(resp.Header, k)
	}
	delete(resp.Header, "Alt-Svc")
	return nil
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := request.From(r.Context())
	if r.ContentLength > h.route.MaxBody {
		// Declared too large: refuse before reading or forwarding a byte.
		request.CloseConnection(w, r)
		in.Err = ErrBodyTooLarge
		gwerror.Write(w, r, http.StatusRequestEntityTooLarge, "request body too large")
		return
	}
	st := &state{}
	in.Proxy = st
	if r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0 {
		st.body = &clientBody{r: r.Body, ctx: r.Context(), rc: http.NewResponseController(w), limit: h.route.MaxBody, timeout: h.shared.BodyReadTimeout}
		r.Body = st.body
		defer func() { h.shared.buffered.Add(-st.held) }()
		if gwerror.IsGRPC(r) {
			// A gRPC stream's messages go upstream as they come: a
			// bidirectional call waits for answers between them, so
			// reading ahead (to buffer, or to check framing HTTP/2 does
			// not have) would stall it.
			h.rp.ServeHTTP(w, r)
			return
		}
		if err := h.buffer(r, st); err != nil {
			errorHandler(w, r, err)
			return
		}
	}
	h.rp.ServeHTTP(w, r)
}

// buffer reads a body of up to REQUEST_BUFFER_BYTES whole before a backend
// is chosen (as nginx's proxy_request_buffering): a client that dribbles
// its upload then costs a goroutine, not a backend connection held for the
// route timeout, and the buffered body can be replayed on a retry. A larger
// body, or one that finds the shared budget spent, streams; a chunked one
// has its first chunk parsed first, so broken framing is a 400 that
// reaches no backend. It returns the client's fault, if any.
func (h *Handler) buffer(r *http.Request, st *state) error {
	sh := h.shared
	limit := min(sh.BufferBytes, h.route.MaxBody)
	if r.ContentLength > limit || !sh.reserve(st, max(r.ContentLength, 0), limit) {
		if r.ContentLength < 0 {
			return st.body.prime()
		}
		return nil
	}
	var buf []byte
	if r.ContentLength > 0 {
		buf = make([]byte, r.ContentLength)
		if _, err := io.ReadFull(st.body, buf); err != nil {
			return clientErr(st, err)
		}
	} else {
		// Chunked: up to limit+1 bytes tells whether it fits.
		var err error
		if buf, err = readUpTo(st.body, limit+1); err != nil {
			return clientErr(st, err)
		}
		if int64(len(buf)) > limit {
			// Too long to buffer: what was read goes first, the rest streams.
			r.Body = struct {
				io.Reader
				io.Closer
			}{io.MultiReader(bytes.NewReader(buf), st.body), st.body}
			return nil
		}
		r.ContentLength = int64(len(buf))
		r.TransferEncoding = nil
	}
	st.replay = buf
	r.Body = io.NopCloser(bytes.NewReader(buf))
	return nil
}

// reserve takes room in the shared budget for a buffered body: n bytes, or
// limit for a chunked one (n == 0) whose size is not known yet.
func (sh *Engine) reserve(st *state, n, limit int64) bool {
	if limit <= 0 {
		return false
	}
	if n == 0 {
		n = limit
	}
	budget := max(MinBufferBudget, 64*sh.BufferBytes)
	if sh.buffered.Add(n) > budget {
		sh.buffered.Add(-n)
		return false
	}
	st.held = n
	return true
}

// readUpTo reads r to its end or until max bytes, whichever comes first.
func readUpTo(r io.Reader, max int64) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(io.LimitReader(r, max))
	return b.Bytes(), err
}

// clientErr is the client's fault behind a failed read of its body.
func clientErr(st *state, err error) error {
	if ferr := st.body.Err(); ferr != nil {
		return ferr
	}
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		return ErrClientGone
	}
	return err
}

// rewrite sets the forwarding headers (X-Forwarded-*, X-Real-IP) on the outgoing request.
// It runs after ReverseProxy removed hop-by-hop headers (and any header
// named in Connection), so the headers set here always survive.
func rewrite(pr *httputil.ProxyRequest) {
	in := request.From(pr.In.Context())
	h := pr.Out.Header
	// One backing array for the per-request values.
	v := make([]string, 3)
	v[0], v[1], v[2] = in.ForwardedFor, in.ClientIPText, pr.In.Host
	h["X-Forwarded-For"] = v[0:1:1]
	h["X-Real-Ip"] = v[1:2:2]
	h["X-Request-Id"] = in.IDValues
	h["X-Forwarded-Proto"] = protoHTTP
	h["X-Forwarded-Host"] = v[2:3:3]
	if pr.In.TLS != nil {
		h["X-Forwarded-Proto"] = protoHTTPS
	}
	if in.PeerTrusted {
		// A trusted proxy's view of the scheme and host is kept.
		if p := pr.In.Header["X-Forwarded-Proto"]; len(p) > 0 {
			h["X-Forwarded-Proto"] = p[:1:1]
		}
		if p := pr.In.Header["X-Forwarded-Host"]; len(p) > 0 {
			h["X-Forwarded-Host"] = p[:1:1]
		}
	}
	if in.UserID != "" {
		h["X-User-Id"] = []string{in.UserID}
		h["X-Auth-Method"] = []string{in.AuthMethod}
	}
	if pr.In.TLS != nil {
		// The subject of the client certificate the handshake verified
		// (TLS_CLIENT_AUTH); a client's own copy was removed on entry.
		if subject := tlscert.ClientSubject(pr.In.TLS); subject != "" {
			h["X-Client-Cert-Subject"] = []string{headerSafe(subject)}
		}
	}
	pr.Out.Host = ""
	// Trailers would carry headers past every check above (identity,
	// forwarding, underscore twins) to backends that merge them.
	pr.Out.Trailer = nil
}

// headerSafe replaces the bytes a header value may not carry (controls)
// with '?': a certificate subject is the CA's text, and a value net/http
// refuses would fail the whole request.
func headerSafe(v string) string {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			b := []byte(v)
			for j := i; j < len(b); j++ {
				if c := b[j]; c < 0x20 && c != '\t' || c == 0x7f {
					b[j] = '?'
				}
			}
			return string(b)
		}
	}
	return v
}

var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

// errorHandler answers a failed proxy attempt with the gateway's JSON error.
func errorHandler(w http.ResponseWriter, r *http.Request, err error) {
	in := request.From(r.Context())
	status := statusFor(err)
	if r.Context().Err() != nil && status >= 500 {
		// The client left first; what we would answer is moot.
		status = StatusClientClosed
	}
	in.Err = err
	if status == StatusClientClosed {
		in.LogStatus = status
		return
	}
	msg := http.StatusText(status)
	switch status {
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "1")
		msg = "no live backend"
	case http.StatusBadGateway:
		msg = "upstream connection failed"
	case http.StatusGatewayTimeout:
		msg = "upstream timeout"
	case http.StatusRequestEntityTooLarge, http.StatusRequestTimeout, http.StatusBadRequest:
		// The body was not read to its end: the connection cannot carry
		// another request.
		request.CloseConnection(w, r)
		msg = strings.ToLower(http.StatusText(status))
	}
	gwerror.Write(w, r, status, msg)
}

// transport runs the attempts of one request: pick, send, judge, maybe retry.
type transport struct{ h *Handler }

var errTimeout = &Error{Status: http.StatusGatewayTimeout, Err: ErrUpstreamTimeout}

func (t *transport) RoundTrip(out *http.Request) (*http.Response, error) {
	rt, sh := t.h.route, t.h.shared
	in := request.From(out.Context())
	st, _ := in.Proxy.(*state)
	if st == nil {
		st = &state{}
	}

	ctx, cancel := context.WithCancelCause(out.Context())
	deadline := time.Now().Add(rt.Timeout)
	timer := time.AfterFunc(rt.Timeout, func() { cancel(errTimeout) })
	out = out.WithContext(ctx)
	fail := func(err error) (*http.Response, error) {
		timer.Stop()
		cancel(err)
		return nil, err
	}

	if !rt.Keepalive {
		out.Close = true
	}
	rel := router.StripPrefix(in.Path, rt.Prefix)
	if !rt.StripPrefix {
		rel = in.Path
	}
	var hash uint64
	if in.ClientIP.IsValid() {
		a16 := in.ClientIP.As16()
		hash = balancer.HashKey(a16[:])
	}
	rt.Budget.Request()

	var triedBuf [8]*upstream.Backend
	tried := triedBuf[:0]
	var lastErr error
	for attempt := 0; attempt < sh.RetryMax; attempt++ {
		b := rt.Selector.Select(hash, tried)
		if b == nil {
			break
		}
		report, err := b.Allow()
		if err != nil {
			// Half-open and its one probe is out: try another.
			tried = append(tried, b)
			attempt--
			if len(tried) > len(rt.Pool.Members) {
				break
			}
			continue
		}
		if attempt > 0 {
			sh.Metrics.UpstreamRetries.Inc()
		}
		b.Begin()
		in.Backend, in.Attempts = b.String(), in.Attempts+1

		req := out
		if attempt > 0 {
			r2 := *out
			req = &r2
			switch {
			case st.replay != nil:
				req.Body = io.NopCloser(bytes.NewReader(st.replay))
			case st.body != nil:
				// The first attempt's body wrapper was closed by the
				// Transport; canRetry allowed this only because the dial
				// failed, so nothing of the body was read.
				req.Body = io.NopCloser(st.body)
			}
		}
		req.URL = targetURL(b, rel, out.URL.RawQuery)

		var span trace.Span
		if sh.Tracer != nil {
			var sctx context.Context
			sctx, span = sh.Tracer.Start(req.Context(), "upstream", trace.WithSpanKind(trace.SpanKindClient),
				trace.WithAttributes(attribute.String("backend", b.String()), attribute.Int("attempt", attempt+1)))
			sh.Propagator.Inject(sctx, propagation.HeaderCarrier(req.Header))
		}
		start := time.Now()
		client := sh.Client
		if rt.Client != nil {
			client = rt.Client
		}
		resp, err := client.RoundTrip(req)
		sh.upstreamObserver(b).Observe(time.Since(start).Seconds())
		if span != nil {
			switch {
			case err != nil:
				span.SetStatus(codes.Error, err.Error())
			default:
				span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
				if failureStatus(resp.StatusCode) {
					span.SetStatus(codes.Error, resp.Status)
				}
			}
			span.End()
		}

		if err == nil && !failureStatus(resp.StatusCode) {
			if !timer.Stop() {
				// The route timeout fired just as the answer came.
				resp.Body.Close()
				b.End()
				if cerr := clientFault(st, ctx); cerr != nil {
					report(upstream.ErrClientFault)
					return fail(cerr)
				}
				report(upstream.ErrNotCounted)
				return nil, errTimeout
			}
			report(nil)
			return t.finish(resp, b, timer, cancel), nil
		}

		// Charge the client, not the backend, for the client's faults.
		if err != nil {
			if cerr := clientFault(st, ctx); cerr != nil {
				report(upstream.ErrClientFault)
				b.End()
				return fail(cerr)
			}
			if cause := context.Cause(ctx); errors.Is(cause, ErrUpstreamTimeout) {
				err = errTimeout
			}
		}
		failure := err
		if failure == nil {
			failure = &Error{Status: resp.StatusCode, Err: errors.New(resp.Status)}
		}
		report(breakerOutcome(rt, err, failure))
		lastErr = failure

		pause := backoff(sh.Backoff, attempt)
		if !t.canRetry(attempt, out, err, st, ctx, time.Until(deadline) > pause) || rt.Selector.Select(hash, append(tried, b)) == nil || !rt.Budget.Withdraw() {
			// No retry allowed, no other backend to retry on, or the
			// pool's retry budget is spent.
			if resp != nil {
				// The backend's own 502/503/504 is the answer.
				timer.Stop()
				return t.finish(resp, b, timer, cancel), nil
			}
			b.End()
			return fail(err)
		}
		if resp != nil {
			resp.Body.Close()
		}
		b.End()
		tried = append(tried, b)
		if !sleep(ctx, pause) {
			if cerr := clientFault(st, ctx); cerr != nil {
				return fail(cerr)
			}
			return fail(errTimeout)
		}
	}
	if lastErr == nil {
		lastErr = &Error{Status: http.StatusServiceUnavailable, Err: ErrNoBackend}
	}
	return fail(lastErr)
}

// breakerOutcome is what a failed attempt tells the backend's breaker. Only
// transport failures count by default: an answer, even a 503, proves the
// backend reachable, and a slow answer (the route timeout) is what any
// client can ask for, so neither may let one client eject a backend that
// serves everyone else. A route with breaker_on_5xx counts 502/503/504.
func breakerOutcome(rt *Route, err, failure error) error {
	switch {
	case err == nil && rt.BreakerOn5xx:
		return failure
	case err == nil:
		return nil
	case errors.Is(err, ErrUpstreamTimeout):
		return upstream.ErrNotCounted
	}
	return failure
}

// finish hands a response to ReverseProxy. The timer becomes the body's idle
// bound; an upgraded (101) connection has no such bound.
func (t *transport) finish(resp *http.Response, b *upstream.Backend, timer *time.Timer, cancel context.CancelCauseFunc) *http.Response {
	if resp.StatusCode == http.StatusSwitchingProtocols {
		timer.Stop()
		b.End()
		return resp
	}
	resp.Body = &respBody{rc: resp.Body, timer: timer, idle: t.h.route.Timeout, backend: b, cancel: cancel}
	return resp
}

// canRetry applies the retry rules: attempts left, an idempotent method or a
// request that never left, a replayable body, and time left for the backoff
// pause (timeLeft). The caller then checks for another backend and the retry
// budget.
func (t *transport) canRetry(attempt int, out *http.Request, err error, st *state, ctx context.Context, timeLeft bool) bool {
	sh := t.h.shared
	if !timeLeft || attempt+1 >= sh.RetryMax || ctx.Err() != nil {
		return false
	}
	dialFailed := err != nil && notSent(err)
	if !dialFailed && !idempotent(out.Method) {
		return false
	}
	if st.body != nil && st.replay == nil && !dialFailed {
		// A streamed body went (at least partly) to the failed backend and
		// cannot be sent again.
		return false
	}
	return true
}

// clientFault returns the client's error if the attempt failed because of
// the client: its body was too large, stalled or cut off, the client left,
// or the route timeout fired while the client was still sending its body
// (a slow upload is the client's doing, not the backend's).
func clientFault(st *state, ctx context.Context) error {
	if st.body != nil {
		if err := st.body.Err(); err != nil {
			return err
		}
	}
	cause := context.Cause(ctx)
	switch {
	case cause == nil:
		return nil
	case errors.Is(cause, ErrUpstreamTimeout):
		if st.body != nil && st.replay == nil && !st.body.eof.Load() {
			return ErrBodyTimeout
		}
		return nil
	}
	return ErrClientGone
}

// backoff is 100ms·2^n with equal jitter: half fixed, half random.
func backoff(base time.Duration, attempt int) time.Duration {
	d := base << attempt
	return d/2 + rand.N(d/2+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func targetURL(b *upstream.Backend, rel, rawQuery string) *url.URL {
	base := b.URL()
	u := *base
	if base.Path == "" || base.Path == "/" {
		u.Path = rel
	} else {
		u.Path = strings.TrimSuffix(base.Path, "/") + rel
	}
	u.RawPath = ""
	u.RawQuery = rawQuery
	return &u
}

// bufferPool lends ReverseProxy 32 KiB copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v := b.p.Get(); v != nil {
		return *(v.(*[]byte))
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }

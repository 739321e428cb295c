package proxy

import (
	"bufio"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/balancer"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/upstream"
	"github.com/portcullis/portcullis/internal/upstreamclient"
)

// upstreamClient is what these tests need of a client: the proxy's
// interface, and a way to drop its pool when a test ends.
type upstreamClient interface {
	Client
	CloseIdleConnections()
}

// upstreamClients are the two clients the proxy can run on, from the
// constructors the gateway uses (with a smaller pool and shorter timeouts).
// The synchronous one exists for speed; its contract is to behave as the
// transport does, so every test that takes a client runs on both.
var upstreamClients = []struct {
	name string
	new  func() upstreamClient
}{
	{"transport", func() upstreamClient { return upstreamclient.NewTransport(4, time.Minute, time.Second) }},
	{"sync", func() upstreamClient { return upstreamclient.NewSyncClient(4, time.Minute, time.Second) }},
}

// maxTestBody is the routes' body limit: more than loopback socket buffers
// hold, so an upload can outlast a backend that stops reading.
const maxTestBody = 32 << 20

// routeOpts are the route and proxy settings a case may change; the zero
// value is the gateway's defaults.
type routeOpts struct {
	timeout     time.Duration // the route timeout; 0 means 5s
	noKeepalive bool          // upstream_keepalive: false
	stream      bool          // REQUEST_BUFFER_BYTES=0: bodies stream to the backend
}

// front is a proxy handler for one route to one backend, served on
// loopback the way the gateway serves it (with its request.Info), and a
// client of its own.
type front struct {
	srv    *httptest.Server
	client *http.Client
}

// newHandler is the proxy of a one-backend route through c. One backend
// means the proxy never retries elsewhere, so what the client does alone
// shows.
func newHandler(t testing.TB, c Client, backend string, o routeOpts) *Handler {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	pool := &upstream.Pool{Members: []upstream.Member{{Backend: upstream.NewBackend(u, upstream.BreakerSettings{}), Weight: 1}}}
	sel, err := balancer.New(balancer.AlgoRoundRobin, pool)
	if err != nil {
		t.Fatal(err)
	}
	if o.timeout == 0 {
		o.timeout = 5 * time.Second
	}
	rt := &Route{
		Prefix:    "/",
		Timeout:   o.timeout,
		MaxBody:   maxTestBody,
		Pool:      pool,
		Selector:  sel,
		Budget:    NewRetryBudget(0.2, 1, 10*time.Second, nil),
		Keepalive: !o.noKeepalive,
	}
	sh := &Engine{
		Client:          c,
		RetryMax:        3,
		BodyReadTimeout: 5 * time.Second,
		BufferBytes:     1 << 20,
		Metrics:         telemetry.NewMetrics("test"),
		Log:             slog.New(slog.DiscardHandler),
	}
	if o.stream {
		sh.BufferBytes = 0
	}
	return New(rt, sh)
}

// serveProxied gives r the request.Info the gateway's earlier steps would
// have filled, and proxies it with h.
func serveProxied(h *Handler, w http.ResponseWriter, r *http.Request) {
	in, r := request.New(w, r, time.Now(), 0)
	in.ID, in.IDValues = "req-1", []string{"req-1"}
	in.Path = r.URL.Path
	in.ClientIP = loopback
	in.ClientIPText, in.ForwardedFor = "127.0.0.1", "127.0.0.1"
	h.ServeHTTP(in.Writer(), r)
}

var loopback = netip.MustParseAddr("127.0.0.1")

// newFront serves newHandler's proxy on loopback, with a client of its own.
func newFront(t testing.TB, c Client, backend string, o routeOpts) *front {
	t.Helper()
	h := newHandler(t, c, backend, o)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serveProxied(h, w, r) }))
	t.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &front{srv: srv, client: &http.Client{Transport: tr}}
}

func (f *front) url(path string) string { return f.srv.URL + path }

// dial opens a raw connection to the front, for exchanges http.Client
// hides (interim answers, upgrades).
func (f *front) dial(t testing.TB) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", f.srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	return c, bufio.NewReader(c)
}

func (f *front) do(t testing.TB, req *http.Request) answer {
	t.Helper()
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	return readAnswer(resp)
}

func (f *front) get(t testing.TB, path string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, f.url(path), nil)
	if err != nil {
		t.Fatal(err)
	}
	return f.do(t, req)
}

// answer is what a client of the gateway saw of one response.
type answer struct {
	status        int
	header        http.Header
	contentLength int64
	body          string
	cut           bool // the body ended in an error, not at its end
	trailer       http.Header
}

func readAnswer(resp *http.Response) answer {
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return answer{status: resp.StatusCode, header: resp.Header, contentLength: resp.ContentLength,
		body: string(b), cut: err != nil, trailer: resp.Trailer}
}

// String is the answer as the differential tests compare it: everything
// but the Date header, which no two answers share.
func (a answer) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d length=%d\n", a.status, a.contentLength)
	writeHeader(&b, a.header)
	if len(a.body) > 200 {
		fmt.Fprintf(&b, "body of %d bytes, sha256 %x", len(a.body), sha256.Sum256([]byte(a.body)))
	} else {
		fmt.Fprintf(&b, "body %q", a.body)
	}
	if a.cut {
		b.WriteString(" (cut short)")
	}
	b.WriteString("\n")
	writeHeader(&b, a.trailer)
	return b.String()
}

func writeHeader(b *strings.Builder, h http.Header) {
	for _, k := range slices.Sorted(maps.Keys(h)) {
		if k == "Date" {
			continue
		}
		v := strings.Join(h[k], ", ")
		if len(v) > 200 {
			v = fmt.Sprintf("%d bytes", len(v))
		}
		fmt.Fprintf(b, "%s: %s\n", k, v)
	}
}

// reset drops c with a TCP RST instead of a FIN.
func reset(c net.Conn) {
	_ = c.(*net.TCPConn).SetLinger(0)
	c.Close()
}

package cors

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/middleware/requestid"
	"github.com/portcullis/portcullis/internal/middleware/secheaders"
	"github.com/portcullis/portcullis/internal/request"
)

const (
	allowed = "https://app.test"
	evil    = "https://evil.test"
)

// serve runs the CORS middleware behind the gateway's envelope (request
// state, request ID, security headers, as order.go does) on a real socket.
func serve(t *testing.T, origins []string, next http.Handler) string {
	t.Helper()
	mw, err := New(origins)
	if err != nil {
		t.Fatal(err)
	}
	h := mw(next)
	h = secheaders.New()(h)
	h = requestid.New(requestid.NewGenerator())(h)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		h.ServeHTTP(in.Writer(), r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// upstream is a real backend that answers with the given headers, behind
// httputil.ReverseProxy (as the gateway's proxy is).
func upstream(t *testing.T, hdr http.Header, calls *atomic.Int32) http.Handler {
	t.Helper()
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		for k, v := range hdr {
			w.Header()[k] = v
		}
		_, _ = io.WriteString(w, "upstream")
	}))
	t.Cleanup(up.Close)
	u, _ := url.Parse(up.URL)
	return &httputil.ReverseProxy{Rewrite: func(pr *httputil.ProxyRequest) { pr.SetURL(u) }}
}

type req struct {
	method  string
	origins []string // Origin header lines
	acrm    string   // Access-Control-Request-Method
	acrh    string   // Access-Control-Request-Headers
}

type want struct {
	status   int
	next     bool     // next handler (upstream) reached
	acao     []string // exact Access-Control-Allow-Origin values (nil = absent)
	acac     []string
	acam     string
	acah     string
	maxAge   string
	exposeIn string // a value Access-Control-Expose-Headers must contain
}

func TestCORS(t *testing.T) {
	explicit := []string{allowed, "http://localhost:3000"}
	tests := []struct {
		name     string
		origins  []string
		upstream http.Header // headers the upstream sets itself
		req      req
		want     want
	}{
		{
			name: "preflight from allowed origin answered with 204, never upstream", origins: explicit,
			req:  req{method: "OPTIONS", origins: []string{allowed}, acrm: "PUT", acrh: "authorization,content-type"},
			want: want{status: 204, acao: []string{allowed}, acac: []string{"true"}, acam: "PUT", acah: "authorization,content-type", maxAge: "600"},
		},
		{
			name: "preflight from disallowed origin gets no CORS headers and is not passed on", origins: explicit,
			req:  req{method: "OPTIONS", origins: []string{evil}, acrm: "DELETE"},
			want: want{status: 204},
		},
		{
			name: "preflight for a method not allowed gets no CORS headers", origins: explicit,
			req:  req{method: "OPTIONS", origins: []string{allowed}, acrm: "TRACE"},
			want: want{status: 204},
		},
		{
			name: "preflight in wildcard mode: * and no credentials", origins: []string{"*"},
			req:  req{method: "OPTIONS", origins: []string{evil}, acrm: "POST"},
			want: want{status: 204, acao: []string{"*"}, acam: "POST", maxAge: "600"},
		},
		{
			name: "plain OPTIONS without Access-Control-Request-Method is an actual request", origins: explicit,
			req:  req{method: "OPTIONS", origins: []string{allowed}},
			want: want{status: 200, next: true, acao: []string{allowed}, acac: []string{"true"}, exposeIn: "X-Request-Id"},
		},
		{
			name: "GET from allowed origin: ACAO echoes it exactly, credentials true", origins: explicit,
			req:  req{method: "GET", origins: []string{allowed}},
			want: want{status: 200, next: true, acao: []string{allowed}, acac: []string{"true"}, exposeIn: "X-Request-Id"},
		},
		{
			name: "GET from the second listed origin", origins: explicit,
			req:  req{method: "GET", origins: []string{"http://localhost:3000"}},
			want: want{status: 200, next: true, acao: []string{"http://localhost:3000"}, acac: []string{"true"}},
		},
		{
			name: "GET from disallowed origin: no CORS headers", origins: explicit,
			req:  req{method: "GET", origins: []string{evil}},
			want: want{status: 200, next: true},
		},
		{
			name: "GET without Origin: no CORS headers", origins: explicit,
			req:  req{method: "GET"},
			want: want{status: 200, next: true},
		},
		{name: "Origin null not reflected", origins: explicit, req: req{method: "GET", origins: []string{"null"}}, want: want{status: 200, next: true}},
		{name: "suffix lookalike not reflected", origins: explicit, req: req{method: "GET", origins: []string{"https://app.test.evil.test"}}, want: want{status: 200, next: true}},
		{name: "prefix lookalike not reflected", origins: explicit, req: req{method: "GET", origins: []string{"https://evilapp.test"}}, want: want{status: 200, next: true}},
		{name: "userinfo trick not reflected", origins: explicit, req: req{method: "GET", origins: []string{"https://app.test:443@evil.test"}}, want: want{status: 200, next: true}},
		{name: "other scheme not reflected", origins: explicit, req: req{method: "GET", origins: []string{"http://app.test"}}, want: want{status: 200, next: true}},
		{
			name: "two Origin headers: served as without Origin", origins: explicit,
			req:  req{method: "GET", origins: []string{allowed, evil}},
			want: want{status: 200, next: true},
		},
		{
			name: "wildcard GET: * and never credentials", origins: []string{"*"},
			req:  req{method: "GET", origins: []string{evil}},
			want: want{status: 200, next: true, acao: []string{"*"}},
		},
		{
			name: "* mixed with explicit origins is wildcard mode without credentials", origins: []string{allowed, "*"},
			req:  req{method: "GET", origins: []string{allowed}},
			want: want{status: 200, next: true, acao: []string{"*"}},
		},
		{
			name: "empty list allows no origin", origins: []string{},
			req:  req{method: "GET", origins: []string{allowed}},
			want: want{status: 200, next: true},
		},
		{
			name: "empty list: preflight not answered positively", origins: []string{},
			req:  req{method: "OPTIONS", origins: []string{allowed}, acrm: "GET"},
			want: want{status: 204},
		},
		{
			name: "upstream's own ACAO is replaced, not duplicated", origins: explicit,
			upstream: http.Header{
				"Access-Control-Allow-Origin":      {"*"},
				"Access-Control-Allow-Credentials": {"false"},
				"Access-Control-Allow-Methods":     {"GET"},
				"Access-Control-Max-Age":           {"86400"},
				"Vary":                             {"Origin"},
			},
			req:  req{method: "GET", origins: []string{allowed}},
			want: want{status: 200, next: true, acao: []string{allowed}, acac: []string{"true"}},
		},
		{
			name: "upstream's ACAO cannot let a disallowed origin in", origins: explicit,
			upstream: http.Header{"Access-Control-Allow-Origin": {evil}, "Access-Control-Allow-Credentials": {"true"}},
			req:      req{method: "GET", origins: []string{evil}},
			want:     want{status: 200, next: true},
		},
		{
			name: "upstream's ACAO removed in wildcard mode too", origins: []string{"*"},
			upstream: http.Header{"Access-Control-Allow-Origin": {allowed}, "Access-Control-Allow-Credentials": {"true"}},
			req:      req{method: "GET", origins: []string{allowed}},
			want:     want{status: 200, next: true, acao: []string{"*"}},
		},
		{
			name: "upstream's exposed headers kept for an allowed origin", origins: explicit,
			upstream: http.Header{"Access-Control-Expose-Headers": {"X-Total-Count"}},
			req:      req{method: "GET", origins: []string{allowed}},
			want:     want{status: 200, next: true, acao: []string{allowed}, acac: []string{"true"}, exposeIn: "X-Total-Count"},
		},
		{
			name: "upstream's exposed headers dropped for a disallowed origin", origins: explicit,
			upstream: http.Header{"Access-Control-Expose-Headers": {"X-Total-Count"}},
			req:      req{method: "GET", origins: []string{evil}},
			want:     want{status: 200, next: true},
		},
		{
			name: "upstream replacing Vary still gets Origin", origins: explicit,
			upstream: http.Header{"Vary": {"Accept-Encoding"}},
			req:      req{method: "GET", origins: []string{allowed}},
			want:     want{status: 200, next: true, acao: []string{allowed}, acac: []string{"true"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var calls atomic.Int32
			base := serve(t, tc.origins, upstream(t, tc.upstream, &calls))
			r, err := http.NewRequest(tc.req.method, base+"/x", nil)
			if err != nil {
				t.Fatal(err)
			}
			for _, o := range tc.req.origins {
				r.Header.Add("Origin", o)
			}
			if tc.req.acrm != "" {
				r.Header.Set("Access-Control-Request-Method", tc.req.acrm)
			}
			if tc.req.acrh != "" {
				r.Header.Set("Access-Control-Request-Headers", tc.req.acrh)
			}
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			h := resp.Header
			if resp.StatusCode != tc.want.status {
				t.Errorf("status = %d, want %d", resp.StatusCode, tc.want.status)
			}
			if got := calls.Load() > 0; got != tc.want.next {
				t.Errorf("upstream reached = %v, want %v", got, tc.want.next)
			}
			if got := h["Access-Control-Allow-Origin"]; !slices.Equal(got, tc.want.acao) {
				t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tc.want.acao)
			}
			if got := h["Access-Control-Allow-Credentials"]; !slices.Equal(got, tc.want.acac) {
				t.Errorf("Access-Control-Allow-Credentials = %q, want %q", got, tc.want.acac)
			}
			if got := h.Get("Access-Control-Allow-Methods"); got != tc.want.acam {
				t.Errorf("Access-Control-Allow-Methods = %q, want %q", got, tc.want.acam)
			}
			if got := h.Get("Access-Control-Allow-Headers"); got != tc.want.acah {
				t.Errorf("Access-Control-Allow-Headers = %q, want %q", got, tc.want.acah)
			}
			if got := h.Get("Access-Control-Max-Age"); got != tc.want.maxAge {
				t.Errorf("Access-Control-Max-Age = %q, want %q", got, tc.want.maxAge)
			}
			for k, v := range h {
				if len(v) > 1 && strings.HasPrefix(k, "Access-Control-") && k != "Access-Control-Expose-Headers" {
					t.Errorf("%s duplicated: %q", k, v)
				}
			}
			if tc.want.exposeIn != "" && !strings.Contains(strings.Join(h["Access-Control-Expose-Headers"], ","), tc.want.exposeIn) {
				t.Errorf("Access-Control-Expose-Headers = %q, want it to hold %s", h["Access-Control-Expose-Headers"], tc.want.exposeIn)
			}
			if tc.want.acao == nil && h["Access-Control-Expose-Headers"] != nil {
				t.Errorf("Access-Control-Expose-Headers = %q for a response without ACAO", h["Access-Control-Expose-Headers"])
			}
			if !varies(h["Vary"]) {
				t.Errorf("Vary = %q, want it to name Origin", h["Vary"])
			}
			// The envelope's headers survive on every answer, preflights included.
			if h.Get("X-Request-Id") == "" {
				t.Error("X-Request-Id missing")
			}
			if h.Get("X-Content-Type-Options") != "nosniff" || h.Get("X-Frame-Options") != "DENY" {
				t.Errorf("security headers missing: %v", h)
			}
		})
	}
}

// Regression: a handler that writes nothing (implicit 200) still gets the
// CORS headers fixed; one that flushes before writing too.
func TestImplicitAndFlushedResponses(t *testing.T) {
	tests := []struct {
		name string
		next http.HandlerFunc
	}{
		{name: "writes nothing", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Access-Control-Allow-Origin", "*")
		}},
		{name: "flushes first", next: func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Access-Control-Allow-Origin", "*")
			http.NewResponseController(w).Flush()
			_, _ = io.WriteString(w, "x")
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			base := serve(t, []string{allowed}, tc.next)
			r, _ := http.NewRequest("GET", base, nil)
			r.Header.Set("Origin", allowed)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if got := resp.Header["Access-Control-Allow-Origin"]; !slices.Equal(got, []string{allowed}) {
				t.Errorf("Access-Control-Allow-Origin = %q, want [%s]", got, allowed)
			}
			if !varies(resp.Header["Vary"]) {
				t.Errorf("Vary = %q", resp.Header["Vary"])
			}
		})
	}
}

func TestNewRefusesPatterns(t *testing.T) {
	tests := []struct {
		name    string
		origins []string
		ok      bool
	}{
		{name: "wildcard", origins: []string{"*"}, ok: true},
		{name: "list", origins: []string{allowed}, ok: true},
		{name: "empty", origins: nil, ok: true},
		{name: "pattern", origins: []string{"https://*.app.test"}, ok: false},
		{name: "blank", origins: []string{""}, ok: false},
		{name: "comma list in one entry", origins: []string{"https://a.test,https://b.test"}, ok: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.origins)
			if (err == nil) != tc.ok {
				t.Errorf("New(%q) error = %v, want ok=%v", tc.origins, err, tc.ok)
			}
		})
	}
}

func BenchmarkActualRequest(b *testing.B) {
	mw, err := New([]string{allowed})
	if err != nil {
		b.Fatal(err)
	}
	h := mw(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	r := httptest.NewRequest("GET", "/x", nil)
	r.Header.Set("Origin", allowed)
	w := &discard{h: make(http.Header, 8)}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, r)
	}
}

type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) WriteHeader(int)             {}
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }

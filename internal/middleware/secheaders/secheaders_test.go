package secheaders

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
)

// serve runs h behind the gateway's envelope (request.New as order.go's
// begin does, then this middleware) on a real plain-HTTP server.
func serve(t *testing.T, h http.HandlerFunc) *httptest.Server {
	return serveOn(t, httptest.NewUnstartedServer(nil), false, h)
}

// serveOn starts srv with h behind the envelope; trusted marks every peer
// as a trusted proxy, as the client-IP step would.
func serveOn(t *testing.T, srv *httptest.Server, trusted bool, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	inner := New()(h)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		in.PeerTrusted = trusted
		inner.ServeHTTP(in.Writer(), r)
	})
	if srv.TLS != nil {
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, method, url string) *http.Response {
	t.Helper()
	return getWith(t, http.DefaultClient, method, url, nil)
}

func getWith(t *testing.T, c *http.Client, method, url string, header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = header
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func TestDefaultsOnEveryResponse(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		handler http.HandlerFunc
		status  int
		bug     string // names the known bug a failure means
	}{
		{
			name:    "plain response with body",
			method:  http.MethodGet,
			handler: func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "hello") },
			status:  http.StatusOK,
		},
		{
			name:    "only WriteHeader(404)",
			method:  http.MethodGet,
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNotFound) },
			status:  http.StatusNotFound,
		},
		{
			name:    "gateway's own JSON error",
			method:  http.MethodGet,
			handler: func(w http.ResponseWriter, r *http.Request) { gwerror.Write(w, r, http.StatusForbidden, "forbidden") },
			status:  http.StatusForbidden,
		},
		{
			name:    "flush before any write",
			method:  http.MethodGet,
			handler: func(w http.ResponseWriter, r *http.Request) { w.(http.Flusher).Flush() },
			status:  http.StatusOK,
		},
		{
			name:    "HEAD with only WriteHeader(200)",
			method:  http.MethodHead,
			handler: func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) },
			status:  http.StatusOK,
		},
		{
			// Regression: the headers are applied in the recording writer's
			// WriteHeader. A handler that writes nothing gets net/http's
			// implicit 200, which never calls that WriteHeader.
			name:    "empty 200: handler writes nothing",
			method:  http.MethodGet,
			handler: func(w http.ResponseWriter, r *http.Request) {},
			status:  http.StatusOK,
			bug:     "an empty 200 (net/http's implicit WriteHeader) went out without security headers",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, tc.handler)
			resp := get(t, tc.method, srv.URL+"/x")
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.status)
			}
			var wrong []string
			for _, d := range Defaults {
				if got := resp.Header.Values(d.Name); len(got) != 1 || got[0] != d.Value {
					wrong = append(wrong, fmt.Sprintf("%s=%q (want %q)", d.Name, got, d.Value))
				}
			}
			if len(wrong) > 0 {
				t.Errorf("%s\nmissing or wrong security headers: %s", tc.bug, strings.Join(wrong, ", "))
			}
		})
	}
}

func TestUpstreamHeadersKept(t *testing.T) {
	const csp = "default-src 'self'"
	const hsts = "max-age=60"
	tests := []struct {
		name   string
		set    map[string]string
		expect map[string]string
	}{
		{
			name:   "upstream CSP kept",
			set:    map[string]string{"Content-Security-Policy": csp},
			expect: map[string]string{"Content-Security-Policy": csp, "X-Frame-Options": "DENY"},
		},
		{
			name:   "upstream HSTS kept",
			set:    map[string]string{"Strict-Transport-Security": hsts},
			expect: map[string]string{"Strict-Transport-Security": hsts, "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'"},
		},
		{
			name:   "both kept, other defaults added",
			set:    map[string]string{"content-security-policy": csp, "strict-transport-security": hsts},
			expect: map[string]string{"Content-Security-Policy": csp, "Strict-Transport-Security": hsts, "X-Frame-Options": "DENY"},
		},
		{
			name:   "upstream X-Frame-Options kept",
			set:    map[string]string{"X-Frame-Options": "SAMEORIGIN"},
			expect: map[string]string{"X-Frame-Options": "SAMEORIGIN", "X-Content-Type-Options": "nosniff"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := serve(t, func(w http.ResponseWriter, r *http.Request) {
				for k, v := range tc.set {
					w.Header().Set(k, v)
				}
				_, _ = io.WriteString(w, "ok")
			})
			resp := get(t, http.MethodGet, srv.URL)
			for k, want := range tc.expect {
				got := resp.Header.Values(k)
				if len(got) != 1 || got[0] != want {
					t.Errorf("%s = %q, want exactly [%q]", k, got, want)
				}
			}
		})
	}
}

// TestHSTSOnlyOverHTTPS: Strict-Transport-Security goes on answers to
// HTTPS requests, the gateway's own TLS or a trusted proxy's
// X-Forwarded-Proto: https, and nowhere else; the other headers go
// everywhere.
func TestHSTSOnlyOverHTTPS(t *testing.T) {
	https := func() *httptest.Server {
		s := httptest.NewUnstartedServer(nil)
		s.TLS = new(tls.Config)
		return s
	}
	plain := func() *httptest.Server { return httptest.NewUnstartedServer(nil) }
	tests := []struct {
		name     string
		srv      func() *httptest.Server
		trusted  bool
		xfp      string
		wantHSTS bool
	}{
		{name: "plain HTTP", srv: plain},
		{name: "gateway TLS", srv: https, wantHSTS: true},
		{name: "trusted proxy says https", srv: plain, trusted: true, xfp: "https", wantHSTS: true},
		{name: "trusted proxy says https first of two", srv: plain, trusted: true, xfp: "HTTPS, http", wantHSTS: true},
		{name: "trusted proxy says http", srv: plain, trusted: true, xfp: "http"},
		{name: "untrusted client claims https", srv: plain, xfp: "https"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := serveOn(t, tc.srv(), tc.trusted, func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
			h := http.Header{}
			if tc.xfp != "" {
				h.Set("X-Forwarded-Proto", tc.xfp)
			}
			resp := getWith(t, srv.Client(), http.MethodGet, srv.URL, h)
			got := resp.Header.Values(HSTS.Name)
			if tc.wantHSTS != (len(got) == 1 && got[0] == HSTS.Value) || len(got) > 1 {
				t.Errorf("%s = %q, want it: %v", HSTS.Name, got, tc.wantHSTS)
			}
			for _, d := range Defaults {
				if resp.Header.Get(d.Name) != d.Value {
					t.Errorf("%s = %q, want %q", d.Name, resp.Header.Get(d.Name), d.Value)
				}
			}
		})
	}
}

package monitor

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/sysmetrics"
)

func do(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func sha(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// TestPageIsSelfContainedUnderItsCSP: the page's only script and style are
// inline and allowed by hash; nothing is loaded from anywhere else, so it
// works air-gapped and under a strict policy.
func TestPageIsSelfContainedUnderItsCSP(t *testing.T) {
	resp, body := do(t, Page(), http.MethodGet, "/monitor")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("status %d, type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	csp := resp.Header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "connect-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-inline") || strings.Contains(csp, "unsafe-eval") {
		t.Errorf("CSP %q allows unsafe sources", csp)
	}
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(body, -1)
	styles := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindAllStringSubmatch(body, -1)
	if len(scripts) != 1 || len(styles) != 1 {
		t.Fatalf("want one inline script and one style, got %d and %d", len(scripts), len(styles))
	}
	if !strings.Contains(csp, "script-src "+sha(scripts[0][1])) || !strings.Contains(csp, "style-src "+sha(styles[0][1])) {
		t.Errorf("CSP %q does not allow the page's own script and style by hash", csp)
	}
	if strings.Contains(body, "{{") {
		t.Error("template placeholders left in the page")
	}
	// Nothing external: no src/href to another origin, no external script,
	// no style attribute the CSP would block.
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//`).FindString(body); m != "" {
		t.Errorf("the page loads something from elsewhere: %q", m)
	}
	if m := regexp.MustCompile(`<script[^>]+src|<link[^>]+stylesheet|style="|@import|url\(`).FindString(body); m != "" {
		t.Errorf("the page has %q, which the CSP blocks or which loads a resource", m)
	}
	if !strings.Contains(body, `fetch(API`) || !strings.Contains(body, `const API = "api/system-metrics"`) {
		t.Error("the page does not poll the relative api/system-metrics")
	}

	head, hb := do(t, Page(), http.MethodHead, "/monitor")
	if head.StatusCode != http.StatusOK || hb != "" || head.Header.Get("Content-Length") != resp.Header.Get("Content-Length") {
		t.Errorf("HEAD: %d, body %d bytes, length %q", head.StatusCode, len(hb), head.Header.Get("Content-Length"))
	}
	if r, _ := do(t, Page(), http.MethodPost, "/monitor"); r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d, Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
}

func TestAPI(t *testing.T) {
	s := sysmetrics.New(sysmetrics.Options{Dir: t.TempDir(), Traffic: func() sysmetrics.Traffic {
		return sysmetrics.Traffic{Requests: 42, Status: [6]int64{2: 40, 5: 2}, ActiveConnections: 3}
	}})
	api := API(Options{Sampler: s, Version: "v9", Started: time.Now().Add(-time.Minute)})

	// Before the first sample: figures are unknown (null), never invented.
	resp, body := do(t, api, http.MethodGet, "/api/system-metrics")
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d, headers %v", resp.StatusCode, resp.Header)
	}
	if !strings.Contains(body, `"cpu_percent":null`) || strings.Contains(body, `"history"`) {
		t.Errorf("before sampling: %s", body)
	}

	s.Sample(context.Background())
	s.Sample(context.Background())
	_, body = do(t, api, http.MethodGet, "/api/system-metrics?since=0")
	var got map[string]any
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("%v: %s", err, body)
	}
	for _, key := range []string{"version", "uptime_seconds", "timestamp", "interval_seconds", "host", "process", "traffic", "history"} {
		if _, ok := got[key]; !ok {
			t.Errorf("missing %q in %s", key, body)
		}
	}
	if got["version"] != "v9" || got["uptime_seconds"].(float64) < 59 {
		t.Errorf("version/uptime: %v %v", got["version"], got["uptime_seconds"])
	}
	tr := got["traffic"].(map[string]any)
	if tr["requests_total"].(float64) != 42 || tr["active_connections"].(float64) != 3 || tr["responses"].(map[string]any)["5xx"].(float64) != 2 {
		t.Errorf("traffic: %v", tr)
	}
	if h := got["history"].([]any); len(h) != 2 {
		t.Errorf("since=0 gave %d history points, want 2", len(h))
	}
	// A poll with the newest point's time gets an empty history.
	last := s.Last(1)[0].T
	_, body = do(t, api, http.MethodGet, "/api/system-metrics?since="+strconv.FormatInt(last, 10))
	if !strings.Contains(body, `"history":[]`) {
		t.Errorf("since=newest: want an empty history, got %s", body)
	}

	for _, bad := range []string{"since=abc", "since=-1", "since=1.5"} {
		if r, b := do(t, api, http.MethodGet, "/api/system-metrics?"+bad); r.StatusCode != http.StatusBadRequest || !strings.Contains(b, `"error"`) {
			t.Errorf("%s: %d %s", bad, r.StatusCode, b)
		}
	}
	if r, _ := do(t, api, http.MethodDelete, "/api/system-metrics"); r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("DELETE: %d", r.StatusCode)
	}
}

// TestAPICertificates: /api/system-metrics lists the served certificates
// with their expiry and the seconds left (negative once expired), and an
// empty list without TLS, so the page can hide its card.
func TestAPICertificates(t *testing.T) {
	s := sysmetrics.New(sysmetrics.Options{Dir: t.TempDir(), Traffic: func() sysmetrics.Traffic { return sysmetrics.Traffic{} }})
	now := time.Now()
	soon := now.Add(10 * 24 * time.Hour).Truncate(time.Second)
	gone := now.Add(-time.Hour).Truncate(time.Second)
	certs := []overview.Certificate{{Name: "api.example.test", NotAfter: soon}, {Name: "old.example.test", NotAfter: gone}}

	tests := []struct {
		name  string
		certs func() []overview.Certificate
		want  []overview.Certificate
	}{
		{name: "no TLS", certs: nil},
		{name: "no certificate yet", certs: func() []overview.Certificate { return nil }},
		{name: "two certificates", certs: func() []overview.Certificate { return certs }, want: certs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, body := do(t, API(Options{Sampler: s, Certificates: tt.certs}), http.MethodGet, "/api/system-metrics")
			var got struct {
				Certificates []struct {
					Name             string `json:"name"`
					NotAfter         string `json:"not_after"`
					ExpiresInSeconds *int64 `json:"expires_in_seconds"`
				} `json:"certificates"`
			}
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if len(tt.want) == 0 {
				if !strings.Contains(body, `"certificates":[]`) {
					t.Errorf("want an empty certificates array, got %s", body)
				}
				return
			}
			if len(got.Certificates) != len(tt.want) {
				t.Fatalf("certificates %+v, want %d", got.Certificates, len(tt.want))
			}
			for i, w := range tt.want {
				c := got.Certificates[i]
				if c.Name != w.Name || c.NotAfter != w.NotAfter.UTC().Format(time.RFC3339) || c.ExpiresInSeconds == nil {
					t.Errorf("certificate %d = %+v, want %s expiring %s", i, c, w.Name, w.NotAfter.UTC().Format(time.RFC3339))
					continue
				}
				left := time.Until(w.NotAfter).Seconds()
				if d := float64(*c.ExpiresInSeconds) - left; d < -5 || d > 5 {
					t.Errorf("%s: expires_in_seconds %d, want about %.0f", c.Name, *c.ExpiresInSeconds, left)
				}
			}
			if *got.Certificates[1].ExpiresInSeconds >= 0 {
				t.Errorf("an expired certificate has %d seconds left, want a negative number", *got.Certificates[1].ExpiresInSeconds)
			}
		})
	}
}

// TestPageHasACertificatesCard: the card the script fills is on the page,
// hidden until there is a certificate to show.
func TestPageHasACertificatesCard(t *testing.T) {
	_, body := do(t, Page(), http.MethodGet, "/monitor")
	if !strings.Contains(body, `<figure class="card" id="certs" hidden>`) || !strings.Contains(body, `id="certs-body"`) {
		t.Error("no hidden certificates card on the page")
	}
}

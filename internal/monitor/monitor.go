// Package monitor serves the web system monitor: one self-contained HTML page
// (/monitor, everything embedded, nothing fetched from elsewhere, so it works
// air-gapped) and the JSON it polls (/api/system-metrics), both read from
// the last sysmetrics sample and the served certificates.
package monitor

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/sysmetrics"
)

var (
	//go:embed assets/index.html
	pageHTML string
	//go:embed assets/style.css
	pageCSS string
	//go:embed assets/app.js
	pageJS string
)

// page is the assembled HTML and the Content-Security-Policy that lets only
// its own inline style and script run (by hash), talk only to its own
// origin, and load nothing else.
var page, pageCSP = func() ([]byte, string) {
	html := strings.Replace(pageHTML, "{{STYLE}}", pageCSS, 1)
	html = strings.Replace(html, "{{SCRIPT}}", pageJS, 1)
	return []byte(html), "default-src 'none'; " +
		"script-src '" + hash(pageJS) + "'; style-src '" + hash(pageCSS) + "'; " +
		"connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

func hash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// Options are what the handlers read.
type Options struct {
	Sampler *sysmetrics.Sampler
	Version string
	Started time.Time
	// Certificates lists the certificates the public listener serves; nil
	// (no TLS) lists none.
	Certificates func() []overview.Certificate
}

// Certificate is one served certificate as /api/system-metrics and /stats
// show it.
type Certificate struct {
	Name string `json:"name"`
	// NotAfter is when it expires, RFC 3339 in UTC.
	NotAfter string `json:"not_after"`
	// ExpiresInSeconds is how long it has left at the time of the answer;
	// negative once it has expired.
	ExpiresInSeconds int64 `json:"expires_in_seconds"`
}

// Certificates describes certs as they stand at now, in their order. The
// result is never nil, so the JSON says [] without TLS.
func Certificates(certs []overview.Certificate, now time.Time) []Certificate {
	out := make([]Certificate, len(certs))
	for i, c := range certs {
		out[i] = Certificate{
			Name:             c.Name,
			NotAfter:         c.NotAfter.UTC().Format(time.RFC3339),
			ExpiresInSeconds: int64(c.NotAfter.Sub(now) / time.Second),
		}
	}
	return out
}

// Page serves the monitor's HTML.
func Page() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("Cache-Control", "no-cache")
		h.Set("Content-Length", strconv.Itoa(len(page)))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(page)
		}
	})
}

// Response is the body of /api/system-metrics: the last sample, the
// gateway's version and uptime, the served certificates, and with ?since=
// the history points newer than that Unix-millisecond time.
type Response struct {
	Version       string  `json:"version"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	sysmetrics.Sample
	Certificates []Certificate      `json:"certificates"`
	History      []sysmetrics.Point `json:"history,omitzero"`
}

// API serves /api/system-metrics.
func API(o Options) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !readOnly(w, r) {
			return
		}
		resp := Response{Version: o.Version, Sample: o.Sampler.Latest()}
		var certs []overview.Certificate
		if o.Certificates != nil {
			certs = o.Certificates()
		}
		resp.Certificates = Certificates(certs, time.Now())
		if !o.Started.IsZero() {
			resp.UptimeSeconds = float64(time.Since(o.Started).Milliseconds()) / 1000
		}
		if v := r.URL.Query().Get("since"); v != "" {
			since, err := strconv.ParseInt(v, 10, 64)
			if err != nil || since < 0 {
				gwerror.Write(w, r, http.StatusBadRequest, "since: expected Unix milliseconds (0 for the whole history)")
				return
			}
			resp.History = o.Sampler.Since(since)
		}
		b, err := json.Marshal(resp)
		if err != nil { // only NaN could do this, and Num writes it as null
			gwerror.Write(w, r, http.StatusInternalServerError, "encoding system metrics")
			return
		}
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		h.Set("Content-Length", strconv.Itoa(len(b)+1))
		w.WriteHeader(http.StatusOK)
		if r.Method != http.MethodHead {
			_, _ = w.Write(append(b, '\n'))
		}
	})
}

// readOnly answers 405 to anything but GET and HEAD.
func readOnly(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	gwerror.Write(w, r, http.StatusMethodNotAllowed, "method not allowed")
	return false
}

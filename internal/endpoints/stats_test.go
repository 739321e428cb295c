package endpoints

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/edge"
	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// TestTrafficSumsTheLatencyHistogram: the sampler's read adds every
// method's and endpoint's buckets into one histogram.
func TestTrafficSumsTheLatencyHistogram(t *testing.T) {
	m := telemetry.NewMetrics("test")
	m.Endpoint("/api").Observe("GET", 200, 0.003)
	m.Endpoint("/api").Observe("POST", 500, 0.003)
	m.Endpoint("unmatched").Observe("GET", 404, 20)
	tr := traffic(m, nil, 7)
	if tr.ActiveConnections != 7 || tr.CacheKnown {
		t.Errorf("traffic = %+v", tr)
	}
	n := len(tr.Latency.Counts)
	if n == 0 || tr.Latency.Counts[n-1] != 3 {
		t.Fatalf("latency counts %v: want a total of 3 samples", tr.Latency.Counts)
	}
	// 3 ms is under every bound above it; the 20 s sample only in +Inf.
	for i, b := range tr.Latency.Bounds {
		want := uint64(0)
		if b >= 0.003 {
			want = 2
		}
		if b >= 20 {
			want = 3
		}
		if tr.Latency.Counts[i] != want {
			t.Errorf("bucket le=%g: %d, want %d", b, tr.Latency.Counts[i], want)
		}
	}
}

// BenchmarkTraffic is the sampler's once-a-second read of the registry
// (totals, the request-duration histogram summed over every series).
func BenchmarkTraffic(b *testing.B) {
	m := telemetry.NewMetrics("test")
	for i, ep := range []string{"/api", "/health", "/metrics", "unmatched"} {
		for _, meth := range []string{"GET", "POST", "HEAD"} {
			m.Endpoint(ep).Observe(meth, 200+i, 0.003)
		}
	}
	for b.Loop() {
		_ = traffic(m, nil, 0)
	}
}

// newTestSet builds the endpoints over the default configuration and an
// empty route table, with certs as the served certificates.
func newTestSet(t *testing.T, certs func() []overview.Certificate) *Set {
	t.Helper()
	cfg, err := config.Load(func(string) (string, bool) { return "", false }, nil)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.DiscardHandler)
	m := telemetry.NewMetrics("test")
	e, closeAll, err := edge.Build(t.Context(), &cfg.Static, log, m.Registry)
	t.Cleanup(closeAll)
	if err != nil {
		t.Fatal(err)
	}
	var routes routetable.Holder
	routes.Store(&routetable.Snapshot{})
	s, err := New(Options{
		Config: &cfg.Static, Version: "test", Started: time.Now(),
		Draining: func() bool { return false }, Conns: func() int64 { return 0 },
		Metrics: m, Routes: &routes, Edge: e,
		Algorithm:    func() string { return cfg.LoadBalancingAlgo },
		Certificates: certs,
		Log:          log,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStatsCertificates: /stats lists the served certificates with their
// expiry and the seconds left, an empty list without TLS; the dashboard's
// overview carries the same list.
func TestStatsCertificates(t *testing.T) {
	day := 24 * time.Hour
	certs := []overview.Certificate{
		{Name: "api.example.test", NotAfter: time.Now().Add(90 * day).Truncate(time.Second)},
		{Name: "old.example.test", NotAfter: time.Now().Add(5 * day).Truncate(time.Second)},
	}
	tests := []struct {
		name  string
		certs func() []overview.Certificate
		want  []overview.Certificate
	}{
		{name: "no TLS", certs: nil},
		{name: "certificates", certs: func() []overview.Certificate { return certs }, want: certs},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestSet(t, tt.certs)
			rec := httptest.NewRecorder()
			s.Ops.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/stats", nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("/stats: %d %s", rec.Code, rec.Body)
			}
			var got struct {
				Certificates []struct {
					Name             string  `json:"name"`
					NotAfter         string  `json:"not_after"`
					ExpiresInSeconds float64 `json:"expires_in_seconds"`
				} `json:"certificates"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatal(err)
			}
			if got.Certificates == nil || len(got.Certificates) != len(tt.want) {
				t.Fatalf("certificates = %+v, want %d (an array, never null): %s", got.Certificates, len(tt.want), rec.Body)
			}
			for i, w := range tt.want {
				c := got.Certificates[i]
				left := time.Until(w.NotAfter).Seconds()
				if c.Name != w.Name || c.NotAfter != w.NotAfter.UTC().Format(time.RFC3339) || c.ExpiresInSeconds < left-5 || c.ExpiresInSeconds > left+5 {
					t.Errorf("certificate %d = %+v, want %s, %s, about %.0f s left", i, c, w.Name, w.NotAfter.UTC().Format(time.RFC3339), left)
				}
			}
			if ov := s.Overview(0); !slices.Equal(ov.Certificates, tt.want) {
				t.Errorf("Overview().Certificates = %v, want %v", ov.Certificates, tt.want)
			}
		})
	}
}

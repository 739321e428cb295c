package endpoints

import (
	"testing"

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

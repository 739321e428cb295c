package proxy

import (
	"net/url"
	"testing"

	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/upstream"
)

// TestForgetReleasesARetiredBackend pins that the proxy keeps nothing for a
// backend a reload dropped: Forget removes its observer and series, and a
// request still running on the old table cannot bring them back.
func TestForgetReleasesARetiredBackend(t *testing.T) {
	sh := &Engine{Metrics: telemetry.NewMetrics("test")}
	reg := upstream.NewRegistry(upstream.BreakerSettings{})
	b := reg.Get(&url.URL{Scheme: "http", Host: "a:80"})
	sh.upstreamObserver(b).Observe(1)
	if n := upstreamSeries(t, sh); n != 1 {
		t.Fatalf("%d series", n)
	}
	reg.Retain(nil)
	sh.Forget(b)
	sh.upstreamObserver(b).Observe(1) // a late attempt on the old table
	if n := upstreamSeries(t, sh); n != 0 {
		t.Errorf("%d series after Forget", n)
	}
	n := 0
	sh.observers.Range(func(any, any) bool { n++; return true })
	if n != 0 {
		t.Errorf("%d observers kept after Forget", n)
	}
}

func upstreamSeries(t *testing.T, sh *Engine) int {
	t.Helper()
	mfs, err := sh.Metrics.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "upstream_request_duration_seconds" {
			return len(mf.GetMetric())
		}
	}
	return 0
}

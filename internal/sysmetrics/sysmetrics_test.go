package sysmetrics

import (
	"context"
	"encoding/json"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

var bounds = []float64{.001, .005, .01, .05, .1}

// hist builds a cumulative histogram from per-bucket counts (the last is
// the +Inf bucket).
func hist(per ...uint64) Histogram {
	h := Histogram{Bounds: bounds, Counts: make([]uint64, len(per))}
	var c uint64
	for i, n := range per {
		c += n
		h.Counts[i] = c
	}
	return h
}

func TestQuantile(t *testing.T) {
	tests := []struct {
		name string
		h    Histogram
		q    float64
		want float64 // ms; NaN = unknown
	}{
		{name: "no observations", h: hist(0, 0, 0, 0, 0, 0), q: 0.5, want: math.NaN()},
		{name: "no buckets", h: Histogram{}, q: 0.5, want: math.NaN()},
		{name: "all in the first bucket interpolates from zero", h: hist(10, 0, 0, 0, 0, 0), q: 0.5, want: 0.5},
		{name: "median in the second bucket", h: hist(50, 50, 0, 0, 0, 0), q: 0.75, want: 3}, // 1ms + 4ms*(25/50)
		{name: "p99 in the +Inf bucket reads the highest bound", h: hist(90, 0, 0, 0, 0, 10), q: 0.99, want: 100},
		{name: "p100 lands on a bucket edge", h: hist(0, 0, 4, 0, 0, 0), q: 1, want: 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := float64(quantileMS(tt.q, tt.h))
			if math.IsNaN(tt.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tt.want) > 1e-9) {
				t.Fatalf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestDelta(t *testing.T) {
	cur, old := hist(5, 5, 0, 0, 0, 0), hist(2, 0, 0, 0, 0, 0)
	d := delta(cur, old)
	if want := []uint64{3, 8, 8, 8, 8, 8}; !equal(d.Counts, want) {
		t.Fatalf("delta = %v, want %v", d.Counts, want)
	}
	// A counter reset (a restart of the histogram) never gives negative counts.
	if d := delta(old, cur); !equal(d.Counts, old.Counts) {
		t.Fatalf("delta after a reset = %v, want the current counts %v", d.Counts, old.Counts)
	}
}

func equal(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestNumJSON(t *testing.T) {
	b, err := json.Marshal(struct {
		A, B, C Num
	}{Num(math.NaN()), Num(math.Inf(1)), Num(1.23456)})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), `{"A":null,"B":null,"C":1.235}`; got != want {
		t.Fatalf("got %s, want %s", got, want)
	}
}

// TestRecordTurnsCountersIntoRates drives record with scripted readings and
// traffic, one second apart.
func TestRecordTurnsCountersIntoRates(t *testing.T) {
	s := New(Options{History: 3})
	t0 := time.Unix(1_700_000_000, 0)
	r := reading{cpuBusy: 100, cpuTotal: 400, procCPU: 10, cpuOK: true, procOK: true}
	s.record(t0, r, Traffic{Requests: 100, Status: [6]int64{2: 100}, Latency: hist(100, 0, 0, 0, 0, 0)})

	first := s.Latest()
	if first.Host.CPUPercent.Known() || first.Process.CPUPercent.Known() || first.Traffic.RequestsPerSecond.Known() {
		t.Fatalf("the first sample has no interval, so no rates: %+v", first)
	}

	r2 := reading{cpuBusy: 150, cpuTotal: 600, procCPU: 10.5, cpuOK: true, procOK: true}
	tr := Traffic{
		Requests: 300, Status: [6]int64{2: 280, 5: 20}, ActiveConnections: 7, Inflight: 2,
		Latency:    hist(100, 100, 100, 0, 0, 0), // the 200 new requests took 1–10 ms
		CacheKnown: true, CacheHits: 3, CacheMisses: 1,
	}
	s.record(t0.Add(time.Second), r2, tr)
	got := s.Latest()
	checks := []struct {
		name      string
		got, want float64
	}{
		{"host cpu %", float64(got.Host.CPUPercent), 25},       // 50 busy of 200
		{"process cpu %", float64(got.Process.CPUPercent), 50}, // 0.5 s in 1 s
		{"requests/s", float64(got.Traffic.RequestsPerSecond), 200},
		{"error rate", float64(got.Traffic.ErrorRate), 0.1},
		{"p50 ms", float64(got.Traffic.LatencyMS.P50), 5},   // rank 100 of 200: top of the 1–5 ms bucket
		{"p99 ms", float64(got.Traffic.LatencyMS.P99), 9.9}, // rank 198: 5 + 5*(98/100)
		{"cache hit ratio", float64(got.Traffic.CacheHitRatio), 0.75},
		{"latency window s", got.Traffic.LatencyWindowSeconds, 1},
	}
	for _, c := range checks {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	if got.Traffic.ActiveConnections != 7 || got.Traffic.InflightRequests != 2 || got.Traffic.Responses.S5xx != 20 {
		t.Errorf("counters not carried over: %+v", got.Traffic)
	}

	// A quiet interval: zero requests per second, latency unknown once the
	// window has no requests left in it.
	s.record(t0.Add(2*time.Second), r2, tr)
	if q := s.Latest().Traffic; q.RequestsPerSecond != 0 || q.ErrorRate != 0 || !q.LatencyMS.P50.Known() {
		t.Errorf("quiet second: %+v (the window still holds the previous requests)", q)
	}

	// The history keeps the newest 3 points, oldest first.
	s.record(t0.Add(3*time.Second), r2, tr)
	hist := s.Last(10)
	if len(hist) != 3 || hist[0].T != t0.Add(time.Second).UnixMilli() || hist[2].T != t0.Add(3*time.Second).UnixMilli() {
		t.Fatalf("history = %+v, want the last three points in order", hist)
	}
	if since := s.Since(t0.Add(2 * time.Second).UnixMilli()); len(since) != 1 || since[0].T != t0.Add(3*time.Second).UnixMilli() {
		t.Fatalf("Since = %+v, want only the newest point", since)
	}
	if last := s.Last(1); len(last) != 1 || last[0].T != t0.Add(3*time.Second).UnixMilli() {
		t.Fatalf("Last(1) = %+v", last)
	}
	if hist[0].RPS != 200 || hist[0].P99 != got.Traffic.LatencyMS.P99 {
		t.Errorf("history point does not match its sample: %+v", hist[0])
	}
}

// TestSampleIsPlausible reads the real host through gopsutil.
func TestSampleIsPlausible(t *testing.T) {
	dir := t.TempDir()
	s := New(Options{Dir: dir})
	ctx := context.Background()
	s.Sample(ctx)
	busy := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(busy) { // burn some CPU so the process figure is not zero
	}
	s.Sample(ctx)
	got := s.Latest()
	cores := float64(runtime.NumCPU())
	if c := float64(got.Host.CPUPercent); !got.Host.CPUPercent.Known() || c < 0 || c > 100 {
		t.Errorf("host cpu_percent = %v, want 0–100", c)
	}
	if c := float64(got.Process.CPUPercent); !got.Process.CPUPercent.Known() || c <= 0 || c > 100*cores {
		t.Errorf("process cpu_percent = %v after burning CPU, want (0, %v]", c, 100*cores)
	}
	m := got.Host.Memory
	if m.TotalBytes == 0 || m.UsedBytes == 0 || m.UsedBytes >= m.TotalBytes || m.AvailableBytes > m.TotalBytes || m.UsedPercent <= 0 || m.UsedPercent >= 100 {
		t.Errorf("memory not plausible: %+v", m)
	}
	d := got.Host.Disk
	if d.TotalBytes == 0 || d.UsedBytes > d.TotalBytes || d.FreeBytes > d.TotalBytes || d.UsedPercent < 0 || d.UsedPercent > 100 || !strings.HasPrefix(d.Path, "/") {
		t.Errorf("disk not plausible: %+v", d)
	}
	p := got.Process
	if p.RSSBytes == 0 || p.RSSBytes >= m.TotalBytes || p.Goroutines < 1 || p.Threads < 1 || p.OpenFDs < 3 || p.HeapBytes == 0 {
		t.Errorf("process not plausible: %+v", p)
	}
	if got.Host.CPUCores != runtime.NumCPU() || got.Host.Load.Load1 < 0 {
		t.Errorf("host: %+v", got.Host)
	}
	if _, err := json.Marshal(got); err != nil {
		t.Fatalf("the sample does not encode: %v", err)
	}
}

func TestRunSamplesUntilCancelled(t *testing.T) {
	calls := make(chan struct{}, 100)
	s := New(Options{Interval: 10 * time.Millisecond, Traffic: func() Traffic { calls <- struct{}{}; return Traffic{} }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	for range 3 {
		select {
		case <-calls:
		case <-time.After(5 * time.Second):
			t.Fatal("the sampler did not sample")
		}
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if len(s.Last(100)) < 3 {
		t.Fatal("samples were not recorded")
	}
}

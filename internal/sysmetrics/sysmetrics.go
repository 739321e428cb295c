// Package sysmetrics samples the host, the process and the gateway's traffic
// once a second in one background goroutine and keeps a short history, so
// the web monitor and the TTY dashboard read the last sample and never pay
// for a probe per request.
package sysmetrics

import (
	"context"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"time"
)

// Defaults of Options.
const (
	DefaultInterval = time.Second
	DefaultHistory  = 300 // five minutes at one sample a second
	// LatencyWindow is how many intervals the latency percentiles cover:
	// one second of a quiet gateway holds too few requests to say much.
	LatencyWindow = 10
)

// Num is a figure that may be unknown (NaN), written as JSON null: a CPU
// percentage before the second sample, a latency percentile with no
// requests in its window.
type Num float64

// MarshalJSON writes NaN and infinities as null, others with up to three
// decimals.
func (n Num) MarshalJSON() ([]byte, error) {
	f := float64(n)
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return []byte("null"), nil
	}
	return strconv.AppendFloat(nil, math.Round(f*1000)/1000, 'f', -1, 64), nil
}

// Known reports whether n holds a value.
func (n Num) Known() bool { return !math.IsNaN(float64(n)) && !math.IsInf(float64(n), 0) }

var unknown = Num(math.NaN())

// Histogram is a cumulative latency histogram in seconds, as Prometheus
// keeps it.
type Histogram struct {
	Bounds []float64 // upper bounds, ascending, without +Inf
	Counts []uint64  // cumulative count at each bound; the last entry (+Inf) is the total
}

// Traffic is what the gateway hands the sampler: cumulative counters it
// already keeps. The sampler turns two of them into rates.
type Traffic struct {
	Requests          int64
	Status            [6]int64 // index = status/100
	Inflight          int64
	ActiveConnections int64
	Latency           Histogram
	// CacheKnown is false while no cache counters exist.
	CacheKnown             bool
	CacheHits, CacheMisses int64
}

// Sample is one snapshot; its JSON is the body of /api/system-metrics.
type Sample struct {
	Time            time.Time `json:"-"`
	Timestamp       string    `json:"timestamp"`
	IntervalSeconds float64   `json:"interval_seconds"`
	Host            Host      `json:"host"`
	Process         Process   `json:"process"`
	Traffic         Rates     `json:"traffic"`
}

// Host is the machine the gateway runs on.
type Host struct {
	CPUPercent Num    `json:"cpu_percent"` // busy share of all cores, 0–100
	CPUCores   int    `json:"cpu_cores"`
	Load       Load   `json:"load_average"`
	Memory     Memory `json:"memory"`
	Disk       Disk   `json:"disk"`
}

// Load is the run-queue load average.
type Load struct {
	Load1  float64 `json:"load1"`
	Load5  float64 `json:"load5"`
	Load15 float64 `json:"load15"`
}

// Memory is the host's RAM; used = total − available.
type Memory struct {
	TotalBytes     uint64  `json:"total_bytes"`
	UsedBytes      uint64  `json:"used_bytes"`
	AvailableBytes uint64  `json:"available_bytes"`
	UsedPercent    float64 `json:"used_percent"`
}

// Disk is the volume holding the working directory.
type Disk struct {
	Path        string  `json:"path"`
	TotalBytes  uint64  `json:"total_bytes"`
	UsedBytes   uint64  `json:"used_bytes"`
	FreeBytes   uint64  `json:"free_bytes"`
	UsedPercent float64 `json:"used_percent"`
}

// Process is the gateway process itself.
type Process struct {
	PID        int    `json:"pid"`
	CPUPercent Num    `json:"cpu_percent"` // of one core, so up to 100 × cores
	RSSBytes   uint64 `json:"rss_bytes"`
	OpenFDs    int    `json:"open_fds"`
	Threads    int    `json:"threads"`
	Goroutines int    `json:"goroutines"`
	HeapBytes  uint64 `json:"heap_bytes"`
	GCCycles   uint64 `json:"gc_cycles"`
}

// Rates is the traffic: totals and what changed over the last interval.
type Rates struct {
	RequestsTotal        int64     `json:"requests_total"`
	RequestsPerSecond    Num       `json:"requests_per_second"`
	Responses            Responses `json:"responses"`
	ErrorRate            Num       `json:"error_rate"` // 5xx share of the interval's answers, 0–1
	ActiveConnections    int64     `json:"active_connections"`
	InflightRequests     int64     `json:"inflight_requests"`
	LatencyMS            Latency   `json:"latency_ms"`
	LatencyWindowSeconds float64   `json:"latency_window_seconds"`
	CacheHits            int64     `json:"cache_hits"`
	CacheMisses          int64     `json:"cache_misses"`
	CacheHitRatio        Num       `json:"cache_hit_ratio"` // hits / (hits + misses) since boot, 0–1
}

// Responses counts answers by status class since boot.
type Responses struct {
	S2xx int64 `json:"2xx"`
	S3xx int64 `json:"3xx"`
	S4xx int64 `json:"4xx"`
	S5xx int64 `json:"5xx"`
}

// Latency holds request-duration percentiles in milliseconds.
type Latency struct {
	P50 Num `json:"p50"`
	P90 Num `json:"p90"`
	P99 Num `json:"p99"`
}

// Point is one entry of the history the charts draw.
type Point struct {
	T                 int64   `json:"t"` // Unix milliseconds
	HostCPU           Num     `json:"host_cpu_percent"`
	ProcessCPU        Num     `json:"process_cpu_percent"`
	MemoryUsedPercent float64 `json:"memory_used_percent"`
	RSSBytes          uint64  `json:"rss_bytes"`
	DiskUsedPercent   float64 `json:"disk_used_percent"`
	Goroutines        int     `json:"goroutines"`
	RPS               Num     `json:"requests_per_second"`
	ErrorRate         Num     `json:"error_rate"`
	P50               Num     `json:"p50_ms"`
	P90               Num     `json:"p90_ms"`
	P99               Num     `json:"p99_ms"`
	ActiveConnections int64   `json:"active_connections"`
}

// Options configure a Sampler.
type Options struct {
	Interval time.Duration    // default DefaultInterval
	History  int              // points kept; default DefaultHistory
	Dir      string           // a path on the volume whose usage is reported; default "."
	Traffic  func() Traffic   // the gateway's counters; nil = no traffic figures
	Log      *slog.Logger     // probe failures, once per outage; default discards
	Now      func() time.Time // default time.Now
}

// Sampler samples in one goroutine (Run) and serves the last sample and the
// history to any number of readers.
type Sampler struct {
	opts  Options
	cores int
	pid   int
	probe *prober

	mu     sync.RWMutex // readers vs the one writer, once a second: never on a request path
	latest Sample
	ring   []Point // circular, len == opts.History once full
	next   int     // where the next point goes
	full   bool

	// sampler goroutine only
	prev     reading
	prevT    time.Time
	prevTr   Traffic
	havePrev bool
	window   []Histogram // the last LatencyWindow+1 cumulative histograms
}

// New returns a sampler; it samples nothing until Run.
func New(o Options) *Sampler {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.History <= 0 {
		o.History = DefaultHistory
	}
	if o.Dir == "" {
		o.Dir = "."
	}
	if abs, err := filepath.Abs(o.Dir); err == nil {
		o.Dir = abs
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	s := &Sampler{opts: o, cores: runtime.NumCPU(), probe: newProber(o.Dir)}
	s.pid = os.Getpid()
	s.latest = s.emptySample()
	return s
}

func (s *Sampler) emptySample() Sample {
	return Sample{
		Host:    Host{CPUPercent: unknown, CPUCores: s.cores},
		Process: Process{PID: s.pid, CPUPercent: unknown},
		Traffic: Rates{RequestsPerSecond: unknown, ErrorRate: unknown, CacheHitRatio: unknown,
			LatencyMS: Latency{P50: unknown, P90: unknown, P99: unknown}},
	}
}

// Run samples at once, then every interval, until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	defer func() {
		if p := recover(); p != nil {
			s.opts.Log.Error("system metrics sampler panicked; monitor figures stop updating", "panic", p)
		}
	}()
	s.Sample(ctx)
	t := time.NewTicker(s.opts.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.Sample(ctx)
		}
	}
}

// Sample takes one sample now. Run calls it; tests call it directly. It
// must not be called concurrently with itself.
func (s *Sampler) Sample(ctx context.Context) {
	r, errs := s.probe.read(ctx)
	for name, failed := range s.probe.failed {
		if failed && errs[name] == nil {
			s.probe.failed[name] = false
			s.opts.Log.Info("system metric probe recovered", "probe", name)
		}
	}
	for name, err := range errs {
		if !s.probe.failed[name] {
			s.probe.failed[name] = true
			s.opts.Log.Warn("system metric probe failed; the figure reads zero until it recovers", "probe", name, "error", err.Error())
		}
	}
	var tr Traffic
	if s.opts.Traffic != nil {
		tr = s.opts.Traffic()
	}
	s.record(s.opts.Now(), r, tr)
}

// record turns a reading and the traffic counters into a sample and a
// history point. It is pure apart from the sampler's own state.
func (s *Sampler) record(now time.Time, r reading, tr Traffic) {
	smp := s.emptySample()
	smp.Time = now
	smp.Timestamp = now.UTC().Format(time.RFC3339Nano)
	smp.IntervalSeconds = s.opts.Interval.Seconds()
	smp.Host.Load, smp.Host.Memory, smp.Host.Disk = r.load, r.mem, r.disk
	smp.Process.RSSBytes, smp.Process.OpenFDs, smp.Process.Threads = r.rss, r.fds, r.thread
	smp.Process.Goroutines, smp.Process.HeapBytes, smp.Process.GCCycles = r.goroutines, r.heapBytes, r.gcCycles

	t := &smp.Traffic
	t.RequestsTotal = tr.Requests
	t.Responses = Responses{S2xx: tr.Status[2], S3xx: tr.Status[3], S4xx: tr.Status[4], S5xx: tr.Status[5]}
	t.ActiveConnections, t.InflightRequests = tr.ActiveConnections, tr.Inflight
	t.CacheHits, t.CacheMisses = tr.CacheHits, tr.CacheMisses
	if tr.CacheKnown && tr.CacheHits+tr.CacheMisses > 0 {
		t.CacheHitRatio = Num(float64(tr.CacheHits) / float64(tr.CacheHits+tr.CacheMisses))
	}

	if s.havePrev {
		wall := now.Sub(s.prevT).Seconds()
		if wall > 0 {
			smp.IntervalSeconds = wall
			if r.cpuOK && s.prev.cpuOK && r.cpuTotal > s.prev.cpuTotal {
				smp.Host.CPUPercent = Num(clamp(pct(r.cpuBusy-s.prev.cpuBusy, r.cpuTotal-s.prev.cpuTotal), 0, 100))
			}
			if r.procOK && s.prev.procOK {
				smp.Process.CPUPercent = Num(clamp((r.procCPU-s.prev.procCPU)/wall*100, 0, float64(100*s.cores)))
			}
			reqs := tr.Requests - s.prevTr.Requests
			if reqs >= 0 {
				t.RequestsPerSecond = Num(float64(reqs) / wall)
			}
			if answered := sumStatus(tr.Status) - sumStatus(s.prevTr.Status); answered > 0 {
				t.ErrorRate = Num(float64(tr.Status[5]-s.prevTr.Status[5]) / float64(answered))
			} else if reqs >= 0 {
				t.ErrorRate = 0
			}
		}
	}
	s.window = append(s.window, tr.Latency)
	if len(s.window) > LatencyWindow+1 {
		s.window = s.window[1:]
	}
	if len(s.window) > 1 {
		d := delta(s.window[len(s.window)-1], s.window[0])
		t.LatencyMS = Latency{P50: quantileMS(0.5, d), P90: quantileMS(0.9, d), P99: quantileMS(0.99, d)}
		t.LatencyWindowSeconds = float64(len(s.window)-1) * s.opts.Interval.Seconds()
	}
	s.prev, s.prevT, s.prevTr, s.havePrev = r, now, tr, true

	p := Point{
		T: now.UnixMilli(), HostCPU: smp.Host.CPUPercent, ProcessCPU: smp.Process.CPUPercent,
		MemoryUsedPercent: smp.Host.Memory.UsedPercent, RSSBytes: smp.Process.RSSBytes,
		DiskUsedPercent: smp.Host.Disk.UsedPercent, Goroutines: smp.Process.Goroutines,
		RPS: t.RequestsPerSecond, ErrorRate: t.ErrorRate,
		P50: t.LatencyMS.P50, P90: t.LatencyMS.P90, P99: t.LatencyMS.P99,
		ActiveConnections: t.ActiveConnections,
	}
	s.mu.Lock()
	s.latest = smp
	if len(s.ring) < s.opts.History {
		s.ring = append(s.ring, p)
	} else {
		s.ring[s.next] = p
		s.full = true
	}
	s.next = (s.next + 1) % s.opts.History
	s.mu.Unlock()
}

// Latest returns the last sample (an empty one, with unknown figures,
// before the first).
func (s *Sampler) Latest() Sample {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.latest
}

// Since returns the history points newer than t (Unix milliseconds), oldest
// first.
func (s *Sampler) Since(t int64) []Point {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Point, 0, len(s.ring))
	for _, p := range s.ordered() {
		if p.T > t {
			out = append(out, p)
		}
	}
	return out
}

// Last returns up to n of the newest history points, oldest first.
func (s *Sampler) Last(n int) []Point {
	s.mu.RLock()
	defer s.mu.RUnlock()
	all := s.ordered()
	if n < len(all) {
		all = all[len(all)-n:]
	}
	return append([]Point(nil), all...)
}

// ordered is the ring oldest first; the caller holds mu.
func (s *Sampler) ordered() []Point {
	if !s.full {
		return s.ring
	}
	out := make([]Point, 0, len(s.ring))
	out = append(out, s.ring[s.next:]...)
	return append(out, s.ring[:s.next]...)
}

func sumStatus(st [6]int64) (n int64) {
	for _, v := range st {
		n += v
	}
	return n
}

func clamp(v, lo, hi float64) float64 { return math.Max(lo, math.Min(hi, v)) }

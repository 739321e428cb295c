// Package telemetry owns the gateway's Prometheus registry and the metrics
// whose names are a contract with dashboards (docs/operations.md), plus the
// JSON logger every component uses.
package telemetry

import (
	"net/http"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the registry and the core's metrics. Features that land later
// register theirs on Registry next to these.
type Metrics struct {
	Registry *prometheus.Registry

	Requests           *prometheus.CounterVec   // http_requests_total{method,endpoint,status}
	RequestDuration    *prometheus.HistogramVec // http_request_duration_seconds{method,endpoint}
	ActiveConnections  prometheus.Gauge         // active_connections
	BackendHealth      *prometheus.GaugeVec     // backend_health_status{backend}
	BreakerTrips       prometheus.Counter       // circuit_breaker_trips_total
	EjectionsRefused   prometheus.Counter       // circuit_breaker_ejections_refused_total
	TunnelIdleTimeouts prometheus.Counter       // tunnel_idle_timeouts_total
	UpstreamDuration   *prometheus.HistogramVec // upstream_request_duration_seconds{backend}
	UpstreamRetries    prometheus.Counter       // upstream_retries_total
	InflightRequests   prometheus.Gauge         // inflight_requests

	// Totals are plain counters for /stats and the dashboard.
	Totals Totals

	// mu orders the creation of endpoint series (once per label set, never
	// on a cached request) against PruneEndpoints, so a label it removed
	// is not brought back by a request that was already running.
	mu        sync.Mutex
	endpoints sync.Map                   // endpoint label -> *EndpointMetrics
	live      func(endpoint string) bool // see GateEndpoints; nil admits every label
	discard   *EndpointMetrics           // what a label live refuses gets
}

// NewMetrics creates and registers the core metrics on a fresh registry,
// with the Go runtime and process collectors and build_info{version,commit,
// go_version} = 1.
func NewMetrics(version string) *Metrics {
	reg := prometheus.NewRegistry()
	m := &Metrics{
		Registry: reg,
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "http_requests_total",
			Help: "Requests answered, by method, endpoint (route prefix or a fixed word) and status.",
		}, []string{"method", "endpoint", "status"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "http_request_duration_seconds",
			Help:    "Time from the request's arrival to the end of its response, by method and endpoint.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"method", "endpoint"}),
		ActiveConnections: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "active_connections",
			Help: "Client TCP connections currently open on the public listener.",
		}),
		BackendHealth: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "backend_health_status",
			Help: "1 when the backend passes its active health checks, 0 when it is marked dead.",
		}, []string{"backend"}),
		BreakerTrips: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "circuit_breaker_trips_total",
			Help: "Times a backend's circuit breaker opened.",
		}),
		EjectionsRefused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "circuit_breaker_ejections_refused_total",
			Help: "Times a breaker stayed closed because MAX_EJECTED_PERCENT of its pool was already out.",
		}),
		TunnelIdleTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tunnel_idle_timeouts_total",
			Help: "Upgraded (WebSocket) connections closed after TUNNEL_IDLE_TIMEOUT without a byte either way.",
		}),
		UpstreamDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "upstream_request_duration_seconds",
			Help:    "Time from sending a request to a backend to its response headers, per attempt.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"backend"}),
		UpstreamRetries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "upstream_retries_total",
			Help: "Upstream attempts beyond the first one.",
		}),
		InflightRequests: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "inflight_requests",
			Help: "Requests being served right now.",
		}),
	}
	m.discard = &EndpointMetrics{}
	m.discard.retired.Store(true)
	for i := range m.discard.duration {
		m.discard.duration[i] = discardObserver{}
	}
	reg.MustRegister(
		m.Requests, m.RequestDuration, m.ActiveConnections, m.BackendHealth,
		m.BreakerTrips, m.EjectionsRefused, m.TunnelIdleTimeouts, m.UpstreamDuration, m.UpstreamRetries, m.InflightRequests,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		buildInfo(version),
	)
	return m
}

// Handler serves the registry in the Prometheus text format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{})
}

// methods is the bounded set of method label values; anything else is OTHER.
var methods = [...]string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "OTHER"}

func methodIndex(m string) int {
	for i, v := range methods[:len(methods)-1] {
		if v == m {
			return i
		}
	}
	return len(methods) - 1
}

// EndpointMetrics caches the children of the request metrics for one
// endpoint label, so the hot path does no label hashing or map locking.
type EndpointMetrics struct {
	m        *Metrics
	endpoint string
	duration [len(methods)]prometheus.Observer
	counters sync.Map // methodIndex<<10 | status -> prometheus.Counter
	// retired is set when PruneEndpoints removed the label's series: a
	// request that fetched e before then may still observe, but must not
	// create a series again.
	retired atomic.Bool
}

// Endpoint returns the cached metrics for an endpoint label. The label set
// must be bounded (route prefixes and fixed words), never raw paths. A label
// the gate refuses (see GateEndpoints) gets metrics that count nothing.
func (m *Metrics) Endpoint(endpoint string) *EndpointMetrics {
	if e, ok := m.endpoints.Load(endpoint); ok {
		return e.(*EndpointMetrics)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if e, ok := m.endpoints.Load(endpoint); ok {
		return e.(*EndpointMetrics)
	}
	if m.live != nil && !m.live(endpoint) {
		// A request still running on a route a reload removed: its
		// series went with the route, and must stay gone.
		return m.discard
	}
	e := &EndpointMetrics{m: m, endpoint: endpoint}
	for i, meth := range methods {
		e.duration[i] = m.RequestDuration.WithLabelValues(meth, endpoint)
	}
	m.endpoints.Store(endpoint, e)
	return e
}

// GateEndpoints installs live, which says whether an endpoint label may
// have request series: the owner of the route table admits its own paths,
// fixed words and the route prefixes in force. Endpoint consults it under
// the lock PruneEndpoints holds, and only for a label not cached yet, so
// live may read the route table but is never on a request's hot path.
// Without a gate every label is admitted and nothing is pruned.
func (m *Metrics) GateEndpoints(live func(endpoint string) bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.live = live
}

// PruneEndpoints deletes the request series (http_requests_total and
// http_request_duration_seconds) and the cached children of every label
// the gate no longer admits, and returns how many labels went. Call it
// after publishing a route table that dropped prefixes: without it every
// prefix ever configured keeps its series (and memory) for good. Requests
// still running with a pruned label count nowhere.
func (m *Metrics) PruneEndpoints() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.live == nil {
		return 0
	}
	n := 0
	m.endpoints.Range(func(k, v any) bool {
		label := k.(string)
		if m.live(label) {
			return true
		}
		v.(*EndpointMetrics).retired.Store(true)
		m.endpoints.Delete(label)
		m.Requests.DeletePartialMatch(prometheus.Labels{"endpoint": label})
		m.RequestDuration.DeletePartialMatch(prometheus.Labels{"endpoint": label})
		n++
		return true
	})
	return n
}

// Observe counts one finished request.
func (e *EndpointMetrics) Observe(method string, status int, seconds float64) {
	mi := methodIndex(method)
	e.duration[mi].Observe(seconds)
	if status < 100 || status > 999 {
		status = 0
	}
	key := mi<<10 | status
	if c, ok := e.counters.Load(key); ok {
		c.(prometheus.Counter).Inc()
		return
	}
	if c := e.counter(mi, status, key); c != nil {
		c.Inc()
	}
}

// counter creates the request counter of a label set seen for the first
// time, or returns nil when the endpoint was pruned: the lock keeps a
// pruned series from being created again after PruneEndpoints deleted it.
func (e *EndpointMetrics) counter(mi, status, key int) prometheus.Counter {
	if e.retired.Load() {
		return nil
	}
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	if e.retired.Load() {
		return nil
	}
	if c, ok := e.counters.Load(key); ok {
		return c.(prometheus.Counter)
	}
	c := e.m.Requests.WithLabelValues(methods[mi], e.endpoint, strconv.Itoa(status))
	e.counters.Store(key, c)
	return c
}

type discardObserver struct{}

func (discardObserver) Observe(float64) {}

// Totals counts requests by status class without going through Prometheus.
type Totals struct {
	requests atomic.Int64
	inflight atomic.Int64
	status   [6]atomic.Int64 // index = status/100
}

// TotalsSnapshot is a copy of Totals.
type TotalsSnapshot struct {
	Requests, Inflight int64
	Status             [6]int64
}

// Begin counts a request that started.
func (t *Totals) Begin() { t.inflight.Add(1) }

// End counts a request that finished with status.
func (t *Totals) End(status int) {
	t.inflight.Add(-1)
	t.requests.Add(1)
	if c := status / 100; c >= 1 && c <= 5 {
		t.status[c].Add(1)
	}
}

// Snapshot copies the counters.
func (t *Totals) Snapshot() TotalsSnapshot {
	s := TotalsSnapshot{Requests: t.requests.Load(), Inflight: t.inflight.Load()}
	for i := range t.status {
		s.Status[i] = t.status[i].Load()
	}
	return s
}

// buildInfo is the constant build_info gauge: which binary is running.
func buildInfo(version string) prometheus.Collector {
	commit := "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && s.Value != "" {
				commit = s.Value
			}
		}
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "build_info",
		Help:        "Always 1; the labels say which build of the gateway is running.",
		ConstLabels: prometheus.Labels{"version": version, "commit": commit, "go_version": runtime.Version()},
	})
	g.Set(1)
	return g
}

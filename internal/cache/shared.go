package cache

import (
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/telemetry"
)

// BodyWait bounds how long requests coalesced behind a miss wait for the
// leader's body once its storable header is in (nginx's
// proxy_cache_lock_timeout): a body that crawls (a slow upstream, or a
// leader's client reading slowly on purpose) must not hold every other
// client of the URL. Then they fetch their own. Until the header, the wait
// is bounded by the route's upstream timeout.
const BodyWait = 5 * time.Second

// MaxRecording bounds the bytes all concurrent misses may buffer at once,
// unless the largest storable object is bigger.
const MaxRecording = 64 << 20

// Options are the shared cache's settings.
type Options struct {
	// MaxObject is CACHE_MAX_OBJECT_BYTES, the largest body stored.
	MaxObject int64
	// PrivateHeaders are CACHE_PRIVATE_HEADERS: canonical names of request
	// headers that, like Authorization or Cookie, make a request personal.
	PrivateHeaders []string
	// ClientRevalidate is CACHE_CLIENT_REVALIDATE: a client's no-cache or
	// max-age=0 skips a fresh entry and refreshes it. Off, any client could
	// replace an entry at will, with whatever an unkeyed header of theirs
	// made the upstream answer.
	ClientRevalidate bool
	// BodyWait overrides the package's BodyWait (0: the default).
	BodyWait time.Duration
	// MaxRecording overrides the recording budget (0: MaxRecording, or
	// MaxObject when larger).
	MaxRecording int64
}

// Shared is the state every route's cache step uses: one store, one set of
// counters, one group of in-flight misses, one budget for the bytes misses
// hold while they record. Its settings do not change after NewShared.
type Shared struct {
	store   Store
	stats   *Stats
	flights *Flights
	opts    Options
	// recording is the bytes held by misses being recorded right now;
	// beyond opts.MaxRecording a miss streams without recording, so many
	// concurrent misses of large answers cannot exhaust memory.
	recording atomic.Int64
}

// NewShared returns the shared cache state over store; stats are the
// counters RegisterMetrics exposes.
func NewShared(store Store, stats *Stats, o Options) *Shared {
	if o.BodyWait <= 0 {
		o.BodyWait = BodyWait
	}
	if o.MaxRecording <= 0 {
		o.MaxRecording = max(MaxRecording, o.MaxObject)
	}
	return &Shared{store: store, stats: stats, flights: NewFlights(), opts: o}
}

// Store is the store in use.
func (s *Shared) Store() Store { return s.store }

// Stats are the counters behind the metrics.
func (s *Shared) Stats() *Stats { return s.stats }

// Flights are the misses in progress.
func (s *Shared) Flights() *Flights { return s.flights }

// Settings are the options the state was built with (defaults filled in);
// read-only.
func (s *Shared) Settings() *Options { return &s.opts }

// Reserve counts n more bytes against the recording budget and reports
// whether they fit; what fits must be given back with Release.
func (s *Shared) Reserve(n int64) bool {
	if s.recording.Add(n) > s.opts.MaxRecording {
		s.recording.Add(-n)
		return false
	}
	return true
}

// Release gives n reserved bytes back.
func (s *Shared) Release(n int64) { s.recording.Add(-n) }

// Recording is the bytes misses hold right now.
func (s *Shared) Recording() int64 { return s.recording.Load() }

// RegisterMetrics exposes stats as the cache metrics. They are registered
// whether caching is on or not, so dashboards always find them.
func RegisterMetrics(stats *Stats, reg prometheus.Registerer) error {
	for _, c := range []struct {
		name, help string
		v          func() int64
	}{
		{"cache_hits_total", "Requests answered from the response cache.", stats.Hits.Load},
		{"cache_misses_total", "Cacheable requests that went upstream (not stored, expired, or their coalesced miss could not be shared).", stats.Misses.Load},
		{"cache_bypasses_total", "Requests on caching routes the cache did not handle: other methods, credentials, Range, Upgrade, or a client asking for a fresh answer.", stats.Bypasses.Load},
		{"cache_errors_total", "Cache store operations that failed or were skipped because the store (Redis) is down or slow.", stats.Errors.Load},
	} {
		v := c.v
		if _, err := telemetry.Register(reg, prometheus.NewCounterFunc(prometheus.CounterOpts{Name: c.name, Help: c.help}, func() float64 { return float64(v()) })); err != nil {
			return err
		}
	}
	return nil
}

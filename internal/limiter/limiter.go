// Package limiter keeps per-client token buckets: the per-client default
// limit (MAX_REQUESTS_PER_SECOND, MAX_BURST_SIZE) and the per-route ones
// (rate_limit_rps, rate_limit_burst), locally or, in cluster mode, in a
// store every replica shares (Remote).
//
// A bucket is kept as GCRA (the generic cell rate algorithm, RFC 2697's
// cousin from ATM): one int64 per client, the theoretical arrival time of
// the next request, which is exactly a token bucket of size burst refilled
// at rps. Buckets live in a bounded iptrack.Table keyed by the client's
// realip.Key (IPv6 per /64). The step that answers 429 is
// internal/middleware/ratelimit.
package limiter

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/iptrack"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// DefaultSweepEvery is how often Limits.Run sweeps idle buckets.
const DefaultSweepEvery = 10 * time.Second

// minIdleTTL is the shortest time a bucket is kept after its last request.
// Dropping a bucket once it has refilled loses nothing (a fresh bucket is a
// full one); keeping it a little longer saves re-creating it for clients
// that come back every few seconds.
const minIdleTTL = 30 * time.Second

// Config is what every limiter of the process shares.
type Config struct {
	// MaxTrackedIPs caps the buckets of each limiter (MAX_TRACKED_IPS,
	// default 262144); the least recently seen client is evicted first. A
	// full table takes under 100 bytes per bucket (about 20 MiB by
	// default), and each per-route limiter has its own: give them a smaller
	// cap (RouteMaxTrackedIPs) if many routes have limits.
	MaxTrackedIPs int
	// RouteMaxTrackedIPs caps each per-route limiter (default MaxTrackedIPs).
	RouteMaxTrackedIPs int
	// Log is the base logger (nil: discard); component "ratelimit" is added.
	Log *slog.Logger
	// Registerer receives rate_limited_requests_total and
	// tracked_ips{table="ratelimit"} (nil: not registered).
	Registerer prometheus.Registerer
	// Now is the clock; tests advance a fake one. Nil (the default) takes
	// a request's time from request.Info.Start, which the envelope read on
	// arrival, so the hot path reads no clock (time.Now costs ~60 ns on a
	// VM); outside the chain it falls back to time.Now.
	Now func() time.Time
	// SweepEvery is Run's period (default DefaultSweepEvery).
	SweepEvery time.Duration
	// Remote, when set (CLUSTER_MODE=redis), keeps the buckets outside the
	// process so every replica draws on the same ones; a request it cannot
	// answer is decided by the local bucket. Nil (the default): local only.
	Remote Remote
}

// Remote is a bucket store shared by replicas (internal/cluster).
type Remote interface {
	// Allow takes a token from key's bucket in scope ("" for the per-IP
	// default, the route prefix for a route's limit): GCRA with one token
	// per interval and a bucket of tau (burst × interval). ok is false when
	// the store cannot answer now; the caller then decides locally.
	Allow(ctx context.Context, scope string, key netip.Addr, interval, tau time.Duration) (d Decision, ok bool)
}

// Limits holds what the per-IP limiter and every per-route limiter share:
// the counter, the logger, the clock and the list of live limiters that
// Run sweeps. Per-route limiters built for a configuration that was later
// replaced are dropped from the list once the garbage collector frees them,
// so a hot reload needs no unregistering.
type Limits struct {
	maxTracked, routeMaxTracked int
	log                         *slog.Logger
	now                         func() time.Time
	arrival                     bool // take the time from request.Info.Start
	every                       time.Duration
	limited                     prometheus.Counter
	rejectLog                   *iptrack.Throttle
	remote                      Remote

	mu          sync.Mutex // guards live; taken when a limiter is built and per sweep
	live        []weak.Pointer[Limit]
	deadEvicted atomic.Uint64 // evictions of limiters already collected
}

// NewLimits validates c and registers the metrics.
func NewLimits(c Config) (*Limits, error) {
	if c.MaxTrackedIPs < 0 || c.RouteMaxTrackedIPs < 0 {
		return nil, fmt.Errorf("ratelimit: MaxTrackedIPs %d / RouteMaxTrackedIPs %d: must not be negative", c.MaxTrackedIPs, c.RouteMaxTrackedIPs)
	}
	if c.MaxTrackedIPs == 0 {
		c.MaxTrackedIPs = iptrack.DefaultMaxEntries
	}
	if c.RouteMaxTrackedIPs == 0 {
		c.RouteMaxTrackedIPs = c.MaxTrackedIPs
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	arrival := c.Now == nil
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = DefaultSweepEvery
	}
	s := &Limits{
		arrival:         arrival,
		maxTracked:      c.MaxTrackedIPs,
		routeMaxTracked: c.RouteMaxTrackedIPs,
		log:             telemetry.Component(c.Log, "ratelimit"),
		now:             c.Now,
		every:           c.SweepEvery,
		rejectLog:       iptrack.NewThrottle(time.Minute, 4096, 100),
		remote:          c.Remote,
	}
	limited := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "rate_limited_requests_total",
		Help: "Requests refused with 429 by a per-IP or per-route rate limit.",
	})
	var err error
	if s.limited, err = telemetry.Register(c.Registerer, limited); err != nil {
		return nil, fmt.Errorf("ratelimit: registering metrics: %w", err)
	}
	if err := iptrack.RegisterMetrics(c.Registerer, "ratelimit", s.Tracked, s.Evictions); err != nil {
		return nil, fmt.Errorf("ratelimit: registering metrics: %w", err)
	}
	return s, nil
}

// Run sweeps idle buckets of every live limiter each SweepEvery until ctx
// ends. Without it the tables stay capped but keep idle buckets until they
// are evicted.
func (s *Limits) Run(ctx context.Context) {
	iptrack.SweepLoop(ctx, s.every, s.log, func() { s.Sweep(s.now()) })
}

// Sweep removes the idle buckets of every live limiter.
func (s *Limits) Sweep(now time.Time) {
	for _, l := range s.limiters() {
		l.table.Sweep(now)
	}
	s.rejectLog.Sweep(now)
}

// At is the time to count a request at: its arrival (read once by the
// envelope, so the hot path reads no clock) when the Limits have no clock
// of their own and it is known, else the clock.
func (s *Limits) At(arrival time.Time) time.Time {
	if s.arrival && !arrival.IsZero() {
		return arrival
	}
	return s.now()
}

// Refused counts a request refused by one of the limits
// (rate_limited_requests_total).
func (s *Limits) Refused() { s.limited.Inc() }

// LogRejection reports whether the refusal of key at now is the first of
// the minute for that client, so it may be logged: a flood must not flood
// the log. The logger is Log.
func (s *Limits) LogRejection(key netip.Addr, now time.Time) bool { return s.rejectLog.Allow(key, now) }

// Log is the limits' logger (component ratelimit).
func (s *Limits) Log() *slog.Logger { return s.log }

// Tracked is the number of buckets held by all live limiters.
func (s *Limits) Tracked() int {
	n := 0
	for _, l := range s.limiters() {
		n += l.table.Len()
	}
	return n
}

// Evictions counts buckets of every limit dropped at capacity.
func (s *Limits) Evictions() uint64 {
	n := s.deadEvicted.Load()
	for _, l := range s.limiters() {
		n += l.table.Evictions()
	}
	return n
}

// limiters returns the live limiters and forgets the collected ones.
func (s *Limits) limiters() []*Limit {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Limit, 0, len(s.live))
	kept := s.live[:0]
	for _, wp := range s.live {
		if l := wp.Value(); l != nil {
			out = append(out, l)
			kept = append(kept, wp)
		}
	}
	clear(s.live[len(kept):])
	s.live = kept
	return out
}

func (s *Limits) add(l *Limit) {
	// When a replaced route's limiter is collected, keep its evictions in
	// the (monotonic) counter.
	runtime.AddCleanup(l, func(t *iptrack.Table[int64]) { s.deadEvicted.Add(t.Evictions()) }, l.table)
	s.mu.Lock()
	s.live = append(s.live, weak.Make(l))
	s.mu.Unlock()
	s.limiters() // prune
}

// Limit is one rate limit applied per client: a table of buckets, one per
// client key. The step that enforces it holds it; when the step's chain is
// dropped (a reload replaced the route), the Limits forget it.
type Limit struct {
	s     *Limits
	route bool
	// interval is the time one token takes to refill (1/rps); tau is the
	// whole bucket's worth (burst × interval). Both in nanoseconds.
	interval, tau int64
	burst         int
	epoch         time.Time
	table         *iptrack.Table[int64] // client key -> theoretical arrival time (ns since epoch)
}

// Check validates a limit without building it: rps > 0, burst >= 1, and a
// bucket that fits the arithmetic.
func Check(rps float64, burst int) error {
	_, _, err := bucket(rps, burst)
	return err
}

// bucket checks a limit and returns its GCRA parameters in nanoseconds: the
// time one token takes to refill and the whole bucket's worth.
func bucket(rps float64, burst int) (interval, tau int64, err error) {
	if !(rps > 0) || math.IsInf(rps, 0) {
		return 0, 0, fmt.Errorf("ratelimit: rate %v: expected a number > 0", rps)
	}
	if burst < 1 {
		return 0, 0, fmt.Errorf("ratelimit: burst %d: expected an integer >= 1", burst)
	}
	interval = max(int64(math.Round(float64(time.Second)/rps)), 1)
	if int64(burst) > math.MaxInt64/4/interval {
		return 0, 0, fmt.Errorf("ratelimit: burst %d at %v/s: bucket too large", burst, rps)
	}
	return interval, int64(burst) * interval, nil
}

// New returns a limit of rps tokens a second and bursts of burst, with its
// own buckets; route says it is a route's limit (a smaller table cap, and
// its own scope in the shared store).
func (s *Limits) New(rps float64, burst int, route bool) (*Limit, error) {
	interval, tau, err := bucket(rps, burst)
	if err != nil {
		return nil, err
	}
	capacity := s.maxTracked
	if route {
		capacity = s.routeMaxTracked
	}
	l := &Limit{
		s:        s,
		route:    route,
		interval: interval,
		tau:      tau,
		burst:    burst,
		epoch:    s.now(),
		table: iptrack.New[int64](iptrack.Options{
			MaxEntries: capacity,
			IdleTTL:    max(time.Duration(tau), minIdleTTL),
		}),
	}
	s.add(l)
	return l, nil
}

// Burst is the bucket size.
func (l *Limit) Burst() int { return l.burst }

// Route reports whether l is a route's limit.
func (l *Limit) Route() bool { return l.route }

// Limits is the set l belongs to.
func (l *Limit) Limits() *Limits { return l.s }

// Decision is the answer for one request.
type Decision struct {
	Allowed bool
	// Limit is the bucket size (burst).
	Limit int
	// Remaining is the number of requests the client may still send now.
	Remaining int
	// Reset is the time until the bucket is full again, or, when it is
	// empty, until the next token.
	Reset time.Duration
	// RetryAfter is the time until the next request can pass (0 when allowed).
	RetryAfter time.Duration
}

// Allow takes a token from key's bucket at now, if there is one.
func (l *Limit) Allow(key netip.Addr, now time.Time) Decision {
	t := int64(now.Sub(l.epoch))
	d := Decision{Limit: l.burst}
	l.table.Do(key, now, func(tat *int64, _ bool) { l.gcra(tat, t, &d) })
	return d
}

// gcra is the whole algorithm. tat is the theoretical arrival time: the
// time at which the bucket would be full again. A request at t is allowed
// when, with its token taken, the bucket is not over-full: tat' - t ≤ tau.
func (l *Limit) gcra(tat *int64, t int64, d *Decision) {
	cur := max(*tat, t)
	next := cur + l.interval
	if over := next - t - l.tau; over > 0 {
		d.RetryAfter = time.Duration(over)
		d.Reset = d.RetryAfter
		return
	}
	*tat = next
	d.Allowed = true
	d.Remaining = int((l.tau - (next - t)) / l.interval)
	if d.Remaining > 0 {
		d.Reset = time.Duration(next - t)
	} else {
		d.Reset = time.Duration(next - t - l.tau + l.interval)
	}
}

// Len is the number of buckets held.
func (l *Limit) Len() int { return l.table.Len() }

// Evictions counts buckets dropped at capacity.
func (l *Limit) Evictions() uint64 { return l.table.Evictions() }

// AllowShared asks the shared store, when there is one, for key's bucket
// in scope ("" for the default limit, the route's prefix for a route's),
// and reports whether it answered; the caller then decides locally with
// Allow.
func (l *Limit) AllowShared(ctx context.Context, scope string, key netip.Addr) (Decision, bool) {
	if l.s.remote == nil {
		return Decision{}, false
	}
	d, ok := l.s.remote.Allow(ctx, scope, key, time.Duration(l.interval), time.Duration(l.tau))
	if !ok {
		return Decision{}, false
	}
	d.Limit = l.burst
	return d, true
}

// Package ratelimit limits requests per client IP with token buckets: the
// per-IP default (MAX_REQUESTS_PER_SECOND, MAX_BURST_SIZE) and the per-route
// limits (rate_limit_rps, rate_limit_burst).
//
// A bucket is kept as GCRA (the generic cell rate algorithm, RFC 2697's
// cousin from ATM): one int64 per client, the theoretical arrival time of
// the next request, which is exactly a token bucket of size burst refilled
// at rps. Buckets live in a bounded iptrack.Table keyed by the client's
// realip.Key (IPv6 per /64).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"weak"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/iptrack"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// ErrLimited is the request's error (request.Info.Err) when it was refused
// with 429.
var ErrLimited = errors.New("rate limit exceeded")

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
	live        []weak.Pointer[Limiter]
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
	if err := iptrack.RegisterMetrics(c.Registerer, "ratelimit", s.Tracked, s.evictions); err != nil {
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

// timeOf is the time of the request in.
func (s *Limits) timeOf(in *request.Info) time.Time {
	if s.arrival && in != nil && !in.Start.IsZero() {
		return in.Start
	}
	return s.now()
}

// Tracked is the number of buckets held by all live limiters.
func (s *Limits) Tracked() int {
	n := 0
	for _, l := range s.limiters() {
		n += l.table.Len()
	}
	return n
}

func (s *Limits) evictions() uint64 {
	n := s.deadEvicted.Load()
	for _, l := range s.limiters() {
		n += l.table.Evictions()
	}
	return n
}

// limiters returns the live limiters and forgets the collected ones.
func (s *Limits) limiters() []*Limiter {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Limiter, 0, len(s.live))
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

func (s *Limits) add(l *Limiter) {
	// When a replaced route's limiter is collected, keep its evictions in
	// the (monotonic) counter.
	runtime.AddCleanup(l, func(t *iptrack.Table[int64]) { s.deadEvicted.Add(t.Evictions()) }, l.table)
	s.mu.Lock()
	s.live = append(s.live, weak.Make(l))
	s.mu.Unlock()
	s.limiters() // prune
}

// Limiter is one token-bucket limit per client, as an http.Handler.
type Limiter struct {
	s     *Limits
	next  http.Handler
	route bool
	// interval is the time one token takes to refill (1/rps); tau is the
	// whole bucket's worth (burst × interval). Both in nanoseconds.
	interval, tau int64
	burst         int
	limit         []string // RateLimit-Limit value, shared read-only
	epoch         time.Time
	table         *iptrack.Table[int64] // client key -> theoretical arrival time (ns since epoch)
}

// New returns the per-client default limit step: rps tokens per second
// (MAX_REQUESTS_PER_SECOND, > 0), bursts of up to burst requests
// (MAX_BURST_SIZE, ≥ 1), one bucket per client key. Over the limit a
// request gets 429 with Retry-After; every limited response carries
// RateLimit-Limit, -Remaining and -Reset. Allow-listed clients are not
// limited. A trusted proxy that sent no usable X-Forwarded-For is its own
// client here and is limited like any other: exempting it would exempt
// every local process, and every client of a proxy that forgot the header.
func New(rps float64, burst int, s *Limits) (func(http.Handler) http.Handler, error) {
	return step(rps, burst, s, false)
}

// NewRoute returns a per-route limit step (rate_limit_rps,
// rate_limit_burst), run after routing on top of the per-client default,
// with its own buckets. It counts in the same rate_limited_requests_total.
// When both limits answer, the RateLimit-* headers describe the one closer
// to running out.
func NewRoute(rps float64, burst int, s *Limits) (func(http.Handler) http.Handler, error) {
	return step(rps, burst, s, true)
}

// step checks the settings now; each chain the step wraps gets its own
// buckets.
func step(rps float64, burst int, s *Limits, route bool) (func(http.Handler) http.Handler, error) {
	if s == nil {
		return nil, errors.New("ratelimit: nil Limits")
	}
	if _, _, err := bucket(rps, burst); err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		l, _ := newLimiter(rps, burst, s, next, route)
		return l
	}, nil
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

func newLimiter(rps float64, burst int, s *Limits, next http.Handler, route bool) (*Limiter, error) {
	if s == nil || next == nil {
		return nil, errors.New("ratelimit: nil Limits or next handler")
	}
	interval, tau, err := bucket(rps, burst)
	if err != nil {
		return nil, err
	}
	capacity := s.maxTracked
	if route {
		capacity = s.routeMaxTracked
	}
	l := &Limiter{
		s:        s,
		next:     next,
		route:    route,
		interval: interval,
		tau:      tau,
		burst:    burst,
		limit:    []string{strconv.Itoa(burst)},
		epoch:    s.now(),
		table: iptrack.New[int64](iptrack.Options{
			MaxEntries: capacity,
			IdleTTL:    max(time.Duration(tau), minIdleTTL),
		}),
	}
	s.add(l)
	return l, nil
}

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
func (l *Limiter) Allow(key netip.Addr, now time.Time) Decision {
	t := int64(now.Sub(l.epoch))
	d := Decision{Limit: l.burst}
	l.table.Do(key, now, func(tat *int64, _ bool) { l.gcra(tat, t, &d) })
	return d
}

// gcra is the whole algorithm. tat is the theoretical arrival time: the
// time at which the bucket would be full again. A request at t is allowed
// when, with its token taken, the bucket is not over-full: tat' - t ≤ tau.
func (l *Limiter) gcra(tat *int64, t int64, d *Decision) {
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
func (l *Limiter) Len() int { return l.table.Len() }

// Evictions counts buckets dropped at capacity.
func (l *Limiter) Evictions() uint64 { return l.table.Evictions() }

// ServeHTTP applies the limit to the request's client.
func (l *Limiter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := request.From(r.Context())
	var client netip.Addr
	if in != nil {
		if in.Allowlisted {
			l.next.ServeHTTP(w, r)
			return
		}
		client = in.ClientIP
	} else {
		client = realip.PeerAddr(r.RemoteAddr) // outside the gateway's chain
	}
	if !client.IsValid() {
		// Only a listener without IP peers (a unix socket) gets here; there
		// is no client to tell apart.
		l.next.ServeHTTP(w, r)
		return
	}
	now := l.s.timeOf(in)
	key := realip.Key(client)
	var d Decision
	if !l.allowRemote(r, in, key, &d) {
		d = l.Allow(key, now)
	}
	h := w.Header()
	l.setHeaders(h, &d)
	if d.Allowed {
		l.next.ServeHTTP(w, r)
		return
	}
	l.s.limited.Inc()
	h["Retry-After"] = intValue(max(ceilSeconds(d.RetryAfter), 1))
	if in != nil {
		in.Err = ErrLimited
	}
	l.logRejection(r, in, key, now, &d)
	gwerror.Write(w, r, http.StatusTooManyRequests, "too many requests")
}

// allowRemote asks the shared store, when there is one, and reports
// whether it answered.
func (l *Limiter) allowRemote(r *http.Request, in *request.Info, key netip.Addr, d *Decision) bool {
	if l.s.remote == nil {
		return false
	}
	scope := ""
	if l.route {
		scope = "?"
		if in != nil {
			scope = in.Endpoint // the matched route prefix
		}
	}
	rd, ok := l.s.remote.Allow(r.Context(), scope, key, time.Duration(l.interval), time.Duration(l.tau))
	if !ok {
		return false
	}
	*d = rd
	d.Limit = l.burst
	return true
}

// setHeaders writes the RateLimit-* fields (draft-ietf-httpapi-ratelimit-headers).
// A per-route limiter replaces the per-IP default's fields only when it is
// the one closer to running out.
func (l *Limiter) setHeaders(h http.Header, d *Decision) {
	if l.route && d.Allowed {
		if cur := h["Ratelimit-Remaining"]; len(cur) == 1 {
			if n, err := strconv.Atoi(cur[0]); err == nil && n <= d.Remaining {
				return
			}
		}
	}
	h["Ratelimit-Limit"] = l.limit
	h["Ratelimit-Remaining"] = intValue(d.Remaining)
	h["Ratelimit-Reset"] = intValue(ceilSeconds(d.Reset))
}

// logRejection logs the first rejection of a client per minute, at debug:
// an attack must not flood the log; the counter counts them all.
func (l *Limiter) logRejection(r *http.Request, in *request.Info, key netip.Addr, now time.Time, d *Decision) {
	log := l.s.log
	if !log.Enabled(r.Context(), slog.LevelDebug) || !l.s.rejectLog.Allow(key, now) {
		return
	}
	attrs := []slog.Attr{
		slog.String("key", keyText(key)),
		slog.Int("limit", l.burst),
		slog.Int64("retry_after_s", max(ceilSeconds(d.RetryAfter), 1)),
		slog.Bool("route_limit", l.route),
	}
	if in != nil {
		attrs = append(attrs, slog.String("client_ip", in.ClientIPText), slog.String("request_id", in.ID),
			slog.String("route", in.Endpoint))
	}
	log.LogAttrs(r.Context(), slog.LevelDebug, "rate limited", attrs...)
}

// keyText shows an IPv6 key as the /64 it stands for.
func keyText(k netip.Addr) string {
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// smallInts holds the decimal text of 0..len-1, so header values are not
// allocated per request. It is never written after init.
var smallInts = func() (a [1024]string) {
	for i := range a {
		a[i] = strconv.Itoa(i)
	}
	return a
}()

// intValue returns a one-element header value for n. Small values share a
// read-only backing array with a capacity of one, as request.Info.IDValues
// does: Header.Add appends to a copy, Header.Set replaces the slice; nobody
// may write to the element in place.
func intValue[T int | int64](n T) []string {
	if n >= 0 && int64(n) < int64(len(smallInts)) {
		return smallInts[n : n+1 : n+1]
	}
	return []string{strconv.FormatInt(int64(n), 10)}
}

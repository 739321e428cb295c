// Package upstream holds the backends the gateway proxies to: their address,
// liveness (set by active health checks), circuit breaker and in-flight count.
// Backends are shared by URL across route tables, so a configuration swap keeps
// their health, breaker state and connection pools.
package upstream

import (
	"errors"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/sony/gobreaker/v2"
)

// BreakerState is a backend's circuit breaker state as reported by /health.
type BreakerState int32

// Breaker states, in gobreaker's order.
const (
	BreakerClosed BreakerState = iota
	BreakerHalfOpen
	BreakerOpen
)

// String returns the state's name as /health spells it.
func (s BreakerState) String() string {
	switch s {
	case BreakerHalfOpen:
		return "half-open"
	case BreakerOpen:
		return "open"
	default:
		return "closed"
	}
}

// ErrClientFault marks an attempt that failed because of the client (body too
// large, body stalled, client gone). Such outcomes never count against a
// backend's breaker.
var ErrClientFault = errors.New("client fault")

// ErrNotCounted marks an attempt whose outcome says nothing about the
// backend's transport: it answered, but too slowly for the route timeout.
// The breaker counts it neither way, so a client cannot open a breaker by
// asking for slow answers.
var ErrNotCounted = errors.New("outcome not counted by the breaker")

// ErrUnavailable is returned by Acquire when the breaker refuses the attempt.
var ErrUnavailable = errors.New("backend unavailable")

// BreakerSettings configures every backend's breaker.
type BreakerSettings struct {
	// MaxFailures consecutive failures open the breaker (CIRCUIT_BREAKER_MAX).
	MaxFailures uint32
	// OpenTimeout is the open → half-open delay (CIRCUIT_BREAKER_TIMEOUT).
	OpenTimeout time.Duration
	// OnTrip is called each time the breaker opens (metrics, logs). May be nil.
	OnTrip func(b *Backend)
	// OnStateChange is called on every transition. May be nil.
	OnStateChange func(b *Backend, from, to BreakerState)
	// MaxEjectedPercent (MAX_EJECTED_PERCENT, 0..100) is the most of a
	// pool that open breakers may take out at once; one backend may always
	// go. A breaker that would pass it stays closed. 0 with no pools
	// published (see Pool.Publish) leaves breakers uncapped.
	MaxEjectedPercent int
	// OnEjectionRefused is called when a breaker would have opened but the
	// cap kept it closed, once per streak of failures. May be nil.
	OnEjectionRefused func(b *Backend)
}

// Backend is one upstream server. All methods are safe for concurrent use and
// lock-free on the hot path except the breaker's own per-backend mutex.
type Backend struct {
	url *url.URL
	key string

	alive    atomic.Bool
	inflight atomic.Int64
	// state mirrors the breaker's state so Available does not take the
	// breaker's mutex for the common closed case.
	state   atomic.Int32
	breaker *gobreaker.TwoStepCircuitBreaker[struct{}]
	// retired is set when a reload drops the backend from the registry:
	// requests still running on an older table keep using it, but nothing
	// keyed by it (metrics series, caches) may be created again.
	retired atomic.Bool

	// Passive-ejection cap: the pools b serves in the table in force, and
	// whether b's breaker is out (open or half-open) or was kept closed
	// by the cap.
	pools        atomic.Pointer[[]*Pool]
	ejected      atomic.Bool
	capped       atomic.Bool
	ejectPercent int
	ejectMu      *sync.Mutex // shared by the backends of one registry
	onCapped     func(*Backend)

	// probe is the client health checks reach b with when its route
	// speaks something other than the defaults (upstream_tls, HTTP/2,
	// h2c); nil = the checker's own.
	probe atomic.Pointer[http.RoundTripper]
}

// SetProbeClient makes health checks reach b through rt, the client its
// route's requests use; the last route table built decides when routes
// sharing b differ.
func (b *Backend) SetProbeClient(rt http.RoundTripper) { b.probe.Store(&rt) }

// ProbeClient is the client set by SetProbeClient, nil when none.
func (b *Backend) ProbeClient() http.RoundTripper {
	if p := b.probe.Load(); p != nil {
		return *p
	}
	return nil
}

// Retired reports whether a reload dropped b from every route (see
// Registry.Retain); state keyed by b must then be released, not created.
func (b *Backend) Retired() bool { return b.retired.Load() }

// NewBackend returns a backend that starts alive with a closed breaker.
func NewBackend(u *url.URL, bs BreakerSettings) *Backend {
	return newBackend(u, bs, &sync.Mutex{})
}

func newBackend(u *url.URL, bs BreakerSettings, ejectMu *sync.Mutex) *Backend {
	b := &Backend{url: u, key: u.String(), ejectPercent: bs.MaxEjectedPercent, ejectMu: ejectMu, onCapped: bs.OnEjectionRefused}
	b.alive.Store(true)
	maxFail := bs.MaxFailures
	if maxFail == 0 {
		maxFail = 5
	}
	b.breaker = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        b.key,
		MaxRequests: 1, // half-open lets one probe through at a time
		Timeout:     bs.OpenTimeout,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			if c.ConsecutiveFailures < maxFail {
				if c.ConsecutiveFailures == 1 {
					b.capped.Store(false) // a new streak: report a refusal again
				}
				return false
			}
			return b.mayEject()
		},
		IsExcluded: func(err error) bool {
			return errors.Is(err, ErrClientFault) || errors.Is(err, ErrNotCounted)
		},
		OnStateChange: func(_ string, from, to gobreaker.State) {
			f, t := fromGobreaker(from), fromGobreaker(to)
			b.state.Store(int32(t))
			if t == BreakerClosed {
				b.ejected.Store(false)
			}
			if t == BreakerOpen && bs.OnTrip != nil {
				bs.OnTrip(b)
			}
			if bs.OnStateChange != nil {
				bs.OnStateChange(b, f, t)
			}
		},
	})
	return b
}

// mayEject decides, as b's breaker is about to open, whether every pool b
// serves can spare it: the backends already out plus b must stay within
// the pool's cap. It runs only when a breaker is ready to trip, under the
// registry's ejection mutex, so two backends of one pool cannot both take
// the last free place.
func (b *Backend) mayEject() bool {
	pools := b.pools.Load()
	if pools == nil {
		b.ejected.Store(true)
		return true
	}
	b.ejectMu.Lock()
	defer b.ejectMu.Unlock()
	for _, p := range *pools {
		if p.ejectedOthers(b)+1 > p.maxEjected(b.ejectPercent) {
			if !b.capped.Swap(true) && b.onCapped != nil {
				b.onCapped(b)
			}
			return false
		}
	}
	b.ejected.Store(true)
	b.capped.Store(false)
	return true
}

// Ejected reports whether b's breaker has taken it out of its pools (open,
// or half-open awaiting a probe).
func (b *Backend) Ejected() bool { return b.ejected.Load() }

func fromGobreaker(s gobreaker.State) BreakerState {
	switch s {
	case gobreaker.StateHalfOpen:
		return BreakerHalfOpen
	case gobreaker.StateOpen:
		return BreakerOpen
	default:
		return BreakerClosed
	}
}

// URL is the backend's base URL. Callers must not modify it.
func (b *Backend) URL() *url.URL { return b.url }

// String returns the URL as text; it is also the metrics label.
func (b *Backend) String() string { return b.key }

// Alive reports the active health checks' verdict.
func (b *Backend) Alive() bool { return b.alive.Load() }

// SetAlive records a health verdict and reports whether it changed.
func (b *Backend) SetAlive(v bool) (changed bool) { return b.alive.Swap(v) != v }

// InFlight is the number of requests currently being proxied to b.
func (b *Backend) InFlight() int64 { return b.inflight.Load() }

// Breaker returns the breaker's current state (it may move open → half-open
// when asked after the open timeout).
func (b *Backend) Breaker() BreakerState {
	if BreakerState(b.state.Load()) == BreakerClosed {
		return BreakerClosed
	}
	return fromGobreaker(b.breaker.State())
}

// Available reports whether a balancer may pick b: alive and a breaker that
// is not open. A half-open breaker counts as available; Acquire then admits
// a single probe.
func (b *Backend) Available() bool {
	return b.alive.Load() && b.Breaker() != BreakerOpen
}

// Allow asks the breaker for an attempt. On success the caller must call
// report exactly once with the attempt's outcome: nil for an answer, an error
// for a failure (wrap ErrClientFault for faults that are the client's, which
// the breaker ignores).
func (b *Backend) Allow() (report func(err error), err error) {
	report, err = b.breaker.Allow()
	if err != nil {
		return nil, ErrUnavailable
	}
	return report, nil
}

// Begin counts a request in flight to b (least-conn reads it); End undoes it.
// A proxied request stays in flight until its response body is closed.
func (b *Backend) Begin() { b.inflight.Add(1) }

// End marks the end of a request counted by Begin.
func (b *Backend) End() { b.inflight.Add(-1) }

// Acquire is Allow and Begin together: done reports the outcome and ends the
// in-flight count.
func (b *Backend) Acquire() (done func(err error), err error) {
	report, err := b.Allow()
	if err != nil {
		return nil, err
	}
	b.Begin()
	return func(err error) {
		b.End()
		report(err)
	}, nil
}

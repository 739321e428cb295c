package iptrack

import (
	"net/netip"
	"sync"
	"time"
)

// Throttle decides when an event about a client may be reported (logged):
// at most once per Every for each key, and at most Max times per Every in
// all, so a client spraying addresses cannot flood the log either. It
// remembers up to MaxKeys keys (least recently seen forgotten first). Safe
// for concurrent use.
type Throttle struct {
	last  *Table[int64] // last report per key, ns since epoch
	every int64
	max   int64
	epoch time.Time

	mu    sync.Mutex // guards the global budget; taken only for a report
	start int64      // start of the current budget window, ns since epoch
	n     int64      // reports in the current window
	begun bool
}

// NewThrottle returns a throttle; every must be positive (it defaults to a
// minute), maxKeys and max default to 1024 and 100.
func NewThrottle(every time.Duration, maxKeys, max int) *Throttle {
	if every <= 0 {
		every = time.Minute
	}
	if maxKeys <= 0 {
		maxKeys = 1024
	}
	if max <= 0 {
		max = 100
	}
	return &Throttle{
		last:  New[int64](Options{MaxEntries: maxKeys, Shards: 8, IdleTTL: every}),
		every: int64(every),
		max:   int64(max),
		epoch: time.Now(),
	}
}

// Allow reports whether an event for key at now may be reported.
func (th *Throttle) Allow(key netip.Addr, now time.Time) bool {
	ts := int64(now.Sub(th.epoch))
	ok := false
	th.last.Do(key, now, func(last *int64, isNew bool) {
		if isNew || ts-*last >= th.every {
			*last, ok = ts, true
		}
	})
	if !ok {
		return false
	}
	th.mu.Lock()
	defer th.mu.Unlock()
	if !th.begun || ts-th.start >= th.every || ts < th.start {
		th.begun, th.start, th.n = true, ts, 0
	}
	th.n++
	return th.n <= th.max
}

// Sweep forgets keys not reported for Every.
func (th *Throttle) Sweep(now time.Time) { th.last.Sweep(now) }

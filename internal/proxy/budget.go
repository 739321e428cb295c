package proxy

import (
	"sync/atomic"
	"time"
)

// RetryBudget caps retries at a fraction of a pool's recent requests, so an
// outage does not multiply the load on what is left (Finagle's and Envoy's
// retry budgets). Counts are kept in two adjacent windows and the previous
// one is weighted by how much of it still overlaps the sliding window.
type RetryBudget struct {
	ratio  float64
	min    float64
	window int64 // nanoseconds
	now    func() time.Time

	epoch     atomic.Int64    // window index of cur
	cur, prev [2]atomic.Int64 // [0] requests, [1] retries
}

// NewRetryBudget allows retries up to ratio × requests over the last window,
// plus minPerSec retries per second so that a quiet pool can still retry
// (Finagle's defaults: 20% and 10/s over 10s).
func NewRetryBudget(ratio float64, minPerSec int, window time.Duration, now func() time.Time) *RetryBudget {
	if now == nil {
		now = time.Now
	}
	return &RetryBudget{ratio: ratio, min: float64(minPerSec) * window.Seconds(), window: int64(window), now: now}
}

func (b *RetryBudget) rotate() (elapsed float64) {
	t := b.now().UnixNano()
	e := t / b.window
	old := b.epoch.Load()
	if e != old && b.epoch.CompareAndSwap(old, e) {
		for i := range b.cur {
			v := b.cur[i].Swap(0)
			if e == old+1 {
				b.prev[i].Store(v)
			} else {
				b.prev[i].Store(0)
			}
		}
	}
	return float64(t%b.window) / float64(b.window)
}

// Request records one first attempt.
func (b *RetryBudget) Request() {
	b.rotate()
	b.cur[0].Add(1)
}

// Withdraw reports whether one more retry fits the budget, and records it if so.
func (b *RetryBudget) Withdraw() bool {
	f := b.rotate()
	w := 1 - f
	reqs := float64(b.cur[0].Load()) + w*float64(b.prev[0].Load())
	limit := b.ratio*reqs + b.min
	prev := w * float64(b.prev[1].Load())
	for {
		// Compare-and-swap, so racing retries cannot overspend the budget.
		cur := b.cur[1].Load()
		if float64(cur)+prev+1 > limit {
			return false
		}
		if b.cur[1].CompareAndSwap(cur, cur+1) {
			return true
		}
	}
}

package proxy

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// clock is a settable time source for RetryBudget.
type clock struct{ ns atomic.Int64 }

func (c *clock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *clock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }
func (c *clock) add(d time.Duration) { c.ns.Add(int64(d)) }
func newClock(t time.Time) *clock    { c := &clock{}; c.set(t); return c }
func withdrawAll(b *RetryBudget) int {
	n := 0
	for n < 10000 && b.Withdraw() {
		n++
	}
	return n
}
func requests(b *RetryBudget, n int) {
	for range n {
		b.Request()
	}
}

// windowStart is aligned to a 10s window boundary.
var windowStart = time.Unix(1_700_000_000, 0)

func TestRetryBudgetRatio(t *testing.T) {
	tests := []struct {
		name      string
		ratio     float64
		minPerSec int
		requests  int
		want      int
	}{
		{name: "20% of 100 requests", ratio: 0.2, requests: 100, want: 20},
		{name: "20% of 10 requests", ratio: 0.2, requests: 10, want: 2},
		{name: "20% of 4 requests rounds down", ratio: 0.2, requests: 4, want: 0},
		{name: "no requests, no minimum", ratio: 0.2, requests: 0, want: 0},
		{name: "minimum alone: 1/s over 10s", ratio: 0.2, minPerSec: 1, requests: 0, want: 10},
		{name: "ratio plus minimum", ratio: 0.2, minPerSec: 1, requests: 100, want: 30},
		{name: "ratio zero", ratio: 0, requests: 1000, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(windowStart.Add(5 * time.Second)) // mid-window
			b := NewRetryBudget(tc.ratio, tc.minPerSec, 10*time.Second, c.now)
			requests(b, tc.requests)
			if got := withdrawAll(b); got != tc.want {
				t.Fatalf("withdrawals = %d, want %d", got, tc.want)
			}
			// The budget refills with new requests: 5 more → 1 more retry.
			if tc.ratio == 0.2 && tc.minPerSec == 0 && tc.requests == 100 {
				requests(b, 5)
				if got := withdrawAll(b); got != 1 {
					t.Fatalf("after 5 more requests: withdrawals = %d, want 1", got)
				}
			}
		})
	}
}

func TestRetryBudgetWindowRotation(t *testing.T) {
	const window = 10 * time.Second
	tests := []struct {
		name    string
		advance time.Duration // after 100 requests at mid-window
		want    int
	}{
		{name: "same window", advance: 4 * time.Second, want: 20},
		// Next window, 0% elapsed: the previous window counts in full.
		{name: "next window start", advance: 5 * time.Second, want: 20},
		// Next window, half elapsed: the previous one weighs half.
		{name: "next window middle", advance: 10 * time.Second, want: 10},
		{name: "two windows later", advance: 15 * time.Second, want: 0},
		{name: "three windows later", advance: 25 * time.Second, want: 0},
		{name: "long idle", advance: time.Hour, want: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newClock(windowStart.Add(window / 2))
			b := NewRetryBudget(0.2, 0, window, c.now)
			requests(b, 100)
			c.add(tc.advance)
			if got := withdrawAll(b); got != tc.want {
				t.Fatalf("withdrawals = %d, want %d", got, tc.want)
			}
		})
	}

	t.Run("retries of the previous window count too", func(t *testing.T) {
		c := newClock(windowStart.Add(window / 2))
		b := NewRetryBudget(0.2, 0, window, c.now)
		requests(b, 100)
		if got := withdrawAll(b); got != 20 {
			t.Fatalf("first window: %d, want 20", got)
		}
		c.set(windowStart.Add(window)) // next window, 0% elapsed
		if got := withdrawAll(b); got != 0 {
			t.Fatalf("next window: %d more withdrawals, want 0 (budget already spent)", got)
		}
		c.add(2 * window)
		requests(b, 10)
		if got := withdrawAll(b); got != 2 {
			t.Fatalf("after two idle windows and 10 requests: %d, want 2 (old retries forgotten)", got)
		}
	})
}

func TestRetryBudgetConcurrent(t *testing.T) {
	c := newClock(windowStart)
	b := NewRetryBudget(0.2, 0, 10*time.Second, c.now)
	var wg sync.WaitGroup
	var ok atomic.Int64
	for range 8 {
		wg.Go(func() {
			for i := range 2000 {
				b.Request()
				if b.Withdraw() {
					ok.Add(1)
				}
				if i%500 == 0 {
					c.add(time.Second)
				}
			}
		})
	}
	wg.Wait()
	if ok.Load() == 0 {
		t.Fatal("no retry was ever allowed")
	}
	// 16000 requests: never more than 20% of them plus the slack of racing
	// goroutines.
	if n := ok.Load(); n > 16000/5+8 {
		t.Fatalf("%d withdrawals for 16000 requests, want ≤ %d", n, 16000/5+8)
	}
}

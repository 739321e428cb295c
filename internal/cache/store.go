package cache

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

// Store holds entries by key. Implementations never fail a request: a
// store that cannot answer reports a miss (and counts the error in Stats).
type Store interface {
	// Get returns the entry stored under key, if any and still fresh.
	Get(ctx context.Context, key string) (*Entry, bool)
	// Set stores e under key until e.Expires. It may complete after it
	// returns (a remote store writes in the background).
	Set(key string, e *Entry)
	// Delete removes key (an unsafe method changed the resource).
	Delete(key string)
	// Name is "memory" or "redis", for logs and /stats.
	Name() string
}

// Stats are the cache's counters, read by /metrics, /stats and the
// dashboard. Counting is one atomic add.
type Stats struct {
	Hits, Misses, Bypasses, Errors atomic.Int64
}

// HitRatio is hits / (hits + misses), 0 before any lookup.
func (s *Stats) HitRatio() float64 {
	h, m := s.Hits.Load(), s.Misses.Load()
	if h+m == 0 {
		return 0
	}
	return float64(h) / float64(h+m)
}

// Memory is the embedded store: bounded in bytes (entry sizes are the
// weights), per-entry expiry, W-TinyLFU admission and eviction (otter).
type Memory struct {
	c *otter.Cache[string, *Entry]
}

// NewMemory returns a store holding at most maxBytes of entries.
func NewMemory(maxBytes int64) (*Memory, error) {
	c, err := otter.New(&otter.Options[string, *Entry]{
		MaximumWeight: uint64(maxBytes),
		Weigher: func(k string, e *Entry) uint32 {
			return uint32(min(len(k)+e.Size(), 1<<31))
		},
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[string, *Entry]) time.Duration {
			return max(time.Until(e.Value.Expires), time.Millisecond)
		}),
	})
	if err != nil {
		return nil, err
	}
	return &Memory{c: c}, nil
}

func (m *Memory) Get(_ context.Context, key string) (*Entry, bool) {
	e, ok := m.c.GetIfPresent(key)
	if !ok || !e.Fresh(time.Now()) {
		return nil, false
	}
	return e, true
}

func (m *Memory) Set(key string, e *Entry) { m.c.Set(key, e) }

func (m *Memory) Delete(key string) { m.c.Invalidate(key) }

func (m *Memory) Name() string { return "memory" }

// Bytes is the weight currently held.
func (m *Memory) Bytes() uint64 { return m.c.WeightedSize() }

// Close stops the store's background work.
func (m *Memory) Close() { m.c.StopAllGoroutines() }

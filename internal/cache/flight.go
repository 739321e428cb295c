package cache

import (
	"context"
	"hash/maphash"
	"sync"
	"time"
)

// Flights coalesces concurrent misses for one key (stampede protection):
// the first request becomes the leader and goes upstream; the others wait
// for its answer. Unlike x/sync/singleflight, the leader runs in its own
// request's goroutine (it streams to its own client while recording), and
// a waiter stops waiting when its client goes away.
type Flights struct {
	seed   maphash.Seed
	shards [64]flightShard
}

type flightShard struct {
	mu sync.Mutex
	m  map[string]*Flight
}

// Flight is one upstream fetch others may wait on.
type Flight struct {
	done    chan struct{}
	entry   *Entry
	variant string
	// recording is closed when the leader has a storable header and is
	// recording the body; only the leader touches recordingClosed.
	recording       chan struct{}
	recordingClosed bool
}

// NewFlights returns an empty group.
func NewFlights() *Flights {
	f := &Flights{seed: maphash.MakeSeed()}
	for i := range f.shards {
		f.shards[i].m = map[string]*Flight{}
	}
	return f
}

func (f *Flights) shard(key string) *flightShard {
	return &f.shards[maphash.String(f.seed, key)%uint64(len(f.shards))]
}

// Join returns the flight for key and whether the caller leads it. A
// leader must call Finish exactly once (defer it: a panic must not leave
// waiters hanging).
func (f *Flights) Join(key string) (fl *Flight, leader bool) {
	s := f.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if fl, ok := s.m[key]; ok {
		return fl, false
	}
	fl = &Flight{done: make(chan struct{}), recording: make(chan struct{})}
	s.m[key] = fl
	return fl, true
}

// Finish publishes the leader's result: a storable entry and the variant
// key it was stored under, or nil when the answer must not be shared.
func (f *Flights) Finish(key string, fl *Flight, e *Entry, variant string) {
	s := f.shard(key)
	s.mu.Lock()
	if s.m[key] == fl {
		delete(s.m, key)
	}
	s.mu.Unlock()
	fl.entry, fl.variant = e, variant
	close(fl.done)
}

// Recording tells the waiters that the leader's answer is storable and its
// body is on its way. Leader only.
func (fl *Flight) Recording() {
	if !fl.recordingClosed {
		fl.recordingClosed = true
		close(fl.recording)
	}
}

// Wait blocks until the leader finishes or ctx ends, and for at most
// bodyWait once the leader is recording its body. It returns the leader's
// entry and variant key; nil means "fetch your own".
func (fl *Flight) Wait(ctx context.Context, bodyWait time.Duration) (*Entry, string) {
	select {
	case <-fl.done:
		return fl.entry, fl.variant
	case <-ctx.Done():
		return nil, ""
	case <-fl.recording:
	}
	t := time.NewTimer(bodyWait)
	defer t.Stop()
	select {
	case <-fl.done:
		return fl.entry, fl.variant
	case <-ctx.Done():
	case <-t.C:
	}
	return nil, ""
}

// Package redisbreaker is the circuit breaker in front of a shared Redis
// the gateway can work without for a while: the response cache (which then
// serves without it) and the cluster node (which then runs on local limits
// and lists). It is sony/gobreaker, the breaker the upstream backends use,
// with what both Redis users need on top:
//
//   - one rule for what counts as Redis failing: an error, but not a miss
//     (redis.Nil is an answer) and not a caller that gave up (ErrCallerGone
//     says nothing about Redis);
//   - one OnOpen call when an outage begins, with the failure that began
//     it, and one OnClose call when it ends, with its length: each user
//     logs one warning and one info line per outage from them, however
//     many calls fail in between;
//   - a lock-free Closed for the request path, which checks it on every
//     request (gobreaker's own State takes a mutex);
//   - Fail, for failures seen outside a call made through the breaker (a
//     subscription that broke), and Probe, for a user whose way back is
//     more than one call (the cluster node replays and resyncs before it
//     shares state again, so it, not the next request, closes the breaker).
package redisbreaker

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"
)

var (
	// ErrOpen is what Do returns without calling Redis while the breaker
	// is open (or half-open with its one probe already under way).
	ErrOpen = errors.New("redis skipped: circuit breaker open")
	// ErrCallerGone marks a call abandoned by its caller (a client that
	// hung up): wrap it into such a call's error so that it counts neither
	// for nor against Redis.
	ErrCallerGone = errors.New("caller gone before redis answered")
)

// IsFailure reports whether err counts against Redis: any error but a miss
// (redis.Nil) or ErrCallerGone.
func IsFailure(err error) bool {
	return err != nil && !errors.Is(err, redis.Nil) && !errors.Is(err, ErrCallerGone)
}

// Settings configures a Breaker.
type Settings struct {
	// Name is gobreaker's name for it.
	Name string
	// Trip is how many failures in a row open the breaker (at least 1).
	Trip int
	// Cooldown is how long the breaker stays open before one call may go
	// through as a probe. Zero or less: a probe may go at once; for a user
	// that paces its probes itself (Probe from a ticker).
	Cooldown time.Duration
	// OnOpen, when set, is called once as an outage begins, with the
	// failure that opened the breaker. OnClose, when set, is called once as
	// it ends, with how long it lasted. Both run under the breaker's lock:
	// they must not call the breaker.
	OnOpen  func(cause error)
	OnClose func(outage time.Duration)
}

// Breaker guards calls to one Redis. Its zero value is not usable: build
// it with New.
type Breaker struct {
	cb     *gobreaker.TwoStepCircuitBreaker[struct{}]
	closed atomic.Bool // mirrors gobreaker: false from the open to the close

	// failMu serialises failure reports so that OnOpen is handed the
	// failure that tripped the breaker; cause is that failure.
	failMu sync.Mutex
	cause  error
	// openedAt is when the outage began; set and read in onStateChange,
	// under gobreaker's lock.
	openedAt time.Time
}

// New returns a closed breaker.
func New(s Settings) *Breaker {
	b := &Breaker{}
	b.closed.Store(true)
	trip := uint32(max(s.Trip, 1))
	cooldown := s.Cooldown
	if cooldown <= 0 {
		cooldown = time.Nanosecond // gobreaker reads zero as a minute
	}
	b.cb = gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        s.Name,
		MaxRequests: 1, // half-open lets one probe through
		Timeout:     cooldown,
		ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= trip },
		// Outcomes are classified before they reach gobreaker (report).
		IsSuccessful: func(err error) bool { return err == nil },
		OnStateChange: func(_ string, from, to gobreaker.State) {
			switch {
			case from == gobreaker.StateClosed && to == gobreaker.StateOpen:
				b.closed.Store(false)
				b.openedAt = time.Now()
				if s.OnOpen != nil {
					s.OnOpen(b.cause) // failMu is held: see report
				}
			case to == gobreaker.StateClosed:
				b.closed.Store(true)
				if s.OnClose != nil {
					s.OnClose(time.Since(b.openedAt))
				}
			}
		},
	})
	return b
}

// Closed reports whether Redis is in use: no outage, or one that ended.
// Open and half-open (a probe under way) both read as not closed.
func (b *Breaker) Closed() bool { return b.closed.Load() }

// Do calls op unless the breaker is open, and returns op's error, or
// ErrOpen if op was not called. op's outcome counts as IsFailure says; a
// panic in op counts as a failure and goes on up.
func (b *Breaker) Do(op func() error) (err error) {
	done, aerr := b.cb.Allow()
	if aerr != nil {
		return ErrOpen
	}
	defer func() {
		if p := recover(); p != nil {
			b.report(done, fmt.Errorf("panic: %v", p))
			panic(p)
		}
	}()
	err = op()
	b.report(done, err)
	return err
}

// Fail reports err, seen outside Do, as a failure of Redis (if IsFailure
// says it is one): with Settings.Trip 1 it opens the breaker. While the
// breaker is not closed it does nothing: the outage is already known, and
// a failure must not take the probe's place.
func (b *Breaker) Fail(err error) {
	if !IsFailure(err) || !b.closed.Load() {
		return
	}
	done, aerr := b.cb.Allow()
	if aerr != nil {
		return
	}
	b.report(done, err)
}

// Probe claims the one call allowed through a breaker that is not closed,
// once Cooldown has passed since it opened; ok is false when the breaker
// is closed, the cooldown is still running, or another probe holds the
// claim. The caller must then call done exactly once: done(nil) closes
// the breaker (OnClose runs before done returns, so a caller may close it
// under a lock of its own); any error, even one IsFailure would forgive,
// reopens it for another Cooldown, since a probe that did not succeed
// proved nothing.
func (b *Breaker) Probe() (done func(err error), ok bool) {
	if b.closed.Load() {
		return nil, false
	}
	d, err := b.cb.Allow()
	if err != nil {
		return nil, false
	}
	return func(err error) {
		if err == nil {
			d(nil)
			return
		}
		b.fail(d, err)
	}, true
}

// report hands op's outcome to gobreaker: a success, or a failure whose
// error OnOpen receives if it trips the breaker.
func (b *Breaker) report(done func(error), err error) {
	if !IsFailure(err) {
		done(nil)
		return
	}
	b.fail(done, err)
}

// fail hands gobreaker a failure, keeping err as the cause OnOpen reports
// should it trip the breaker.
func (b *Breaker) fail(done func(error), err error) {
	b.failMu.Lock()
	defer b.failMu.Unlock()
	b.cause = err
	done(err)
}

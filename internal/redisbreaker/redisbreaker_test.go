package redisbreaker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/testsvc"
)

// outages records the OnOpen / OnClose calls of a breaker.
type outages struct {
	mu     sync.Mutex
	opened []error
	closed []time.Duration
}

func (o *outages) settings(trip int, cooldown time.Duration) Settings {
	return Settings{
		Name: "test", Trip: trip, Cooldown: cooldown,
		OnOpen: func(cause error) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.opened = append(o.opened, cause)
		},
		OnClose: func(d time.Duration) {
			o.mu.Lock()
			defer o.mu.Unlock()
			o.closed = append(o.closed, d)
		},
	}
}

func (o *outages) counts() (opened, closed int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.opened), len(o.closed)
}

var errDown = errors.New("dial tcp: connection refused")

func fails() error { return errDown }

func TestOpensAfterTripFailuresInARowAndSkipsRedis(t *testing.T) {
	var o outages
	b := New(o.settings(3, time.Hour))
	// A success in between starts the count again.
	for _, op := range []func() error{fails, fails, func() error { return nil }, fails, fails} {
		_ = b.Do(op)
	}
	if !b.Closed() {
		t.Fatal("opened before 3 failures in a row")
	}
	if err := b.Do(fails); !errors.Is(err, errDown) {
		t.Fatalf("third failure returned %v, want the op's own error", err)
	}
	if b.Closed() {
		t.Fatal("still closed after 3 failures in a row")
	}
	called := false
	if err := b.Do(func() error { called = true; return nil }); !errors.Is(err, ErrOpen) || called {
		t.Fatalf("open breaker: err %v, op called %v; want ErrOpen without calling", err, called)
	}
	if opened, _ := o.counts(); opened != 1 || !errors.Is(o.opened[0], errDown) {
		t.Fatalf("OnOpen calls %v, want one with the failure that tripped it", o.opened)
	}
}

// A miss is an answer and a caller that hung up says nothing about Redis:
// neither trips the breaker, and either resets a run of failures, as a
// success does.
func TestMissesAndCallersGoneAreNotFailures(t *testing.T) {
	gone := fmt.Errorf("lookup: %w", ErrCallerGone)
	for _, tc := range []struct {
		name string
		err  error
	}{{"miss", redis.Nil}, {"caller gone", gone}} {
		t.Run(tc.name, func(t *testing.T) {
			var o outages
			b := New(o.settings(2, time.Hour))
			for range 10 {
				_ = b.Do(fails)
				_ = b.Do(func() error { return tc.err })
			}
			if !b.Closed() {
				t.Fatal("opened")
			}
			b.Fail(tc.err)
			b.Fail(tc.err)
			if !b.Closed() {
				t.Fatal("Fail counted a non-failure")
			}
		})
	}
	if IsFailure(nil) || IsFailure(redis.Nil) || IsFailure(gone) || !IsFailure(context.DeadlineExceeded) {
		t.Fatal("IsFailure misclassifies")
	}
}

// After the cooldown exactly one call goes through; its success closes the
// breaker with one OnClose, its failure opens it for another cooldown
// without a second OnOpen.
func TestOneProbeAfterTheCooldown(t *testing.T) {
	var o outages
	const cooldown = 50 * time.Millisecond
	b := New(o.settings(1, cooldown))
	_ = b.Do(fails)
	time.Sleep(cooldown + 10*time.Millisecond)

	release := make(chan struct{})
	inProbe := make(chan struct{})
	go func() {
		_ = b.Do(func() error { close(inProbe); <-release; return errDown })
	}()
	<-inProbe
	if err := b.Do(func() error { return nil }); !errors.Is(err, ErrOpen) {
		t.Fatalf("second call during the probe: %v, want ErrOpen", err)
	}
	close(release)
	waitUntil(t, func() bool { return !errors.Is(b.Do(func() error { return nil }), ErrOpen) })
	if !b.Closed() {
		t.Fatal("a successful probe did not close the breaker")
	}
	opened, closed := o.counts()
	if opened != 1 || closed != 1 {
		t.Fatalf("OnOpen %d, OnClose %d: want one each for one outage", opened, closed)
	}
	if o.closed[0] < 2*cooldown {
		t.Fatalf("outage reported as %v; it lasted two cooldowns at least", o.closed[0])
	}
}

// Fail opens a closed breaker and is ignored while it is open: a failure
// reported from elsewhere must not take the place of the probe.
func TestFailOpensAndProbeCloses(t *testing.T) {
	var o outages
	b := New(o.settings(1, 0))
	if done, ok := b.Probe(); ok || done != nil {
		t.Fatal("a closed breaker handed out a probe")
	}
	b.Fail(errDown)
	if b.Closed() {
		t.Fatal("Fail did not open the breaker")
	}
	done, ok := b.Probe()
	if !ok {
		t.Fatal("no probe with a zero cooldown")
	}
	if _, again := b.Probe(); again {
		t.Fatal("two probes at once")
	}
	b.Fail(errDown) // during the probe: ignored
	done(redis.Nil) // a probe that did not succeed, whatever the error
	if b.Closed() {
		t.Fatal("a failed probe closed the breaker")
	}
	done, ok = b.Probe()
	if !ok {
		t.Fatal("no probe after a failed one")
	}
	done(nil)
	if !b.Closed() {
		t.Fatal("a successful probe did not close the breaker")
	}
	if opened, closed := o.counts(); opened != 1 || closed != 1 {
		t.Fatalf("OnOpen %d, OnClose %d, want 1 and 1", opened, closed)
	}
}

func TestPanicCountsAsFailureAndGoesOnUp(t *testing.T) {
	var o outages
	b := New(o.settings(1, time.Hour))
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Fatalf("recovered %v, want the op's panic", p)
			}
		}()
		_ = b.Do(func() error { panic("boom") })
	}()
	if b.Closed() {
		t.Fatal("a panic did not count as a failure")
	}
}

// Many concurrent failures: one OnOpen.
func TestConcurrentFailuresOpenOnce(t *testing.T) {
	var o outages
	b := New(o.settings(3, time.Hour))
	var wg sync.WaitGroup
	var skipped atomic.Int32
	for range 50 {
		wg.Go(func() {
			if errors.Is(b.Do(fails), ErrOpen) {
				skipped.Add(1)
			}
			b.Fail(errDown)
		})
	}
	wg.Wait()
	if opened, _ := o.counts(); opened != 1 {
		t.Fatalf("OnOpen called %d times, want 1", opened)
	}
}

// Against a real Redis that stops and starts again: lookups fail fast and
// are then skipped, and the first probe after the restart closes.
func TestRealOutage(t *testing.T) {
	srv := testsvc.RestartableRedis(t)
	rdb := redisconn.New(redisconn.Server{Addr: srv.Addr}, redisconn.ForCache(50*time.Millisecond))
	defer rdb.Close()
	var o outages
	b := New(o.settings(3, 100*time.Millisecond))
	get := func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		return rdb.Get(ctx, "k").Err()
	}
	waitUntil(t, func() bool { return b.Do(get) == redis.Nil })

	srv.Stop()
	calls := 0
	for range 100 {
		_ = b.Do(func() error { calls++; return get() })
	}
	if calls != 3 || b.Closed() {
		t.Fatalf("%d calls reached a stopped Redis (closed %v), want 3 then none", calls, b.Closed())
	}
	srv.Start()
	waitUntil(t, func() bool { return b.Do(get) == redis.Nil })
	if opened, closed := o.counts(); opened != 1 || closed != 1 {
		t.Fatalf("OnOpen %d, OnClose %d over one outage, want 1 and 1", opened, closed)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

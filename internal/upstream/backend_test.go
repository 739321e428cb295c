package upstream

import (
	"errors"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const openTimeout = 50 * time.Millisecond

var errBackend = errors.New("connection refused")

// tripper counts OnTrip calls and records transitions.
type tripper struct {
	trips atomic.Int32
	mu    sync.Mutex
	moves []string
}

func (tr *tripper) settings(maxFail uint32) BreakerSettings {
	return BreakerSettings{
		MaxFailures: maxFail,
		OpenTimeout: openTimeout,
		OnTrip:      func(*Backend) { tr.trips.Add(1) },
		OnStateChange: func(_ *Backend, from, to BreakerState) {
			tr.mu.Lock()
			tr.moves = append(tr.moves, from.String()+"→"+to.String())
			tr.mu.Unlock()
		},
	}
}

func (tr *tripper) transitions() []string {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	return append([]string(nil), tr.moves...)
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// attempt runs one Allow/report cycle with outcome err.
func attempt(t *testing.T, b *Backend, err error) {
	t.Helper()
	report, aerr := b.Allow()
	if aerr != nil {
		t.Fatalf("Allow refused in state %s: %v", b.Breaker(), aerr)
	}
	report(err)
}

// openBreaker fails b until it opens.
func openBreaker(t *testing.T, b *Backend, maxFail int) {
	t.Helper()
	for range maxFail {
		attempt(t, b, errBackend)
	}
	if b.Breaker() != BreakerOpen {
		t.Fatalf("breaker %s after %d failures, want open", b.Breaker(), maxFail)
	}
}

func TestBreakerOpensAfterMaxFailures(t *testing.T) {
	tr := &tripper{}
	b := NewBackend(mustURL(t, "http://10.0.0.1:8080"), tr.settings(3))
	if !b.Available() || b.Breaker() != BreakerClosed {
		t.Fatalf("new backend: available=%v breaker=%s, want true/closed", b.Available(), b.Breaker())
	}
	for i := range 2 {
		attempt(t, b, errBackend)
		if b.Breaker() != BreakerClosed || !b.Available() {
			t.Fatalf("after %d failures: breaker %s, want closed", i+1, b.Breaker())
		}
	}
	attempt(t, b, errBackend)
	if b.Breaker() != BreakerOpen {
		t.Fatalf("after 3 failures: breaker %s, want open", b.Breaker())
	}
	if b.Available() {
		t.Error("Available() = true while open")
	}
	if _, err := b.Allow(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Allow while open: err = %v, want ErrUnavailable", err)
	}
	if _, err := b.Acquire(); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Acquire while open: err = %v, want ErrUnavailable", err)
	}
	if b.InFlight() != 0 {
		t.Errorf("refused Acquire left InFlight = %d", b.InFlight())
	}
	if n := tr.trips.Load(); n != 1 {
		t.Errorf("OnTrip called %d times, want 1", n)
	}
}

func TestBreakerFailuresMustBeConsecutive(t *testing.T) {
	b := NewBackend(mustURL(t, "http://b"), (&tripper{}).settings(3))
	for range 5 {
		attempt(t, b, errBackend)
		attempt(t, b, errBackend)
		attempt(t, b, nil) // an answer resets the streak
	}
	if b.Breaker() != BreakerClosed {
		t.Fatalf("breaker %s, want closed: failures were never 3 in a row", b.Breaker())
	}
}

func TestBreakerDefaultMaxFailures(t *testing.T) {
	b := NewBackend(mustURL(t, "http://b"), BreakerSettings{OpenTimeout: time.Minute})
	for i := range 4 {
		attempt(t, b, errBackend)
		if b.Breaker() != BreakerClosed {
			t.Fatalf("opened after %d failures, want the default 5", i+1)
		}
	}
	attempt(t, b, errBackend)
	if b.Breaker() != BreakerOpen {
		t.Fatalf("breaker %s after 5 failures, want open", b.Breaker())
	}
}

func TestClientFaultsNeverCount(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{name: "bare ErrClientFault", err: ErrClientFault},
		{name: "wrapped ErrClientFault", err: fmt.Errorf("body too large: %w", ErrClientFault)},
		{name: "joined with a cause", err: errors.Join(errors.New("client went away"), ErrClientFault)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &tripper{}
			b := NewBackend(mustURL(t, "http://b"), tr.settings(3))
			for range 10 {
				attempt(t, b, tc.err)
			}
			if b.Breaker() != BreakerClosed || !b.Available() || tr.trips.Load() != 0 {
				t.Fatalf("after 10 client faults: breaker %s, trips %d; want closed, 0", b.Breaker(), tr.trips.Load())
			}
		})
	}
}

func TestBreakerHalfOpen(t *testing.T) {
	tests := []struct {
		name      string
		probe     error
		wantState BreakerState
		wantTrips int32
	}{
		{name: "successful probe closes", probe: nil, wantState: BreakerClosed, wantTrips: 1},
		{name: "failed probe reopens", probe: errBackend, wantState: BreakerOpen, wantTrips: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := &tripper{}
			b := NewBackend(mustURL(t, "http://b"), tr.settings(2))
			openBreaker(t, b, 2)
			time.Sleep(2 * openTimeout)
			if got := b.Breaker(); got != BreakerHalfOpen {
				t.Fatalf("after OpenTimeout: breaker %s, want half-open", got)
			}
			if !b.Available() {
				t.Fatal("half-open backend not Available")
			}
			report, err := b.Allow()
			if err != nil {
				t.Fatalf("first half-open Allow: %v", err)
			}
			for i := range 3 {
				if _, err := b.Allow(); !errors.Is(err, ErrUnavailable) {
					t.Fatalf("Allow #%d while the probe is out: err = %v, want ErrUnavailable", i+2, err)
				}
			}
			report(tc.probe)
			if got := b.Breaker(); got != tc.wantState {
				t.Fatalf("after probe: breaker %s, want %s", got, tc.wantState)
			}
			if got := tr.trips.Load(); got != tc.wantTrips {
				t.Errorf("OnTrip called %d times, want %d", got, tc.wantTrips)
			}
			if tc.wantState == BreakerClosed {
				// Closed again: attempts flow freely.
				for range 5 {
					attempt(t, b, nil)
				}
			} else if b.Available() {
				t.Error("reopened backend still Available")
			}
		})
	}
}

// A probe that failed because of the client says nothing about the backend:
// the breaker stays half-open and admits the next probe (it must not wedge
// with its one probe slot used up forever).
func TestHalfOpenClientFaultFreesProbe(t *testing.T) {
	tr := &tripper{}
	b := NewBackend(mustURL(t, "http://b"), tr.settings(1))
	openBreaker(t, b, 1)
	time.Sleep(2 * openTimeout)
	report, err := b.Allow()
	if err != nil {
		t.Fatalf("half-open Allow: %v", err)
	}
	report(fmt.Errorf("client gone: %w", ErrClientFault))
	if got := b.Breaker(); got != BreakerHalfOpen {
		t.Fatalf("after a client-fault probe: breaker %s, want half-open", got)
	}
	report, err = b.Allow()
	if err != nil {
		t.Fatalf("next probe refused after a client-fault probe: %v", err)
	}
	report(nil)
	if got := b.Breaker(); got != BreakerClosed {
		t.Fatalf("breaker %s, want closed", got)
	}
	want := []string{"closed→open", "open→half-open", "half-open→closed"}
	if got := tr.transitions(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("transitions %v, want %v", got, want)
	}
}

func TestSetAlive(t *testing.T) {
	b := NewBackend(mustURL(t, "http://b"), BreakerSettings{})
	steps := []struct {
		set         bool
		wantChanged bool
	}{
		{set: true, wantChanged: false}, // starts alive
		{set: false, wantChanged: true},
		{set: false, wantChanged: false},
		{set: true, wantChanged: true},
		{set: true, wantChanged: false},
	}
	for i, s := range steps {
		if got := b.SetAlive(s.set); got != s.wantChanged {
			t.Errorf("step %d: SetAlive(%v) changed = %v, want %v", i, s.set, got, s.wantChanged)
		}
		if b.Alive() != s.set || b.Available() != s.set {
			t.Errorf("step %d: Alive=%v Available=%v, want %v", i, b.Alive(), b.Available(), s.set)
		}
	}
}

func TestInFlight(t *testing.T) {
	b := NewBackend(mustURL(t, "http://b"), BreakerSettings{})
	b.Begin()
	b.Begin()
	if got := b.InFlight(); got != 2 {
		t.Fatalf("InFlight = %d, want 2", got)
	}
	b.End()
	if got := b.InFlight(); got != 1 {
		t.Fatalf("InFlight = %d, want 1", got)
	}
	done, err := b.Acquire()
	if err != nil {
		t.Fatal(err)
	}
	if got := b.InFlight(); got != 2 {
		t.Fatalf("after Acquire: InFlight = %d, want 2", got)
	}
	done(nil)
	b.End()
	if got := b.InFlight(); got != 0 {
		t.Fatalf("InFlight = %d, want 0", got)
	}

	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for range 1000 {
				b.Begin()
				b.End()
			}
		})
	}
	wg.Wait()
	if got := b.InFlight(); got != 0 {
		t.Fatalf("after concurrent Begin/End: InFlight = %d, want 0", got)
	}
}

func TestRegistry(t *testing.T) {
	r := NewRegistry((&tripper{}).settings(1))
	a1 := r.Get(mustURL(t, "http://10.0.0.1:8080"))
	a2 := r.Get(mustURL(t, "http://10.0.0.1:8080"))
	c := r.Get(mustURL(t, "http://10.0.0.2:8080"))
	if a1 != a2 {
		t.Fatal("Get returned different *Backend for the same URL")
	}
	if a1 == c {
		t.Fatal("Get returned the same *Backend for different URLs")
	}
	// Shared state: what one route table did is seen by the next.
	attempt(t, a1, errBackend)
	a1.SetAlive(false)
	a1.Begin()
	a3 := r.Get(mustURL(t, "http://10.0.0.1:8080"))
	if a3.Breaker() != BreakerOpen || a3.Alive() || a3.InFlight() != 1 {
		t.Errorf("state not shared: breaker %s alive %v inflight %d", a3.Breaker(), a3.Alive(), a3.InFlight())
	}
	if got := len(r.All()); got != 2 {
		t.Errorf("All() has %d backends, want 2", got)
	}

	var wg sync.WaitGroup
	got := make([]*Backend, 32)
	u3 := mustURL(t, "http://10.0.0.3:8080")
	for i := range got {
		wg.Go(func() { got[i] = r.Get(&url.URL{Scheme: u3.Scheme, Host: u3.Host}) })
	}
	wg.Wait()
	for i, b := range got {
		if b != got[0] {
			t.Fatalf("concurrent Get #%d returned a different *Backend", i)
		}
	}
}

func TestBreakerStateString(t *testing.T) {
	for s, want := range map[BreakerState]string{BreakerClosed: "closed", BreakerHalfOpen: "half-open", BreakerOpen: "open"} {
		if got := s.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", s, got, want)
		}
	}
}

// TestRetainRetiresWhatItDrops pins that a backend a reload drops is marked
// retired (so nothing keyed by it is created again) and a kept one is not.
func TestRetainRetiresWhatItDrops(t *testing.T) {
	reg := NewRegistry(BreakerSettings{})
	keep := reg.Get(&url.URL{Scheme: "http", Host: "keep:80"})
	drop := reg.Get(&url.URL{Scheme: "http", Host: "drop:80"})
	dropped := reg.Retain([]*Backend{keep})
	if len(dropped) != 1 || dropped[0] != drop || !drop.Retired() || keep.Retired() {
		t.Errorf("dropped %v; retired: drop %v keep %v", dropped, drop.Retired(), keep.Retired())
	}
	if again := reg.Get(&url.URL{Scheme: "http", Host: "drop:80"}); again == drop || again.Retired() {
		t.Errorf("a URL added again reuses the retired backend")
	}
}

// TestEjectionCap pins MAX_EJECTED_PERCENT: open breakers never take more
// than the cap of a pool out at once (but always at least one backend), a
// breaker kept closed by the cap says so once per failure streak, and a
// backend that closes again frees its place.
func TestEjectionCap(t *testing.T) {
	tests := []struct {
		name     string
		pool     int
		percent  int
		wantOpen int
	}{
		{name: "half of four", pool: 4, percent: 50, wantOpen: 2},
		{name: "half of three rounds down", pool: 3, percent: 50, wantOpen: 1},
		{name: "zero percent still lets one go", pool: 3, percent: 0, wantOpen: 1},
		{name: "one backend may always go", pool: 1, percent: 50, wantOpen: 1},
		{name: "a hundred percent takes them all", pool: 3, percent: 100, wantOpen: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var refused atomic.Int32
			reg := NewRegistry(BreakerSettings{
				MaxFailures: 2, OpenTimeout: time.Hour, MaxEjectedPercent: tc.percent,
				OnEjectionRefused: func(*Backend) { refused.Add(1) },
			})
			pool := &Pool{}
			for i := range tc.pool {
				pool.Members = append(pool.Members, Member{Backend: reg.Get(mustURL(t, fmt.Sprintf("http://10.0.0.%d", i+1))), Weight: 1})
			}
			Publish([]*Pool{pool})
			for range 3 {
				for _, m := range pool.Members {
					if m.Backend.Breaker() == BreakerClosed {
						attempt(t, m.Backend, errBackend)
					}
				}
			}
			open := 0
			for _, m := range pool.Members {
				if m.Backend.Breaker() == BreakerOpen {
					open++
					if !m.Backend.Ejected() {
						t.Errorf("%s open but not counted as ejected", m.Backend)
					}
				}
			}
			if open != tc.wantOpen {
				t.Fatalf("%d of %d breakers open, want %d", open, tc.pool, tc.wantOpen)
			}
			if want := int32(tc.pool - tc.wantOpen); refused.Load() != want {
				t.Errorf("OnEjectionRefused called %d times, want once per capped backend (%d)", refused.Load(), want)
			}
		})
	}
}

// TestEjectionCapAcrossPools: a backend shared by two routes may be ejected
// only if both pools can spare it.
func TestEjectionCapAcrossPools(t *testing.T) {
	reg := NewRegistry(BreakerSettings{MaxFailures: 1, OpenTimeout: openTimeout, MaxEjectedPercent: 50})
	a, b, c := reg.Get(mustURL(t, "http://a")), reg.Get(mustURL(t, "http://b")), reg.Get(mustURL(t, "http://c"))
	wide := &Pool{Members: []Member{{Backend: a, Weight: 1}, {Backend: b, Weight: 1}, {Backend: c, Weight: 1}, {Backend: reg.Get(mustURL(t, "http://d")), Weight: 1}}}
	narrow := &Pool{Members: []Member{{Backend: a, Weight: 1}, {Backend: b, Weight: 1}}}
	Publish([]*Pool{wide, narrow})
	attempt(t, a, errBackend)
	attempt(t, b, errBackend)
	if a.Breaker() != BreakerOpen || b.Breaker() != BreakerClosed {
		t.Fatalf("a %s, b %s: the two-backend pool may lose one only", a.Breaker(), b.Breaker())
	}
	attempt(t, c, errBackend)
	if c.Breaker() != BreakerOpen {
		t.Errorf("c %s: the four-backend pool had room for a second", c.Breaker())
	}
	// a recovers (half-open, a good probe): its place is free again.
	time.Sleep(openTimeout + 10*time.Millisecond)
	attempt(t, a, nil)
	if a.Breaker() != BreakerClosed || a.Ejected() {
		t.Fatalf("a %s ejected %v after a good probe", a.Breaker(), a.Ejected())
	}
	attempt(t, b, errBackend)
	if b.Breaker() != BreakerOpen {
		t.Errorf("b %s once a had recovered", b.Breaker())
	}
}

// TestOutcomesTheBreakerIgnores: client faults and slow answers count
// neither way; an excluded half-open probe frees the probe slot.
func TestOutcomesTheBreakerIgnores(t *testing.T) {
	b := NewBackend(mustURL(t, "http://b"), BreakerSettings{MaxFailures: 2, OpenTimeout: openTimeout})
	for range 5 {
		attempt(t, b, ErrNotCounted)
		attempt(t, b, fmt.Errorf("wrapped: %w", ErrClientFault))
	}
	if b.Breaker() != BreakerClosed {
		t.Fatalf("ignored outcomes opened the breaker: %s", b.Breaker())
	}
	openBreaker(t, b, 2)
	time.Sleep(openTimeout + 10*time.Millisecond)
	attempt(t, b, ErrNotCounted)
	if b.Breaker() != BreakerHalfOpen {
		t.Fatalf("after an ignored probe: %s, want half-open", b.Breaker())
	}
	attempt(t, b, nil) // the slot is free for another probe
	if b.Breaker() != BreakerClosed {
		t.Errorf("after a good probe: %s", b.Breaker())
	}
}

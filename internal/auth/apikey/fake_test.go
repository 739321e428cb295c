package apikey

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// fakeRemote is a scripted remote store: it knows the keys in names, fails
// while down is set, and blocks while gate is non-nil and open. With revokes
// it stands in for PostgreSQL, and the keys in revoked are revoked.
type fakeRemote struct {
	mu      sync.Mutex
	names   map[string]string // hex digest → name
	revokes bool
	revoked map[string]bool // hex digest → revoked an hour ago
	down    bool
	gate    chan struct{}
	// ignoreCtx makes a gated lookup wait for the gate even past its
	// deadline: a store that hangs.
	ignoreCtx bool
	calls     atomic.Int64
	// sawCancel records whether a lookup's context ended before its deadline.
	sawCancel atomic.Bool
}

func (f *fakeRemote) lookup(ctx context.Context, h string) (record, error) {
	f.calls.Add(1)
	f.mu.Lock()
	gate, down := f.gate, f.down
	name, ok := f.names[h]
	revoked := f.revoked[h]
	f.mu.Unlock()
	if gate != nil && f.ignoreCtx {
		<-gate
	} else if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.Canceled) {
				f.sawCancel.Store(true)
			}
			return record{}, ctx.Err()
		}
	}
	if down {
		return record{}, errors.New("connection refused")
	}
	rec := record{found: ok || revoked, name: name}
	if revoked {
		rec.revokedAt = time.Now().Add(-time.Hour)
	}
	return rec, nil
}

func (f *fakeRemote) set(fn func(f *fakeRemote)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// newFakeStore builds a Store whose only remote is f.
func newFakeStore(t *testing.T, f *fakeRemote, o Options) *Store {
	t.Helper()
	s := newStore(t, o)
	name := StoreRedis
	if f.revokes {
		name = StorePostgres
	}
	s.remotes = []*remoteStore{s.newRemote(name, f.lookup, f.revokes)}
	s.revocable = f.revokes
	return s
}

func TestOutageLoggedOncePerOutage(t *testing.T) {
	t.Parallel()
	f := &fakeRemote{names: map[string]string{hexOf("good"): "good"}}
	reg := prometheus.NewRegistry()
	log, logs := captureLogs(t)
	clock := newClock()
	s := newFakeStore(t, f, Options{Registerer: reg, Log: log, Now: clock.Now})
	setDown := func(down bool) func(*testing.T) {
		return func(*testing.T) { f.set(func(f *fakeRemote) { f.down = down }) }
	}
	runSteps(t, s, []lookupStep{
		{name: "down", do: setDown(true), key: "k1", wantErr: ErrStore},
		{name: "still down", key: "k2", wantErr: ErrStore},
		{name: "still down, same key (failures are not cached)", key: "k2", wantErr: ErrStore},
		{name: "back up", do: setDown(false), key: "good", want: Identity{Name: "good"}},
		{name: "up, unknown key", key: "k3", wantErr: ErrUnknown},
		{name: "second outage", do: setDown(true), key: "k4", wantErr: ErrStore},
	})
	if n := logs.count("API key store unavailable"); n != 2 {
		t.Errorf("%d outage lines for 2 outages:\n%s", n, logs)
	}
	if n := logs.count("API key store recovered"); n != 1 {
		t.Errorf("%d recovery lines, want 1:\n%s", n, logs)
	}
	if got := counter(t, reg, "apikey_store_errors_total", map[string]string{"store": StoreRedis}); got != 4 {
		t.Errorf("apikey_store_errors_total = %v, want 4", got)
	}
}

func TestConcurrencyLimitSheds(t *testing.T) {
	t.Parallel()
	f := &fakeRemote{gate: make(chan struct{}), ignoreCtx: true}
	reg := prometheus.NewRegistry()
	const timeout = 100 * time.Millisecond
	s := newFakeStore(t, f, Options{Registerer: reg, MaxConcurrent: 2, StoreTimeout: timeout})
	// Two lookups hang in a store that ignores its deadline, holding both slots.
	var wg sync.WaitGroup
	for i := range 2 {
		wg.Go(func() { _, _ = s.Lookup(context.Background(), fmt.Sprint("holder", i)) })
	}
	eventually(t, time.Second, "both slots taken", func() bool { return len(s.sem) == 2 })
	start := time.Now()
	_, err := s.Lookup(context.Background(), "third")
	if took, want := time.Since(start), timeout/slotWaitShare; !errors.Is(err, ErrStore) || took < want || took > want+failMargin {
		t.Fatalf("third lookup = %v after %v; want ErrStore after about %v", err, took, want)
	}
	close(f.gate)
	wg.Wait()
	if got := counter(t, reg, "apikey_lookups_shed_total", nil); got != 1 {
		t.Errorf("apikey_lookups_shed_total = %v, want 1", got)
	}
	if got := counter(t, reg, "apikey_store_errors_total", map[string]string{"store": StoreRedis}); got != 0 {
		t.Errorf("a shed lookup counted as a store error: %v", got)
	}
}

func TestConcurrentLookupsShareOneFlight(t *testing.T) {
	t.Parallel()
	f := &fakeRemote{names: map[string]string{hexOf("k"): "named"}, gate: make(chan struct{})}
	s := newFakeStore(t, f, Options{StoreTimeout: 10 * time.Second})

	leaderCtx, cancelLeader := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	results := make(chan error, 10)
	wg.Go(func() {
		id, err := s.Lookup(leaderCtx, "k")
		if err == nil && id.Name != "named" {
			err = fmt.Errorf("name %q", id.Name)
		}
		results <- err
	})
	eventually(t, time.Second, "the leader asks the store", func() bool { return f.calls.Load() == 1 })
	for range 5 {
		wg.Go(func() {
			_, err := s.Lookup(context.Background(), "k")
			results <- err
		})
	}
	// A waiter whose own request goes away returns at once.
	gone, cancelGone := context.WithCancel(context.Background())
	cancelGone()
	if _, err := s.Lookup(gone, "k"); !errors.Is(err, ErrStore) || !errors.Is(err, context.Canceled) {
		t.Fatalf("waiter with a canceled context = %v, want ErrStore wrapping context.Canceled", err)
	}
	// The leader's client leaving does not fail the shared lookup.
	cancelLeader()
	time.Sleep(20 * time.Millisecond)
	close(f.gate)
	wg.Wait()
	close(results)
	for err := range results {
		if err != nil {
			t.Errorf("lookup sharing the flight: %v", err)
		}
	}
	if n := f.calls.Load(); n != 1 {
		t.Errorf("%d store calls for concurrent lookups of one key, want 1", n)
	}
	if f.sawCancel.Load() {
		t.Error("the store saw the leader's cancellation")
	}
}

func TestCachesAreBounded(t *testing.T) {
	t.Parallel()
	f := &fakeRemote{
		names:   map[string]string{hexOf("valid"): "valid"},
		revokes: true,
		revoked: map[string]bool{hexOf("revoked-local"): true},
	}
	const entries = 640
	s := newFakeStore(t, f, Options{CacheEntries: entries, Digests: []string{hexOf("revoked-local")}})
	if _, err := s.Lookup(context.Background(), "valid"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Lookup(context.Background(), "revoked-local"); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked local key = %v, want ErrRevoked", err)
	}
	for i := range 20 * entries {
		if _, err := s.Lookup(context.Background(), fmt.Sprint("random-", i)); !errors.Is(err, ErrUnknown) {
			t.Fatal(err)
		}
	}
	if n := s.unknown.len(); n > entries {
		t.Errorf("negative cache holds %d entries, bound %d", n, entries)
	}
	// A flood of unknown keys evicts neither a valid key's entry nor a
	// revocation (which an outage relies on to keep the key refused).
	calls := f.calls.Load()
	if _, err := s.Lookup(context.Background(), "valid"); err != nil || f.calls.Load() != calls {
		t.Errorf("valid key after the flood: %v, store asked again: %v", err, f.calls.Load() != calls)
	}
	f.set(func(f *fakeRemote) { f.down = true })
	if _, err := s.Lookup(context.Background(), "revoked-local"); !errors.Is(err, ErrRevoked) || f.calls.Load() != calls {
		t.Errorf("revoked local key after the flood: %v, store asked again: %v", err, f.calls.Load() != calls)
	}
}

func TestCacheBoundedAndExpiryJudgedOnTheStoreClock(t *testing.T) {
	t.Parallel()
	c := newCache(100)
	var a digest
	a[0] = 1
	c.put(a, cacheEntry{name: "a", exp: 10})
	if _, ok := c.get(a, 20); ok {
		t.Error("expired entry served")
	}
	if e, ok := c.getStale(a, 20, 100); !ok || e.name != "a" {
		t.Errorf("an expired entry within maxStale: %+v %v", e, ok)
	}
	for i := range 10_000 {
		var d digest
		d[0], d[1], d[2] = byte(i), byte(i>>8), 7
		c.put(d, cacheEntry{err: ErrUnknown, exp: 1 << 62})
	}
	if n := c.len(); n > 100 {
		t.Errorf("len = %d, bound 100", n)
	}
}

// TestKnownKeySurvivesAFloodOfRandomKeys: random keys take every lookup
// slot; a key the store confirmed before, whose cache entry has just
// expired, is still accepted (stale) instead of failing with the flood.
func TestKnownKeySurvivesAFloodOfRandomKeys(t *testing.T) {
	t.Parallel()
	f := &fakeRemote{names: map[string]string{hexOf("known"): "svc"}}
	reg := prometheus.NewRegistry()
	clock := newClock()
	s := newFakeStore(t, f, Options{Registerer: reg, MaxConcurrent: 2, StoreTimeout: 100 * time.Millisecond, Now: clock.Now})
	if id, err := s.Lookup(context.Background(), "known"); err != nil || id.Name != "svc" {
		t.Fatalf("first lookup: %v %v", id, err)
	}
	clock.Advance(DefaultCacheTTL + time.Second)
	f.set(func(f *fakeRemote) { f.gate, f.ignoreCtx = make(chan struct{}), true })
	var wg sync.WaitGroup
	for i := range 2 { // the flood holds both slots
		wg.Go(func() { _, _ = s.Lookup(context.Background(), fmt.Sprint("random", i)) })
	}
	eventually(t, time.Second, "both slots taken", func() bool { return len(s.sem) == 2 })
	if id, err := s.Lookup(context.Background(), "known"); err != nil || id.Name != "svc" {
		t.Errorf("known key during the flood: %v %v, want it accepted", id, err)
	}
	if _, err := s.Lookup(context.Background(), "never-seen"); !errors.Is(err, ErrStore) {
		t.Errorf("an unknown key during the flood: %v, want ErrStore (fail closed)", err)
	}
	close(f.gate)
	wg.Wait()
	if got := counter(t, reg, "apikey_stale_answers_total", nil); got != 1 {
		t.Errorf("apikey_stale_answers_total = %v, want 1", got)
	}
}

func TestScheduledRevocationIsNeverServedStale(t *testing.T) {
	c := newCache(64)
	var d digest
	now := time.Now().UnixNano()
	c.put(d, cacheEntry{name: "svc", exp: now, final: true})
	if _, ok := c.getStale(d, now+1, int64(MaxStale)); ok {
		t.Fatal("an entry that expired at its revocation was served stale")
	}
	c.put(d, cacheEntry{name: "svc", exp: now})
	if _, ok := c.getStale(d, now+1, int64(MaxStale)); !ok {
		t.Fatal("an ordinary expired entry was not served stale")
	}
	if _, ok := c.getStale(d, now+int64(MaxStale), int64(MaxStale)); ok {
		t.Fatal("served beyond MaxStale")
	}
}

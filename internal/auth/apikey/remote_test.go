package apikey

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/testsvc"
)

// storeTimeout is the StoreTimeout of these tests; failMargin is how much
// longer a failing lookup may take (scheduling under -race).
const (
	storeTimeout = 200 * time.Millisecond
	failMargin   = 300 * time.Millisecond
)

func newRedisClient(t testing.TB, addr string) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// newPool connects to dsn; tracer may be nil.
func newPool(t testing.TB, dsn string, maxConns int32, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		t.Fatal(err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.Tracer = tracer
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestRedisStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr, stopRedis := testsvc.Redis(t)
	rdb := newRedisClient(t, addr)
	clock := newClock()
	reg := prometheus.NewRegistry()
	log, logs := captureLogs(t)
	const known, late, badName, noName, fresh1, fresh2 = "redis-known-1", "redis-late-2", "redis-badname-3", "redis-noname-6", "redis-fresh-4", "redis-fresh-5"
	logs.forbid(known, late, badName, noName, fresh1, fresh2)
	s := newStore(t, Options{Redis: rdb, Now: clock.Now, Registerer: reg, Log: log, StoreTimeout: storeTimeout})
	hset := func(key, name string) func(t *testing.T) {
		return func(t *testing.T) {
			if err := rdb.HSet(ctx, RedisHashKey, hexOf(key), name).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	redisErrors := func() float64 {
		return counter(t, reg, "apikey_store_errors_total", map[string]string{"store": StoreRedis})
	}

	runSteps(t, s, []lookupStep{
		{name: "HSET then lookup", do: hset(known, "svc-a"), key: known, want: Identity{Name: "svc-a"}},
		{name: "absent key is unknown", key: late, wantErr: ErrUnknown},
		{name: "added after a miss: still unknown while cached negatively", do: hset(late, "svc-late"), key: late, wantErr: ErrUnknown},
		{name: "negative entry expires after 10s", do: func(*testing.T) { clock.Advance(DefaultNegativeTTL) }, key: late, want: Identity{Name: "svc-late"}},
		{name: "deleted key works until its positive entry expires", do: func(t *testing.T) {
			if err := rdb.HDel(ctx, RedisHashKey, hexOf(known)).Err(); err != nil {
				t.Fatal(err)
			}
		}, key: known, want: Identity{Name: "svc-a"}},
		{name: "deleted key fails after CacheTTL", do: func(*testing.T) { clock.Advance(DefaultCacheTTL - DefaultNegativeTTL) }, key: known, wantErr: ErrUnknown},
		{name: "a name unfit for a header becomes the digest prefix", do: hset(badName, "evil\r\nX-Admin: 1"), key: badName, want: Identity{Name: nameOf(badName)}},
		{name: "an empty name becomes the digest prefix", do: hset(noName, ""), key: noName, want: Identity{Name: nameOf(noName)}},
		{name: "server stopped: a cached key still works", do: func(*testing.T) { stopRedis() }, key: late, want: Identity{Name: "svc-late"}},
		{name: "server stopped: an uncached key fails closed, quickly", key: fresh1, wantErr: ErrStore, within: storeTimeout + failMargin},
		{name: "server stopped: every uncached lookup fails closed", key: fresh2, wantErr: ErrStore, within: storeTimeout + failMargin},
		{name: "server stopped: a failure is not cached", key: fresh1, wantErr: ErrStore, within: storeTimeout + failMargin},
		{name: "server stopped: past its TTL, a confirmed key is still accepted (stale)", do: func(*testing.T) { clock.Advance(DefaultCacheTTL) }, key: late, want: Identity{Name: "svc-late"}, within: storeTimeout + failMargin},
		{name: "server stopped: beyond MaxStale it fails closed", do: func(*testing.T) { clock.Advance(MaxStale) }, key: late, wantErr: ErrStore},
	})
	if got := redisErrors(); got != 5 {
		t.Errorf("apikey_store_errors_total{store=redis} = %v, want 5", got)
	}
	if got := counter(t, reg, "apikey_stale_answers_total", nil); got != 1 {
		t.Errorf("apikey_stale_answers_total = %v, want 1", got)
	}
	if n := logs.count("API key store unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
	if got := counter(t, reg, "apikey_store_errors_total", map[string]string{"store": StorePostgres}); got != 0 {
		t.Errorf("apikey_store_errors_total{store=postgres} = %v, want 0", got)
	}
}

func TestPostgresStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool := newPool(t, testsvc.Postgres(t), 0, nil)
	for i := range 2 {
		if err := Migrate(ctx, pool); err != nil {
			t.Fatalf("Migrate #%d: %v", i+1, err)
		}
	}
	clock := newClock()
	log, logs := captureLogs(t)
	const alice, carol, dave, eve, unknown = "pg-alice-1", "pg-carol-2", "pg-dave-3", "pg-eve-4", "pg-unknown-5"
	logs.forbid(alice, carol, dave, eve, unknown)
	insert := func(t *testing.T, name, key string, revokedAt *time.Time) {
		t.Helper()
		if _, err := pool.Exec(ctx, `INSERT INTO api_keys (name, key_sha256, revoked_at) VALUES ($1, $2, $3)`,
			name, hexOf(key), revokedAt); err != nil {
			t.Fatal(err)
		}
	}
	past, future := clock.Now().Add(-time.Hour), clock.Now().Add(time.Hour)
	insert(t, "alice", alice, nil)
	insert(t, "carol", carol, &past)
	insert(t, "dave", dave, &future)
	insert(t, "bad\x01name", eve, nil)
	s := newStore(t, Options{DB: pool, Now: clock.Now, Log: log, StoreTimeout: time.Second})

	runSteps(t, s, []lookupStep{
		{name: "active key", key: alice, want: Identity{Name: "alice"}},
		{name: "revoked key", key: carol, wantErr: ErrRevoked},
		{name: "absent key", key: unknown, wantErr: ErrUnknown},
		{name: "revocation scheduled in an hour: works now", key: dave, want: Identity{Name: "dave"}},
		{name: "control character in the name: digest prefix instead", key: eve, want: Identity{Name: nameOf(eve)}},
		{name: "just revoked: cached positive still works", do: func(t *testing.T) {
			if _, err := pool.Exec(ctx, `UPDATE api_keys SET revoked_at = $2 WHERE key_sha256 = $1`, hexOf(alice), clock.Now()); err != nil {
				t.Fatal(err)
			}
		}, key: alice, want: Identity{Name: "alice"}},
		{name: "revoked: fails once CacheTTL passes", do: func(*testing.T) { clock.Advance(DefaultCacheTTL) }, key: alice, wantErr: ErrRevoked},
		{name: "scheduled revocation reached", do: func(*testing.T) { clock.Advance(time.Hour) }, key: dave, wantErr: ErrRevoked},
	})

	t.Run("CHECK refuses a digest that is not lowercase hex", func(t *testing.T) {
		for _, bad := range []string{strings.ToUpper(hexOf("x")), hexOf("x")[:63], "plain-key"} {
			if _, err := pool.Exec(ctx, `INSERT INTO api_keys (name, key_sha256) VALUES ('x', $1)`, bad); err == nil {
				t.Errorf("INSERT of key_sha256 %q succeeded", bad)
			}
		}
	})
}

func TestPostgresOutage(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn, stopPG := testsvc.PostgresServer(t)
	pool := newPool(t, dsn, 0, nil)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	const alice, fresh = "outage-alice", "outage-fresh"
	if _, err := pool.Exec(ctx, `INSERT INTO api_keys (name, key_sha256) VALUES ('alice', $1)`, hexOf(alice)); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log, logs := captureLogs(t)
	logs.forbid(alice, fresh)
	s := newStore(t, Options{DB: pool, Registerer: reg, Log: log, StoreTimeout: storeTimeout})

	runSteps(t, s, []lookupStep{
		{name: "before the outage", key: alice, want: Identity{Name: "alice"}},
		{name: "database down: uncached key fails closed, quickly", do: func(*testing.T) { stopPG() }, key: fresh, wantErr: ErrStore, within: storeTimeout + failMargin},
		{name: "database down: again", key: fresh, wantErr: ErrStore, within: storeTimeout + failMargin},
		{name: "database down: cached key still works", key: alice, want: Identity{Name: "alice"}},
	})
	if got := counter(t, reg, "apikey_store_errors_total", map[string]string{"store": StorePostgres}); got != 2 {
		t.Errorf("apikey_store_errors_total{store=postgres} = %v, want 2", got)
	}
	if n := logs.count("API key store unavailable"); n != 1 {
		t.Errorf("outage logged %d times, want once:\n%s", n, logs)
	}
}

func TestPostgresMissingTableFailsClosed(t *testing.T) {
	t.Parallel()
	pool := newPool(t, testsvc.Postgres(t), 0, nil) // Migrate not applied
	s := newStore(t, Options{DB: pool, StoreTimeout: time.Second})
	if _, err := s.Lookup(context.Background(), "any-key"); !errors.Is(err, ErrStore) {
		t.Fatalf("Lookup without the table = %v, want ErrStore", err)
	}
}

// queryTracer counts api_keys queries in flight and their peak; delay, when
// set, makes each one that much slower (a loaded database), unless its
// context ends first.
type queryTracer struct {
	delay                 time.Duration
	inFlight, peak, total atomic.Int64
}

func (q *queryTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, data pgx.TraceQueryStartData) context.Context {
	if !strings.Contains(data.SQL, "FROM api_keys") {
		return ctx
	}
	q.total.Add(1)
	n := q.inFlight.Add(1)
	for {
		p := q.peak.Load()
		if n <= p || q.peak.CompareAndSwap(p, n) {
			break
		}
	}
	if q.delay > 0 {
		select {
		case <-time.After(q.delay):
		case <-ctx.Done():
		}
	}
	return context.WithValue(ctx, q, true)
}

func (q *queryTracer) TraceQueryEnd(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryEndData) {
	if ctx.Value(q) != nil {
		q.inFlight.Add(-1)
	}
}

// TestPostgresFlood sends 10k distinct random keys: deduplication cannot help,
// so what must hold is that the database never sees more than the limiter's
// queries at once and that no lookup waits longer than StoreTimeout (plus
// scheduling slack), even when the database is slow.
//
// Not parallel: it runs before the package's parallel tests, so their CPU use
// does not blur its timings.
func TestPostgresFlood(t *testing.T) {
	dsn := testsvc.Postgres(t)
	tests := []struct {
		name       string
		keys       int
		queryDelay time.Duration
		wantShed   bool // the limiter must have turned lookups away
	}{
		{name: "fast database", keys: 10_000},
		// Unbounded queueing would make 256 clients wait 256/8 × 50ms = 1.6s.
		{name: "slow database, 50ms a query", keys: 1000, queryDelay: 50 * time.Millisecond, wantShed: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			floodPostgres(t, dsn, tt.keys, tt.queryDelay, tt.wantShed)
		})
	}
}

func floodPostgres(t *testing.T, dsn string, keys int, queryDelay time.Duration, wantShed bool) {
	ctx := context.Background()
	tracer := &queryTracer{delay: queryDelay}
	// The pool allows more connections than the limiter, so the peak the
	// tracer sees is the limiter's doing.
	const limit, poolConns, workers = 8, 32, 256
	const floodMargin = 700 * time.Millisecond // 256 goroutines under -race on 2 cores
	pool := newPool(t, dsn, poolConns, tracer)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	log, logs := captureLogs(t)
	s := newStore(t, Options{DB: pool, MaxConcurrent: limit, StoreTimeout: storeTimeout, Registerer: reg, Log: log})

	work := make(chan string, keys)
	sample := make([]string, 0, 16)
	for i := range keys {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		key := hex.EncodeToString(b)
		if i%(keys/16) == 0 {
			sample = append(sample, key)
		}
		work <- key
	}
	close(work)
	logs.forbid(sample...)

	var unknown, failed, slowest atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for key := range work {
				start := time.Now()
				_, err := s.Lookup(ctx, key)
				took := int64(time.Since(start))
				for p := slowest.Load(); took > p && !slowest.CompareAndSwap(p, took); p = slowest.Load() {
				}
				switch {
				case errors.Is(err, ErrUnknown):
					unknown.Add(1)
				case errors.Is(err, ErrStore):
					failed.Add(1)
				default:
					t.Errorf("Lookup of a random key = %v", err)
				}
			}
		})
	}
	wg.Wait()

	shed := counter(t, reg, "apikey_lookups_shed_total", nil)
	storeErrs := counter(t, reg, "apikey_store_errors_total", map[string]string{"store": StorePostgres})
	t.Logf("%d keys: %d unknown, %d failed closed (%v shed, %v timed out); %d queries, peak %d in flight, %d connections opened; slowest lookup %v",
		keys, unknown.Load(), failed.Load(), shed, storeErrs, tracer.total.Load(), tracer.peak.Load(),
		pool.Stat().NewConnsCount(), time.Duration(slowest.Load()))
	if p := tracer.peak.Load(); p > limit {
		t.Errorf("peak concurrent queries = %d, want ≤ %d (the limiter)", p, limit)
	}
	if q := tracer.total.Load(); q > int64(keys) {
		t.Errorf("%d queries for %d keys", q, keys)
	}
	if d := time.Duration(slowest.Load()); d > storeTimeout+floodMargin {
		t.Errorf("slowest lookup took %v, want ≤ StoreTimeout %v (+%v)", d, storeTimeout, floodMargin)
	}
	if unknown.Load() == 0 {
		t.Error("no lookup got an answer: the database was never reached")
	}
	if wantShed && shed == 0 {
		t.Error("the limiter never turned a lookup away")
	}
	if int64(shed+storeErrs) != failed.Load() {
		t.Errorf("shed %v + store errors %v ≠ %d lookups failed closed", shed, storeErrs, failed.Load())
	}
}

func TestSameKeyConcurrentlyIsOneQuery(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tracer := &queryTracer{}
	pool := newPool(t, testsvc.Postgres(t), 0, tracer)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	const key = "same-key-from-many-clients"
	if _, err := pool.Exec(ctx, `INSERT INTO api_keys (name, key_sha256) VALUES ('shared', $1)`, hexOf(key)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{DB: pool, StoreTimeout: time.Second})
	var wg sync.WaitGroup
	for range 200 {
		wg.Go(func() {
			if id, err := s.Lookup(ctx, key); err != nil || id.Name != "shared" {
				t.Errorf("Lookup = %+v, %v", id, err)
			}
		})
	}
	wg.Wait()
	if n := tracer.total.Load(); n != 1 {
		t.Fatalf("%d queries for 200 concurrent lookups of one key, want 1", n)
	}
}

func TestRedisThenPostgres(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	addr, stopRedis := testsvc.Redis(t)
	rdb := newRedisClient(t, addr)
	pool := newPool(t, testsvc.Postgres(t), 0, nil)
	if err := Migrate(ctx, pool); err != nil {
		t.Fatal(err)
	}
	const inRedis, inPG, revokedPG, nowhere = "both-redis", "both-pg", "both-revoked", "both-nowhere"
	if err := rdb.HSet(ctx, RedisHashKey, hexOf(inRedis), "from-redis").Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(ctx, `INSERT INTO api_keys (name, key_sha256, revoked_at) VALUES ('from-pg', $1, NULL), ('gone', $2, now() - interval '1 hour')`,
		hexOf(inPG), hexOf(revokedPG)); err != nil {
		t.Fatal(err)
	}
	s := newStore(t, Options{Redis: rdb, DB: pool, StoreTimeout: time.Second, Digests: []string{hexOf("local")}})
	runSteps(t, s, []lookupStep{
		{name: "local set first", key: "local", want: Identity{Name: nameOf("local")}},
		{name: "found in Redis", key: inRedis, want: Identity{Name: "from-redis"}},
		{name: "not in Redis, found in PostgreSQL", key: inPG, want: Identity{Name: "from-pg"}},
		{name: "revoked in PostgreSQL", key: revokedPG, wantErr: ErrRevoked},
		{name: "in neither", key: nowhere, wantErr: ErrUnknown},
		// With Redis down, a key PostgreSQL knows still works; one it does not
		// know might be in Redis, so it fails closed.
		{name: "Redis down: PostgreSQL still answers for its keys", do: func(*testing.T) {
			stopRedis()
			if _, err := pool.Exec(ctx, `INSERT INTO api_keys (name, key_sha256) VALUES ('late-pg', $1)`, hexOf("late-pg")); err != nil {
				t.Fatal(err)
			}
		}, key: "late-pg", want: Identity{Name: "late-pg"}},
		{name: "Redis down: a key unknown to PostgreSQL fails closed", key: "maybe-in-redis", wantErr: ErrStore},
	})
}

package apikey

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/testsvc"
)

// holder is a key source other than PostgreSQL: each test key is put in one.
type holder struct {
	name string // as the refusal's log line names it
	// hold lists the keys in the source and returns the Options that read it.
	hold func(t *testing.T, keys []string) Options
	// nameOf is the identity the source gives key.
	nameOf func(key string) string
}

// holders returns the env, file and Redis sources; Redis on addr.
func holders(addr string) []holder {
	return []holder{
		{
			name: "API_KEYS",
			hold: func(t *testing.T, keys []string) Options {
				digests := make([]string, len(keys))
				for i, k := range keys {
					digests[i] = hexOf(k)
				}
				return Options{Digests: digests}
			},
			nameOf: nameOf,
		},
		{
			name: "API_KEYS_FILE",
			hold: func(t *testing.T, keys []string) Options {
				var b strings.Builder
				for _, k := range keys {
					b.WriteString("file-" + k + ":" + hexOf(k) + "\n")
				}
				path := filepath.Join(t.TempDir(), "keys")
				writeFile(t, path, b.String())
				return Options{File: path}
			},
			nameOf: func(key string) string { return "file-" + key },
		},
		{
			name: "redis",
			hold: func(t *testing.T, keys []string) Options {
				rdb := newRedisClient(t, addr)
				for _, k := range keys {
					if err := rdb.HSet(context.Background(), RedisHashKey, hexOf(k), "redis-"+k).Err(); err != nil {
						t.Fatal(err)
					}
				}
				return Options{Redis: rdb}
			},
			nameOf: func(key string) string { return "redis-" + key },
		},
	}
}

// migratedPool connects to dsn (tracer may be nil) and creates the api_keys
// table.
func migratedPool(t *testing.T, dsn string, tracer pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	pool := newPool(t, dsn, 0, tracer)
	if err := Migrate(context.Background(), pool); err != nil {
		t.Fatal(err)
	}
	return pool
}

// insertKey adds key to api_keys, revoked at revokedAt when it is not nil.
func insertKey(t *testing.T, pool *pgxpool.Pool, key string, revokedAt *time.Time) {
	t.Helper()
	if _, err := pool.Exec(context.Background(), `INSERT INTO api_keys (name, key_sha256, revoked_at) VALUES ($1, $2, $3)`,
		"pg-"+key, hexOf(key), revokedAt); err != nil {
		t.Fatal(err)
	}
}

// TestRevokedKeyRefusedWhicheverSourceListsIt: a key that API_KEYS, the key
// file or Redis still lists is refused once PostgreSQL revokes it, from
// revoked_at on; a key PostgreSQL does not revoke keeps its source's name.
// Once checked, the key is answered from the cache, not the database.
func TestRevokedKeyRefusedWhicheverSourceListsIt(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	dsn := testsvc.Postgres(t)
	for _, h := range holders(addr) {
		t.Run(h.name, func(t *testing.T) {
			t.Parallel()
			tracer := &queryTracer{}
			pool := migratedPool(t, dsn, tracer)
			clock := newClock()
			// Distinct per source: the sources share the database and Redis.
			k := func(state string) string { return h.name + "-" + state + "-0123456789" }
			revoked, soon, later, active, absent := k("revoked"), k("soon"), k("later"), k("active"), k("absent")
			past, inTen, inHour := clock.Now().Add(-time.Minute), clock.Now().Add(10*time.Second), clock.Now().Add(time.Hour)
			insertKey(t, pool, revoked, &past)
			insertKey(t, pool, soon, &inTen)
			insertKey(t, pool, later, &inHour)
			insertKey(t, pool, active, nil)

			log, logs := captureLogs(t)
			all := []string{revoked, soon, later, active, absent}
			logs.forbid(all...)
			o := h.hold(t, all)
			o.DB, o.Now, o.StoreTimeout = pool, clock.Now, time.Second
			o.Log = log.With("component", "auth")
			s := newStore(t, o)
			advance := func(d time.Duration) func(*testing.T) {
				return func(*testing.T) { clock.Advance(d) }
			}
			runSteps(t, s, []lookupStep{
				{name: "revoked in the past", key: revoked, wantErr: ErrRevoked},
				{name: "revoked again, from the cache", key: revoked, wantErr: ErrRevoked},
				{name: "revocation in 10s: works now", key: soon, want: Identity{Name: h.nameOf(soon)}},
				{name: "revocation in an hour: works now", key: later, want: Identity{Name: h.nameOf(later)}},
				{name: "in PostgreSQL, not revoked: the source's name", key: active, want: Identity{Name: h.nameOf(active)}},
				{name: "not in PostgreSQL", key: absent, want: Identity{Name: h.nameOf(absent)}},
				{name: "a checked key is answered from the cache", key: active, want: Identity{Name: h.nameOf(active)}, do: func(t *testing.T) {
					queries := tracer.total.Load()
					for range 100 {
						for _, key := range []string{active, absent} {
							if _, err := s.Lookup(context.Background(), key); err != nil {
								t.Fatal(err)
							}
						}
					}
					if n := tracer.total.Load() - queries; n != 0 {
						t.Fatalf("%d database queries for cached keys, want 0", n)
					}
				}},
				{name: "revocation in 10s: refused from then", do: advance(10 * time.Second), key: soon, wantErr: ErrRevoked},
				{name: "revocation in an hour: still works after 10s", key: later, want: Identity{Name: h.nameOf(later)}},
				{name: "revocation in an hour: refused from then", do: advance(time.Hour), key: later, wantErr: ErrRevoked},
				{name: "revoked after it was checked: refused once the cache entry expires", do: func(t *testing.T) {
					if _, err := pool.Exec(context.Background(), `UPDATE api_keys SET revoked_at = $2 WHERE key_sha256 = $1`, hexOf(active), clock.Now()); err != nil {
						t.Fatal(err)
					}
					clock.Advance(DefaultCacheTTL)
				}, key: active, wantErr: ErrRevoked},
			})
			out := logs.String()
			for _, want := range []string{"revoked_in=postgres", "listed_in=" + h.name, "component=auth", "key_prefix=" + hexOf(revoked)[:8]} {
				if !strings.Contains(out, want) {
					t.Errorf("no %q in the logs:\n%s", want, out)
				}
			}
			if strings.Contains(out, "component=apikey") {
				t.Errorf("the store renames its caller's component:\n%s", out)
			}
			// Once per key, not per refused request.
			if n := logs.count("API key refused: revoked"); n != 4 {
				t.Errorf("%d refusal lines for 4 revoked keys, want 4:\n%s", n, out)
			}
		})
	}
}

// TestListedKeysDuringPostgresOutage: with PostgreSQL stopped, a key
// another source holds keeps working however long the outage lasts, unless
// it was seen revoked (or its scheduled revocation has passed): that one
// stays refused. A key no other source holds keeps the outage rules of
// remote keys (stale for MaxStale, then 503).
func TestListedKeysDuringPostgresOutage(t *testing.T) {
	t.Parallel()
	addr, _ := testsvc.Redis(t)
	dsn, stopPG := testsvc.PostgresServer(t)
	pool := migratedPool(t, dsn, nil)
	clock := newClock()
	reg := prometheus.NewRegistry()
	log, logs := captureLogs(t)

	// One key per source and state; every source feeds the one store.
	type keyCase struct {
		holder holder
		key    string
	}
	key := func(h holder, state string) string { return "outage-" + h.name + "-" + state }
	var o Options
	var good, revoked, soon, unseen []keyCase
	past, soonAt := clock.Now().Add(-time.Minute), clock.Now().Add(20*time.Second)
	for _, h := range holders(addr) {
		g, r, s, u := key(h, "good"), key(h, "revoked"), key(h, "soon"), key(h, "unseen")
		insertKey(t, pool, r, &past)
		insertKey(t, pool, s, &soonAt)
		logs.forbid(g, r, s, u)
		ho := h.hold(t, []string{g, r, s, u})
		o.Digests = append(o.Digests, ho.Digests...)
		if ho.File != "" {
			o.File = ho.File
		}
		if ho.Redis != nil {
			o.Redis = ho.Redis
		}
		good = append(good, keyCase{h, g})
		revoked = append(revoked, keyCase{h, r})
		soon = append(soon, keyCase{h, s})
		unseen = append(unseen, keyCase{h, u})
	}
	const remote, remoteUnseen = "outage-pg-only", "outage-pg-unseen"
	insertKey(t, pool, remote, nil)
	logs.forbid(remote, remoteUnseen)
	o.DB, o.Now, o.StoreTimeout, o.Registerer, o.Log = pool, clock.Now, storeTimeout, reg, log
	s := newStore(t, o)

	var steps []lookupStep
	for _, c := range good {
		steps = append(steps, lookupStep{name: c.holder.name + ", never revoked: works", key: c.key, want: Identity{Name: c.holder.nameOf(c.key)}})
	}
	for _, c := range revoked {
		steps = append(steps, lookupStep{name: c.holder.name + ", revoked: refused", key: c.key, wantErr: ErrRevoked})
	}
	for _, c := range soon {
		steps = append(steps, lookupStep{name: c.holder.name + ", revocation in 20s: works", key: c.key, want: Identity{Name: c.holder.nameOf(c.key)}})
	}
	steps = append(steps, lookupStep{name: "PostgreSQL only: works", key: remote, want: Identity{Name: "pg-" + remote}})
	steps = append(steps, lookupStep{
		name: "PostgreSQL stopped, and every cache entry long expired",
		do: func(*testing.T) {
			stopPG()
			clock.Advance(DefaultCacheTTL + MaxStale)
		},
		key: remoteUnseen, wantErr: ErrStore, within: storeTimeout + failMargin,
	})
	for _, c := range good {
		steps = append(steps, lookupStep{name: "outage: " + c.holder.name + ", never revoked: still works", key: c.key, want: Identity{Name: c.holder.nameOf(c.key)}, within: storeTimeout + failMargin})
	}
	for _, c := range unseen {
		steps = append(steps, lookupStep{name: "outage: " + c.holder.name + ", never checked: works", key: c.key, want: Identity{Name: c.holder.nameOf(c.key)}, within: storeTimeout + failMargin})
	}
	for _, c := range revoked {
		steps = append(steps, lookupStep{name: "outage: " + c.holder.name + ", seen revoked: still refused", key: c.key, wantErr: ErrRevoked, within: storeTimeout + failMargin})
	}
	for _, c := range soon {
		steps = append(steps, lookupStep{name: "outage: " + c.holder.name + ", scheduled revocation passed: refused", key: c.key, wantErr: ErrRevoked, within: storeTimeout + failMargin})
	}
	steps = append(steps, lookupStep{name: "outage: PostgreSQL only, beyond MaxStale: fails closed", key: remote, wantErr: ErrStore})
	runSteps(t, s, steps)

	if got, want := counter(t, reg, "apikey_unverified_answers_total", nil), float64(len(good)+len(unseen)); got != want {
		t.Errorf("apikey_unverified_answers_total = %v, want %v", got, want)
	}
	if got := counter(t, reg, "apikey_stale_answers_total", nil); got != 0 {
		t.Errorf("apikey_stale_answers_total = %v, want 0", got)
	}
}

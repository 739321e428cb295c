package apikey

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testsvc"
)

// BenchmarkLookupEnvKey is the per-request cost of a key from API_KEYS: hash
// and map hit.
func BenchmarkLookupEnvKey(b *testing.B) {
	digests := make([]string, 1000)
	for i := range digests {
		// 43 characters, like base64url of 32 random bytes.
		digests[i] = hexOf(fmt.Sprintf("bench-key-%04d-0123456789abcdef0123456789ab", i))
	}
	s := newStore(b, Options{Digests: digests})
	key := "bench-key-0500-0123456789abcdef0123456789ab"
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Lookup(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLookupCachedRemote is the cost of a key found in Redis once and
// then served from the cache.
func BenchmarkLookupCachedRemote(b *testing.B) {
	addr, _ := testsvc.Redis(b)
	rdb := newRedisClient(b, addr)
	ctx := context.Background()
	const key = "bench-remote-key-0123456789abcdef0123456789"
	if err := rdb.HSet(ctx, RedisHashKey, hexOf(key), "bench").Err(); err != nil {
		b.Fatal(err)
	}
	s := newStore(b, Options{Redis: rdb})
	if _, err := s.Lookup(ctx, key); err != nil {
		b.Fatal(err)
	}
	benchLookup(b, s, key)
}

// BenchmarkLookupLocalKeyWithPostgres is the per-request cost of a key from
// API_KEYS when PostgreSQL can revoke it: once checked, a cache hit, with no
// database round trip.
func BenchmarkLookupLocalKeyWithPostgres(b *testing.B) {
	ctx := context.Background()
	tracer := &queryTracer{}
	pool := newPool(b, testsvc.Postgres(b), 0, tracer)
	if err := Migrate(ctx, pool); err != nil {
		b.Fatal(err)
	}
	const key = "bench-local-key-0123456789abcdef0123456789"
	// A clock that stands still (and takes no lock, unlike the tests'): the
	// check stays cached however long the run, which would otherwise make
	// one query per CacheTTL.
	now := time.Now()
	s := newStore(b, Options{Digests: []string{hexOf(key)}, DB: pool, Now: func() time.Time { return now }})
	if _, err := s.Lookup(ctx, key); err != nil {
		b.Fatal(err)
	}
	queries := tracer.total.Load()
	benchLookup(b, s, key)
	if n := tracer.total.Load() - queries; n != 0 {
		b.Errorf("%d database queries on the cached path, want 0", n)
	}
}

// benchLookup measures s.Lookup(key) from one goroutine and from many.
func benchLookup(b *testing.B, s *Store, key string) {
	ctx := context.Background()
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := s.Lookup(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := s.Lookup(ctx, key); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

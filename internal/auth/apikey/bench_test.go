package apikey

import (
	"context"
	"fmt"
	"testing"

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
// then served from the positive cache.
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

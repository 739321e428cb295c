package cluster

import (
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testsvc"
)

// BenchmarkRemoteAllow is the cluster-mode limiter's cost per request: one
// EVALSHA round trip to a loopback redis-server (the local limiter costs
// ~80 ns; this is what CLUSTER_MODE=redis adds).
func BenchmarkRemoteAllow(b *testing.B) {
	addr, _ := testsvc.Redis(b)
	r := newReplica(b, addr, replicaOpts{})
	key := netip.MustParseAddr("203.0.113.1")
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := r.n.Allow(ctx, "", key, time.Microsecond, time.Second); !ok {
				b.Fatal("no answer")
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		var next atomic.Uint32
		b.RunParallel(func(pb *testing.PB) {
			k := netip.AddrFrom4([4]byte{203, 0, 113, byte(next.Add(1))})
			for pb.Next() {
				if _, ok := r.n.Allow(ctx, "", k, time.Microsecond, time.Second); !ok {
					b.Fatal("no answer")
				}
			}
		})
	})
}

// BenchmarkCount is the DDoS guard's added cost per request in cluster mode.
func BenchmarkCount(b *testing.B) {
	addr, _ := testsvc.Redis(b)
	r := newReplica(b, addr, replicaOpts{threshold: 1 << 30})
	var next atomic.Uint32
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		k := netip.AddrFrom4([4]byte{203, 0, 113, byte(next.Add(1))})
		for pb.Next() {
			r.n.Count(k)
		}
	})
}

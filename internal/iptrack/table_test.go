package iptrack

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// v4 returns a distinct IPv4 address for i.
func v4(i uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], 0x0a000000+i)
	return netip.AddrFrom4(b)
}

// v6 returns a distinct IPv6 /64 (host bits zero) for i.
func v6(i uint64) netip.Addr {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], 0x20010db800000000+i)
	return netip.AddrFrom16(b)
}

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// touch inserts or refreshes key with value val.
func touch(tb *Table[int64], a netip.Addr, now time.Time, val int64) (isNew bool) {
	tb.Do(a, now, func(v *int64, n bool) { *v, isNew = val, n })
	return isNew
}

func checkInvariants[V any](t *testing.T, tb *Table[V]) {
	t.Helper()
	total := 0
	for si := range tb.shards {
		s := &tb.shards[si]
		s.mu.Lock()
		n := 0
		prev := int32(none)
		for i := s.head; i != none; i = s.nodes[i].next {
			if s.nodes[i].prev != prev {
				t.Fatalf("shard %d: node %d prev=%d, want %d", si, i, s.nodes[i].prev, prev)
			}
			if j, ok := s.index[s.nodes[i].key]; !ok || j != i {
				t.Fatalf("shard %d: node %d not indexed", si, i)
			}
			prev = i
			n++
		}
		if prev != s.tail || n != s.n || n != len(s.index) || n > s.cap {
			t.Fatalf("shard %d: tail=%d/%d walked=%d n=%d index=%d cap=%d", si, prev, s.tail, n, s.n, len(s.index), s.cap)
		}
		total += n
		s.mu.Unlock()
	}
	if total != tb.Len() {
		t.Fatalf("Len()=%d, shards hold %d", tb.Len(), total)
	}
}

func TestCapacityHoldsUnderSpray(t *testing.T) {
	tests := []struct {
		name       string
		maxEntries int
		shards     int
		spray      int
	}{
		{name: "MAX_TRACKED_IPS default, 300k keys", maxEntries: 262144, spray: 300000},
		{name: "odd cap split unevenly", maxEntries: 10007, shards: 16, spray: 50000},
		{name: "tiny cap gets one shard", maxEntries: 10, shards: 64, spray: 1000},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tb := New[int64](Options{MaxEntries: tc.maxEntries, Shards: tc.shards, IdleTTL: time.Minute})
			now := t0
			for i := range tc.spray {
				a := v4(uint32(i))
				if i%2 == 1 {
					a = v6(uint64(i))
				}
				if !touch(tb, a, now, int64(i)) {
					t.Fatalf("key %d was not new", i)
				}
				if tb.Len() > tc.maxEntries {
					t.Fatalf("Len()=%d over cap %d after %d keys", tb.Len(), tc.maxEntries, i+1)
				}
			}
			if tb.Len() != tc.maxEntries {
				t.Fatalf("Len()=%d after spraying %d keys, want exactly the cap %d", tb.Len(), tc.spray, tc.maxEntries)
			}
			if got, want := tb.Evictions(), uint64(tc.spray-tc.maxEntries); got != want {
				t.Fatalf("Evictions()=%d, want %d", got, want)
			}
			checkInvariants(t, tb)
		})
	}
}

func TestLRURecentlyUsedSurvives(t *testing.T) {
	// One shard makes the LRU order exact and observable.
	tb := New[int64](Options{MaxEntries: 4, Shards: 1})
	now := t0
	for i := range 4 {
		touch(tb, v4(uint32(i)), now, int64(i))
	}
	// Use key 0 again: key 1 is now the least recently seen.
	touch(tb, v4(0), now, 100)
	touch(tb, v4(10), now, 10) // evicts key 1
	if _, ok := tb.Peek(v4(1)); ok {
		t.Fatal("least recently seen key 1 survived an eviction")
	}
	if v, ok := tb.Peek(v4(0)); !ok || v != 100 {
		t.Fatalf("recently used key 0: got %d,%v; want 100,true", v, ok)
	}
	// Peek does not refresh: key 2 is next out even though it was peeked.
	tb.Peek(v4(2))
	touch(tb, v4(11), now, 11)
	if _, ok := tb.Peek(v4(2)); ok {
		t.Fatal("Peek refreshed key 2")
	}
	for _, k := range []uint32{0, 3, 10, 11} {
		if _, ok := tb.Peek(v4(k)); !ok {
			t.Fatalf("key %d evicted out of order", k)
		}
	}
	if tb.Evictions() != 2 || tb.Len() != 4 {
		t.Fatalf("Evictions()=%d Len()=%d, want 2 and 4", tb.Evictions(), tb.Len())
	}
	checkInvariants(t, tb)
}

func TestSweepRemovesIdle(t *testing.T) {
	tb := New[int64](Options{MaxEntries: 100000, IdleTTL: time.Minute})
	for i := range 5000 {
		touch(tb, v4(uint32(i)), t0, 1)
	}
	later := t0.Add(45 * time.Second)
	for i := range 1000 { // seen again: not idle at t0+1m
		touch(tb, v4(uint32(i)), later, 2)
	}
	if n := tb.Sweep(t0.Add(59 * time.Second)); n != 0 {
		t.Fatalf("Sweep before IdleTTL removed %d", n)
	}
	if n := tb.Sweep(t0.Add(time.Minute)); n != 4000 {
		t.Fatalf("Sweep at IdleTTL removed %d, want 4000", n)
	}
	if tb.Len() != 1000 {
		t.Fatalf("Len()=%d after sweep, want 1000", tb.Len())
	}
	if _, ok := tb.Peek(v4(999)); !ok {
		t.Fatal("recently seen key swept")
	}
	checkInvariants(t, tb)
	if n := tb.Sweep(later.Add(time.Minute)); n != 1000 || tb.Len() != 0 {
		t.Fatalf("final sweep removed %d, Len()=%d", n, tb.Len())
	}
	checkInvariants(t, tb)
	// Emptied shards gave their nodes back.
	for si := range tb.shards {
		if c := cap(tb.shards[si].nodes); c > 64 {
			t.Fatalf("shard %d kept %d nodes after emptying", si, c)
		}
	}
	// And the table still works.
	if !touch(tb, v4(1), later, 3) || tb.Len() != 1 {
		t.Fatal("table unusable after compaction")
	}
	checkInvariants(t, tb)
}

func TestInsertTrimsIdleTail(t *testing.T) {
	tb := New[int64](Options{MaxEntries: 100, Shards: 1, IdleTTL: time.Second})
	for i := range 10 {
		touch(tb, v4(uint32(i)), t0, 1)
	}
	touch(tb, v4(100), t0.Add(2*time.Second), 1)
	if got := tb.Len(); got != 10-trimPerInsert+1 {
		t.Fatalf("Len()=%d, want %d: an insert trims up to %d idle entries", got, 10-trimPerInsert+1, trimPerInsert)
	}
	if tb.Evictions() != 0 {
		t.Fatal("idle trimming counted as eviction")
	}
	checkInvariants(t, tb)
}

func TestDeleteAndReuse(t *testing.T) {
	tb := New[int64](Options{MaxEntries: 8, Shards: 1})
	for i := range 8 {
		touch(tb, v4(uint32(i)), t0, int64(i))
	}
	if !tb.Delete(v4(3)) || tb.Delete(v4(3)) {
		t.Fatal("Delete: want true then false")
	}
	if !touch(tb, v4(3), t0, 33) {
		t.Fatal("deleted key not new")
	}
	if tb.Evictions() != 0 || tb.Len() != 8 {
		t.Fatalf("reusing a freed node evicted: Evictions()=%d Len()=%d", tb.Evictions(), tb.Len())
	}
	var isNew bool
	tb.Do(v4(3), t0, func(v *int64, n bool) { isNew = n })
	if isNew {
		t.Fatal("existing key reported new")
	}
	checkInvariants(t, tb)
}

func TestKeys(t *testing.T) {
	tb := New[int64](Options{MaxEntries: 64})
	touch(tb, netip.MustParseAddr("192.0.2.1"), t0, 1)
	if v, ok := tb.Peek(netip.MustParseAddr("::ffff:192.0.2.1")); !ok || v != 1 {
		t.Fatal("IPv4 and IPv4-mapped IPv6 are different keys")
	}
	touch(tb, netip.MustParseAddr("2001:db8::"), t0, 2)
	got := map[netip.Addr]int64{}
	tb.Range(func(k netip.Addr, v *int64) bool { got[k] = *v; return true })
	want := map[netip.Addr]int64{netip.MustParseAddr("192.0.2.1"): 1, netip.MustParseAddr("2001:db8::"): 2}
	if len(got) != len(want) {
		t.Fatalf("Range: %v", got)
	}
	for k, v := range want {
		if got[k] != v {
			t.Fatalf("Range: %v, want %v", got, want)
		}
	}
}

func TestConcurrentDo(t *testing.T) {
	tb := New[int64](Options{MaxEntries: 2048, IdleTTL: time.Second})
	var wg sync.WaitGroup
	const workers, per = 8, 20000
	for w := range workers {
		wg.Go(func() {
			for i := range per {
				now := t0.Add(time.Duration(i) * time.Millisecond)
				// Half the traffic on 16 hot keys shared by all workers.
				a := v4(uint32(i % 16))
				if i%2 == 1 {
					a = v4(uint32(1000 + w*per + i))
				}
				tb.Do(a, now, func(v *int64, _ bool) { *v++ })
				if i%5000 == 0 {
					tb.Sweep(now)
					tb.Peek(a)
				}
			}
		})
	}
	wg.Wait()
	if tb.Len() > 2048 {
		t.Fatalf("Len()=%d over cap", tb.Len())
	}
	checkInvariants(t, tb)
}

func TestThrottle(t *testing.T) {
	th := NewThrottle(time.Minute, 16, 3)
	a, b := v4(1), v4(2)
	steps := []struct {
		name string
		key  netip.Addr
		at   time.Duration
		want bool
	}{
		{name: "first report of a", key: a, at: 0, want: true},
		{name: "a again within the minute", key: a, at: 30 * time.Second, want: false},
		{name: "first report of b", key: b, at: 31 * time.Second, want: true},
		{name: "third key, budget 3", key: v4(3), at: 32 * time.Second, want: true},
		{name: "fourth key over the global budget", key: v4(4), at: 33 * time.Second, want: false},
		{name: "a after a minute, new window", key: a, at: 61 * time.Second, want: true},
	}
	for _, s := range steps {
		if got := th.Allow(s.key, t0.Add(s.at)); got != s.want {
			t.Fatalf("%s: Allow=%v, want %v", s.name, got, s.want)
		}
	}
}

func BenchmarkDoExistingKey(b *testing.B) {
	tb := New[int64](Options{MaxEntries: DefaultMaxEntries, IdleTTL: time.Minute})
	keys := make([]netip.Addr, 1024)
	for i := range keys {
		keys[i] = v4(uint32(i))
		touch(tb, keys[i], t0, 0)
	}
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tb.Do(keys[i&1023], now, func(v *int64, _ bool) { *v++ })
	}
}

func BenchmarkDoFreshKeys(b *testing.B) {
	tb := New[int64](Options{MaxEntries: 65536, IdleTTL: time.Minute})
	now := t0
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		tb.Do(v4(uint32(i)), now, func(v *int64, _ bool) { *v++ })
	}
}

func BenchmarkDoParallel(b *testing.B) {
	tb := New[int64](Options{MaxEntries: DefaultMaxEntries, IdleTTL: time.Minute})
	now := t0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := uint32(0)
		for pb.Next() {
			i++
			tb.Do(v4(i&4095), now, func(v *int64, _ bool) { *v++ })
		}
	})
}

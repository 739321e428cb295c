// Package iptrack keeps bounded per-client state (limiter buckets, DDoS
// counters, blocks) keyed by IP address, so a client spraying millions of
// source addresses cannot grow the gateway's memory.
//
// A Table is split into shards, each a least-recently-seen list over a slice
// of nodes plus a map from key to node index. The total number of entries
// never exceeds Options.MaxEntries: a shard that is full evicts its least
// recently seen entry to make room. Entries not seen for Options.IdleTTL are
// removed by Sweep, which the owner runs from a background loop; Do also
// trims a few idle entries whenever it inserts, so memory is returned even
// when nobody sweeps.
package iptrack

import (
	"hash/maphash"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of Options.
const (
	DefaultMaxEntries = 262144 // MAX_TRACKED_IPS
	DefaultShards     = 64
	// minPerShard keeps shards large enough for LRU order to mean something;
	// small tables get fewer shards.
	minPerShard = 64
	// trimPerInsert bounds the idle entries Do removes when it inserts.
	trimPerInsert = 4
)

// Options configures a Table.
type Options struct {
	// MaxEntries caps the number of entries (default DefaultMaxEntries).
	// The cap holds exactly: it is split across the shards.
	MaxEntries int
	// Shards is rounded up to a power of two (default DefaultShards) and
	// lowered so that every shard holds at least 64 entries.
	Shards int
	// IdleTTL is how long an entry may go unseen before Sweep removes it;
	// 0 keeps entries until they are evicted or deleted.
	IdleTTL time.Duration
}

// key is the table's internal form of an address: 16 bytes, no pointer, so
// the index maps are never scanned by the garbage collector. IPv4 and
// IPv4-mapped IPv6 addresses are the same key; zones are ignored.
type key [16]byte

func keyOf(a netip.Addr) key { return key(a.Unmap().As16()) }

func (k key) addr() netip.Addr { return netip.AddrFrom16(k).Unmap() }

const none = -1

type node[V any] struct {
	key        key
	seen       int64 // nanoseconds since the table's epoch
	prev, next int32 // LRU list; head is the most recently seen
	val        V
}

// shard is one lock's worth of the table. A mutex (not a lock-free
// structure) because every access both reads and reorders the LRU list, the
// critical section is a map lookup and a few index writes, and there are
// enough shards that two requests rarely meet on one.
type shard[V any] struct {
	mu         sync.Mutex
	index      map[key]int32
	nodes      []node[V]
	head, tail int32
	free       int32 // free list through node.next
	n          int   // live entries
	cap        int
	_          [64]byte // keep neighbouring shards' locks off one cache line
}

// Table is a bounded, sharded map from client key to a V. It is safe for
// concurrent use. Build it with New.
type Table[V any] struct {
	shards    []shard[V]
	shift     uint // 64 - log2(len(shards))
	seed      maphash.Seed
	epoch     time.Time
	idleTTL   int64
	max       int
	len       atomic.Int64
	evictions atomic.Uint64
}

// New returns an empty table. Memory grows with use, up to about
// MaxEntries × (64 + size of V) bytes (a list node and an index slot).
func New[V any](o Options) *Table[V] {
	if o.MaxEntries <= 0 {
		o.MaxEntries = DefaultMaxEntries
	}
	if o.Shards <= 0 {
		o.Shards = DefaultShards
	}
	n := 1 << bits.Len(uint(o.Shards-1)) // round up to a power of two
	for n > 1 && o.MaxEntries/n < minPerShard {
		n >>= 1
	}
	t := &Table[V]{
		shards:  make([]shard[V], n),
		shift:   uint(64 - bits.TrailingZeros(uint(n))),
		seed:    maphash.MakeSeed(),
		epoch:   time.Now(),
		idleTTL: int64(o.IdleTTL),
		max:     o.MaxEntries,
	}
	base, rem := o.MaxEntries/n, o.MaxEntries%n
	for i := range t.shards {
		s := &t.shards[i]
		s.cap = base
		if i < rem {
			s.cap++
		}
		s.index = make(map[key]int32)
		s.head, s.tail, s.free = none, none, none
	}
	return t
}

// shardOf picks the shard with a seeded hash, so a client cannot aim all
// its addresses at one shard to churn the entries of others there.
func (t *Table[V]) shardOf(k key) *shard[V] {
	if len(t.shards) == 1 {
		return &t.shards[0]
	}
	h := maphash.Bytes(t.seed, k[:])
	return &t.shards[h>>t.shift]
}

// stamp turns now into nanoseconds since the table's epoch; with clocks that
// carry a monotonic reading (time.Now) wall-clock jumps do not matter.
func (t *Table[V]) stamp(now time.Time) int64 { return int64(now.Sub(t.epoch)) }

// Do runs fn with the entry for key under the shard's lock, creating a zero
// V first when there is none (isNew true; at capacity the shard's least
// recently seen entry is evicted for it). The entry is marked seen at now.
// fn must be short and must not keep v after it returns, nor call into the
// same table. Do does not allocate for an existing key.
func (t *Table[V]) Do(a netip.Addr, now time.Time, fn func(v *V, isNew bool)) {
	k := keyOf(a)
	s := t.shardOf(k)
	ts := t.stamp(now)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[k]; ok {
		nd := &s.nodes[i]
		nd.seen = ts
		s.moveToFront(i)
		fn(&nd.val, false)
		return
	}
	if t.idleTTL > 0 {
		t.len.Add(-int64(s.trimIdle(ts-t.idleTTL, trimPerInsert)))
	}
	i := t.insert(s, k, ts)
	fn(&s.nodes[i].val, true)
}

// Peek returns a copy of the entry for key without marking it seen.
func (t *Table[V]) Peek(a netip.Addr) (v V, ok bool) {
	k := keyOf(a)
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[k]
	if !ok {
		return v, false
	}
	return s.nodes[i].val, true
}

// Delete removes the entry for key and reports whether there was one.
func (t *Table[V]) Delete(a netip.Addr) bool {
	k := keyOf(a)
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	i, ok := s.index[k]
	if !ok {
		return false
	}
	s.remove(i)
	t.len.Add(-1)
	return true
}

// Range calls fn for every entry, shard by shard, under that shard's lock,
// until fn returns false. fn must not call into the table.
func (t *Table[V]) Range(fn func(key netip.Addr, v *V) bool) {
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		for i := s.head; i != none; i = s.nodes[i].next {
			if !fn(s.nodes[i].key.addr(), &s.nodes[i].val) {
				s.mu.Unlock()
				return
			}
		}
		s.mu.Unlock()
	}
}

// Len is the number of entries; it never exceeds MaxEntries.
func (t *Table[V]) Len() int { return int(t.len.Load()) }

// Cap is MaxEntries.
func (t *Table[V]) Cap() int { return t.max }

// Evictions counts entries dropped at capacity to make room for new ones
// (idle removals are not evictions).
func (t *Table[V]) Evictions() uint64 { return t.evictions.Load() }

// Sweep removes the entries not seen for IdleTTL and returns how many it
// removed. It also gives back the memory of shards that emptied out after a
// spray. It holds one shard's lock at a time.
func (t *Table[V]) Sweep(now time.Time) (removed int) {
	ts := t.stamp(now)
	for si := range t.shards {
		s := &t.shards[si]
		s.mu.Lock()
		if t.idleTTL > 0 {
			removed += s.trimIdle(ts-t.idleTTL, -1)
		}
		s.compact()
		s.mu.Unlock()
	}
	t.len.Add(-int64(removed))
	return removed
}

// insert adds k as the most recent entry of s, evicting the least recent
// one when s is full, and returns its node index. The value is zero.
func (t *Table[V]) insert(s *shard[V], k key, ts int64) int32 {
	var i int32
	switch {
	case s.free != none:
		i = s.free
		s.free = s.nodes[i].next
		t.len.Add(1)
	case s.n >= s.cap:
		// Full: reuse the least recently seen node. The count is unchanged.
		i = s.tail
		s.unlink(i)
		delete(s.index, s.nodes[i].key)
		s.n--
		t.evictions.Add(1)
	default:
		if len(s.nodes) == cap(s.nodes) {
			// Grow by doubling, never past the shard's cap.
			grown := make([]node[V], len(s.nodes), min(max(2*cap(s.nodes), 16), s.cap))
			copy(grown, s.nodes)
			s.nodes = grown
		}
		s.nodes = s.nodes[:len(s.nodes)+1]
		i = int32(len(s.nodes) - 1)
		t.len.Add(1)
	}
	s.nodes[i] = node[V]{key: k, seen: ts, prev: none, next: none}
	s.pushFront(i)
	s.index[k] = i
	s.n++
	return i
}

// trimIdle removes entries last seen before cutoff from the tail, at most
// limit of them (all when limit < 0), and returns how many it removed.
func (s *shard[V]) trimIdle(cutoff int64, limit int) int {
	removed := 0
	for s.tail != none && removed != limit && s.nodes[s.tail].seen <= cutoff {
		s.remove(s.tail)
		removed++
	}
	return removed
}

// remove unlinks node i, drops it from the index and frees it.
func (s *shard[V]) remove(i int32) {
	s.unlink(i)
	delete(s.index, s.nodes[i].key)
	var zero V
	s.nodes[i].val = zero // let go of anything V points to
	s.nodes[i].next = s.free
	s.free = i
	s.n--
}

// compact rebuilds a shard holding less than a quarter of the nodes it
// allocated (Go maps never shrink), keeping the LRU order.
func (s *shard[V]) compact() {
	if cap(s.nodes) <= 64 || s.n*4 >= cap(s.nodes) {
		return
	}
	nodes := make([]node[V], 0, max(2*s.n, 16))
	index := make(map[key]int32, s.n)
	for i := s.head; i != none; i = s.nodes[i].next {
		nd := s.nodes[i]
		j := int32(len(nodes))
		nd.prev, nd.next = j-1, j+1
		nodes = append(nodes, nd)
		index[nd.key] = j
	}
	s.head, s.tail, s.free = none, none, none
	if len(nodes) > 0 {
		nodes[len(nodes)-1].next = none
		s.head, s.tail = 0, int32(len(nodes)-1)
	}
	s.nodes, s.index = nodes, index
}

func (s *shard[V]) pushFront(i int32) {
	nd := &s.nodes[i]
	nd.prev, nd.next = none, s.head
	if s.head != none {
		s.nodes[s.head].prev = i
	}
	s.head = i
	if s.tail == none {
		s.tail = i
	}
}

func (s *shard[V]) unlink(i int32) {
	nd := &s.nodes[i]
	if nd.prev != none {
		s.nodes[nd.prev].next = nd.next
	} else {
		s.head = nd.next
	}
	if nd.next != none {
		s.nodes[nd.next].prev = nd.prev
	} else {
		s.tail = nd.prev
	}
	nd.prev, nd.next = none, none
}

func (s *shard[V]) moveToFront(i int32) {
	if s.head == i {
		return
	}
	s.unlink(i)
	s.pushFront(i)
}

package apikey

import "sync"

// cacheShards spreads the cache over independently locked maps; digests are
// uniform, so d[0] picks a shard evenly.
const cacheShards = 64

// cacheEntry is a cached remote answer: a name, ErrRevoked, ErrUnknown, or
// unlisted, valid until exp (Unix nanoseconds).
type cacheEntry struct {
	name string
	err  error
	exp  int64
	// final: exp is a scheduled revocation; the entry is never served stale.
	final bool
	// unlisted: the revoking stores do not hold this local key, so it is not
	// revoked. It says nothing of Redis: it answers only revokedQ.
	unlisted bool
}

// cache is a bounded map of digest → answer with random eviction. Keys a
// store holds and unknown keys live in separate caches, so a flood of random
// keys can only evict other unknown keys, never a valid key's entry or a
// revocation.
type cache struct {
	perShard int
	shards   [cacheShards]cacheShard
}

// cacheShard is one lock and map. The RWMutex is on the request path for
// remote keys only; its critical sections are a single map access.
type cacheShard struct {
	mu sync.RWMutex
	m  map[digest]cacheEntry
}

// newCache holds about size entries (at least one per shard).
func newCache(size int) *cache {
	c := &cache{perShard: max(1, size/cacheShards)}
	for i := range c.shards {
		c.shards[i].m = make(map[digest]cacheEntry)
	}
	return c
}

func (c *cache) shard(d digest) *cacheShard { return &c.shards[d[0]%cacheShards] }

// get returns the entry for d if it has not expired at now.
func (c *cache) get(d digest, now int64) (cacheEntry, bool) {
	sh := c.shard(d)
	sh.mu.RLock()
	e, ok := sh.m[d]
	sh.mu.RUnlock()
	if !ok || now >= e.exp {
		return cacheEntry{}, false
	}
	return e, true
}

// getStale returns an entry naming d that expired less than maxStale ago
// (or has not expired), unless its expiry is a revocation.
func (c *cache) getStale(d digest, now, maxStale int64) (cacheEntry, bool) {
	e, ok := c.peek(d)
	if !ok || e.name == "" || e.err != nil || e.final || now >= e.exp+maxStale {
		return cacheEntry{}, false
	}
	return e, true
}

// peek returns the entry for d, expired or not.
func (c *cache) peek(d digest) (cacheEntry, bool) {
	sh := c.shard(d)
	sh.mu.RLock()
	e, ok := sh.m[d]
	sh.mu.RUnlock()
	return e, ok
}

// put stores e for d, evicting an entry of the shard first when it is full.
func (c *cache) put(d digest, e cacheEntry, now int64) {
	sh := c.shard(d)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if _, ok := sh.m[d]; !ok && len(sh.m) >= c.perShard {
		sh.evict(now)
	}
	sh.m[d] = e
}

// evictSample is how many entries evict looks at for an expired one.
const evictSample = 8

// evict removes one entry: an expired one among the first few the map
// yields, else the first. Go starts every map iteration at a random place,
// so this is random eviction without keeping any order.
func (sh *cacheShard) evict(now int64) {
	var victim digest
	n := 0
	for k, e := range sh.m {
		if now >= e.exp {
			victim = k
			break
		}
		if n == 0 {
			victim = k
		}
		if n++; n == evictSample {
			break
		}
	}
	delete(sh.m, victim)
}

// len returns the number of entries, expired ones included.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		sh := &c.shards[i]
		sh.mu.RLock()
		n += len(sh.m)
		sh.mu.RUnlock()
	}
	return n
}

package apikey

import (
	"github.com/maypok86/otter/v2"
)

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

// cache is a bounded map of digest → answer (otter: W-TinyLFU admission and
// eviction, lock-free reads). Keys a store holds and unknown keys live in
// separate caches, so a flood of random keys can only evict other unknown
// keys, never a valid key's entry or a revocation. Entries are not expired
// by the cache itself: an answer past its exp is still wanted for a
// while (getStale serves a confirmed key through a store outage, peek
// keeps an old revocation in force), and exp is judged on the Store's
// clock, which tests move.
type cache struct {
	c *otter.Cache[digest, cacheEntry]
}

// newCache holds about size entries.
func newCache(size int) *cache {
	c, err := otter.New(&otter.Options[digest, cacheEntry]{MaximumSize: max(1, size)})
	if err != nil {
		// Only invalid options fail, and these are fixed.
		panic("apikey: building the answer cache: " + err.Error())
	}
	return &cache{c: c}
}

// get returns the entry for d if it has not expired at now.
func (c *cache) get(d digest, now int64) (cacheEntry, bool) {
	e, ok := c.c.GetIfPresent(d)
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
func (c *cache) peek(d digest) (cacheEntry, bool) { return c.c.GetIfPresent(d) }

// put stores e for d; the cache evicts what its policy says when full.
func (c *cache) put(d digest, e cacheEntry) { c.c.Set(d, e) }

// len returns the number of entries, expired ones included, once pending
// evictions are done.
func (c *cache) len() int {
	c.c.CleanUp()
	return c.c.EstimatedSize()
}

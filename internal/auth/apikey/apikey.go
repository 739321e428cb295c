// Package apikey looks up X-API-Key values, held only as SHA-256 digests, in
// local sets (API_KEYS, API_KEY_HASHES, API_KEYS_FILE) and remote stores
// (Redis, PostgreSQL) behind a bounded cache.
//
// Every source can list a key, but only PostgreSQL can revoke one, and its
// revocation wins over every source that still lists the key: an old copy
// in an env var, the file or Redis does not keep a revoked key alive. Redis
// has no notion of revocation: deleting a key there only drops Redis as one
// of its sources.
package apikey

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Lookup outcomes. Callers branch with errors.Is: ErrStore may wrap the
// store's own error (which never holds key material).
var (
	// ErrUnknown: no source knows the key (also for empty or oversized keys).
	ErrUnknown = errors.New("unknown API key")
	// ErrRevoked: PostgreSQL holds the key with revoked_at at or before now,
	// whichever other sources list it.
	ErrRevoked = errors.New("revoked API key")
	// ErrStore: a remote store needed to decide failed or was too slow. The
	// caller must refuse the request (503 for key auth: fail closed).
	ErrStore = errors.New("API key store unavailable")
)

// Defaults and limits.
const (
	// RedisHashKey is the Redis hash of lowercase hex digest → name that
	// API_KEYS_REDIS=true reads: HSET portcullis:apikeys <sha256 hex> <name>.
	RedisHashKey = "portcullis:apikeys"
	// MaxKeyBytes: longer X-API-Key values are unknown without being hashed,
	// so a huge header cannot make every request hash megabytes.
	MaxKeyBytes = 256
	// DefaultCacheTTL is how long a key found in a remote store, or a local
	// key PostgreSQL does not revoke, is trusted (and so the longest a revoked
	// or deleted key keeps working).
	DefaultCacheTTL = 30 * time.Second
	// DefaultNegativeTTL is how long "unknown"/"revoked" answers are cached; a
	// shorter CacheTTL shortens it too.
	DefaultNegativeTTL = 10 * time.Second
	// MaxStale is how long past its CacheTTL a key the stores confirmed is
	// still accepted while they cannot answer (an outage, or every lookup
	// slot taken by a flood of random keys): known callers keep working, as
	// nginx's proxy_cache_use_stale keeps serving. A scheduled revocation
	// (revoked_at) is never exceeded, and when the stores answer, their
	// answer (a revocation included) applies at once. A key that a local set
	// or Redis lists needs no such grace: while PostgreSQL cannot answer, it
	// is accepted for as long as the outage lasts, unless it was seen revoked.
	MaxStale = 5 * time.Minute
	// DefaultStoreTimeout bounds each remote store's answer.
	DefaultStoreTimeout = 200 * time.Millisecond
	// DefaultCacheEntries bounds the cache of keys a store holds and the
	// cache of unknown keys, each.
	DefaultCacheEntries = 100_000
	// DefaultMaxConcurrent bounds remote lookups in flight at once.
	DefaultMaxConcurrent = 64
	// slotWaitShare: a lookup waits at most StoreTimeout/4 for a concurrency slot.
	slotWaitShare = 4
	// DefaultFilePollInterval is the mtime check that backs up fsnotify.
	DefaultFilePollInterval = time.Second
)

// Store label values of apikey_store_errors_total.
const (
	StoreRedis    = "redis"
	StorePostgres = "postgres"
)

// Identity is who a key belongs to; Name is forwarded upstream as X-User-ID.
type Identity struct {
	// Name is the key's name, or "key:" + the first 12 hex characters of its
	// digest for a key without one (API_KEYS, API_KEY_HASHES, a bare hash line).
	Name string
}

// Options configures New. Every field is optional; a Store with no source is
// not Enabled and answers ErrUnknown.
type Options struct {
	// Digests are lowercase hex SHA-256 digests: API_KEYS (hashed by config)
	// and API_KEY_HASHES.
	Digests []string
	// File is API_KEYS_FILE: one `hash` or `name:hash` per line, # comments and
	// blank lines allowed. A bad file is an error from New; a bad rewrite is
	// logged and the previous keys stay. Reloaded on change (fsnotify on the
	// directory, plus an mtime check every FilePollInterval).
	File string
	// Redis, when non-nil (API_KEYS_REDIS=true), is asked HGET RedisHashKey <digest>.
	Redis redis.UniversalClient
	// DB, when non-nil (API_KEYS_DATABASE_URL), is asked for the api_keys row
	// (see Migration) of every key, those that Digests, File or Redis list
	// included: its revoked_at overrides them. Its statement cache prepares
	// the lookup once per conn.
	DB *pgxpool.Pool
	// CacheTTL is how long a remote answer is cached: found keys, and "not
	// revoked" for a local key, for CacheTTL (default 30s; a revoked or
	// deleted key stops working within it), unknown and revoked ones for
	// min(CacheTTL, 10s).
	CacheTTL time.Duration
	// StoreTimeout bounds each remote store's answer (the wait for a
	// concurrency slot, at most a quarter of it, included in the first's);
	// default 200ms. Beyond it the lookup is ErrStore. A lookup that reaches
	// both stores can take twice it.
	StoreTimeout time.Duration
	// CacheEntries bounds each of the known-key and unknown-key caches (random
	// eviction); default 100000.
	CacheEntries int
	// MaxConcurrent bounds remote lookups in flight; default 64. Give the
	// pgxpool at least this many connections.
	MaxConcurrent int
	// FilePollInterval is the fallback mtime check of File; default 1s.
	FilePollInterval time.Duration
	// Log receives store outages, file reloads and revoked keys that another
	// source still lists (never key material, at most an 8-character digest
	// prefix); the caller names the component (the gateway's is auth). Nil
	// discards.
	Log *slog.Logger
	// Registerer receives the apikey_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock for cache expiry and revoked_at; default time.Now.
	Now func() time.Time

	// noWatch turns fsnotify off (tests of the polling fallback).
	noWatch bool
}

// digest is a SHA-256 digest, the map key of every set and cache.
type digest = [sha256.Size]byte

// remoteStore is one remote source with its outage state.
type remoteStore struct {
	name   string // StoreRedis or StorePostgres
	lookup func(ctx context.Context, hexDigest string) (record, error)
	// revokes: its records carry revoked_at, which overrides every other
	// source (PostgreSQL).
	revokes bool
	down    atomic.Bool // set on the first failure of an outage, cleared by a success
	errors  prometheus.Counter
}

// record is what a remote store knows about a digest.
type record struct {
	found     bool
	name      string
	revokedAt time.Time // zero: not revoked
}

// question is what a remote resolution asks about a digest.
type question uint8

const (
	// whoIs: which identity the remote stores give the key, if any (a key
	// no local set holds). Every store is asked.
	whoIs question = iota
	// revokedQ: whether a revoking store revokes a key a local set holds.
	// Only the revoking stores are asked.
	revokedQ
)

// flightKey names a resolution in flight.
type flightKey struct {
	d digest
	q question
}

// flight is one remote resolution that concurrent lookups of the same
// digest wait for instead of asking the stores again.
type flight struct {
	done chan struct{}
	id   Identity
	err  error
}

// Store answers Lookup. It is safe for concurrent use.
type Store struct {
	log     *slog.Logger
	now     func() time.Time
	enabled bool

	env   map[digest]string                 // Digests, immutable
	local atomic.Pointer[map[digest]string] // env merged with the file; swapped whole on reload

	file       string
	filePoll   time.Duration
	fileState  fileState // owned by the watch goroutine after New
	fileReload *prometheus.CounterVec

	redis     redis.UniversalClient
	db        *pgxpool.Pool
	remotes   []*remoteStore // in lookup order: Redis, then PostgreSQL
	revocable bool           // a remote store revokes: local keys are checked against it

	posTTL, negTTL, timeout time.Duration
	// known caches answers about keys a store holds (a name, a revocation,
	// or for a local key "not revoked"); unknown caches ErrUnknown. Only
	// unknown can be filled by a flood of random keys, so it can never
	// evict a valid key's entry or a revocation.
	known, unknown *cache
	sem            chan struct{}
	shed           prometheus.Counter
	stale          prometheus.Counter
	unverified     prometheus.Counter
	storeErrors    *prometheus.CounterVec

	// flightMu guards flights; it is taken only on a cache miss that goes
	// remote, never on the cache-hit path.
	flightMu sync.Mutex
	flights  map[flightKey]*flight
}

// New builds a Store: it parses Digests and reads File (an error names the
// bad entry or line, never its content). ctx bounds the file-watch goroutine:
// cancel it when the Store is dropped (a config reload builds a new one).
func New(ctx context.Context, o Options) (*Store, error) {
	s := &Store{
		log:      o.Log,
		now:      o.Now,
		file:     o.File,
		filePoll: o.FilePollInterval,
		redis:    o.Redis,
		db:       o.DB,
		posTTL:   o.CacheTTL,
		timeout:  o.StoreTimeout,
		env:      make(map[digest]string, len(o.Digests)),
		flights:  make(map[flightKey]*flight),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.posTTL <= 0 {
		s.posTTL = DefaultCacheTTL
	}
	s.negTTL = min(s.posTTL, DefaultNegativeTTL)
	if s.timeout <= 0 {
		s.timeout = DefaultStoreTimeout
	}
	if s.filePoll <= 0 {
		s.filePoll = DefaultFilePollInterval
	}
	entries := o.CacheEntries
	if entries <= 0 {
		entries = DefaultCacheEntries
	}
	s.known, s.unknown = newCache(entries), newCache(entries)
	concurrent := o.MaxConcurrent
	if concurrent <= 0 {
		concurrent = DefaultMaxConcurrent
	}
	s.sem = make(chan struct{}, concurrent)

	var errs []error
	for i, h := range o.Digests {
		d, ok := parseDigest(h)
		if !ok {
			errs = append(errs, fmt.Errorf("API key digest #%d: expected 64 hex characters (a SHA-256 digest)", i+1))
			continue
		}
		s.env[d] = defaultName(d)
	}
	if err := s.registerMetrics(o.Registerer); err != nil {
		errs = append(errs, err)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}

	if s.redis != nil {
		s.remotes = append(s.remotes, s.newRemote(StoreRedis, s.lookupRedis, false))
	}
	if s.db != nil {
		s.remotes = append(s.remotes, s.newRemote(StorePostgres, s.lookupPostgres, true))
		s.revocable = true
	}
	s.enabled = len(s.env) > 0 || s.file != "" || len(s.remotes) > 0

	if s.file == "" {
		s.local.Store(&s.env)
		return s, nil
	}
	// Watch before the first read, so a change right after New is not missed.
	var w *fsnotify.Watcher
	if !o.noWatch {
		w = s.newWatcher()
	}
	if err := s.loadFileAtBoot(); err != nil {
		if w != nil {
			_ = w.Close()
		}
		return nil, err
	}
	go s.watchFile(ctx, w)
	return s, nil
}

// Enabled reports whether any key source is configured.
func (s *Store) Enabled() bool { return s.enabled }

// Lookup returns the identity behind key: local sets first (checked against
// PostgreSQL's revocations, see lookupLocal), then the cache, then Redis,
// then PostgreSQL. It returns ErrUnknown, ErrRevoked, or ErrStore (wrapped)
// when a remote store that might know the key failed or took longer than
// StoreTimeout: the caller must fail closed.
func (s *Store) Lookup(ctx context.Context, key string) (Identity, error) {
	if key == "" || len(key) > MaxKeyBytes {
		return Identity{}, ErrUnknown
	}
	// Copy into a stack buffer: []byte(key) would allocate for keys over 32
	// bytes, and MaxKeyBytes bounds the copy.
	var buf [MaxKeyBytes]byte
	d := sha256.Sum256(buf[:copy(buf[:], key)])

	// A map lookup by digest needs no constant-time comparison: the attacker
	// picks the key, not its SHA-256, so whatever the map's hashing and final
	// 32-byte compare leak about how close a digest came says nothing about
	// any real key (a preimage would be needed). Plain keys are never
	// compared anywhere.
	if name, ok := (*s.local.Load())[d]; ok {
		return s.lookupLocal(ctx, d, name)
	}
	if len(s.remotes) == 0 {
		return Identity{}, ErrUnknown
	}
	if e, ok := s.cached(d, whoIs); ok {
		return Identity{Name: e.name}, e.err
	}
	id, err := s.lookupRemote(ctx, d, whoIs)
	if errors.Is(err, ErrStore) {
		if e, ok := s.known.getStale(d, s.now().UnixNano(), int64(MaxStale)); ok {
			s.stale.Inc()
			return Identity{Name: e.name}, nil
		}
	}
	return id, err
}

// lookupLocal answers a key a local set holds: accepted under its local name
// unless a revoking store (PostgreSQL) revokes it. The store's answer is
// cached like any remote answer, so a known key costs a cache hit, and one
// query per CacheTTL. When the store cannot answer, the key is accepted
// unless it was seen revoked: the gateway degrades instead of locking out
// every local key while PostgreSQL is down.
func (s *Store) lookupLocal(ctx context.Context, d digest, name string) (Identity, error) {
	if !s.revocable {
		return Identity{Name: name}, nil
	}
	e, ok := s.cached(d, revokedQ)
	if !ok {
		_, e.err = s.lookupRemote(ctx, d, revokedQ)
	}
	switch {
	case errors.Is(e.err, ErrStore):
		return s.acceptUnverified(d, name)
	case e.err != nil:
		return Identity{}, e.err
	}
	return Identity{Name: name}, nil
}

// cached returns the unexpired cached answer to q for d: a name, "not
// revoked" (revokedQ only), or an err.
func (s *Store) cached(d digest, q question) (cacheEntry, bool) {
	now := s.now().UnixNano()
	if e, ok := s.known.get(d, now); ok && (q == revokedQ || !e.unlisted) {
		return e, true
	}
	if q == revokedQ {
		return cacheEntry{}, false
	}
	return s.unknown.get(d, now)
}

// acceptUnverified answers a key another source lists when the revoking
// store could not say whether it revoked it: refused if it was seen revoked
// (a cached revocation, however old, or a scheduled one now past), accepted
// under name otherwise. Nothing is cached: the store is asked again next
// time, and its answer applies as soon as it gives one.
func (s *Store) acceptUnverified(d digest, name string) (Identity, error) {
	if e, ok := s.known.peek(d); ok && (errors.Is(e.err, ErrRevoked) || e.final && s.now().UnixNano() >= e.exp) {
		return Identity{}, ErrRevoked
	}
	s.unverified.Inc()
	return Identity{Name: name}, nil
}

// lookupRemote answers q about d once for all concurrent callers.
//
// Flood protection: random keys are all distinct, so deduplication does not
// help against them; what protects the stores is the semaphore (at most
// MaxConcurrent lookups in flight, the rest wait up to StoreTimeout/4 and then
// fail closed) and the unknown-key cache (a repeated bad key costs one query
// per 10s). The per-digest dedupe covers the other case: many requests with
// the same valid key after its cache entry expired make one query, not
// hundreds.
func (s *Store) lookupRemote(ctx context.Context, d digest, q question) (Identity, error) {
	key := flightKey{d, q}
	s.flightMu.Lock()
	if f, ok := s.flights[key]; ok {
		s.flightMu.Unlock()
		select {
		case <-f.done:
			return f.id, f.err
		case <-ctx.Done():
			return Identity{}, fmt.Errorf("%w: %w", ErrStore, ctx.Err())
		}
	}
	f := &flight{done: make(chan struct{})}
	s.flights[key] = f
	s.flightMu.Unlock()
	defer func() {
		s.flightMu.Lock()
		delete(s.flights, key)
		s.flightMu.Unlock()
		close(f.done)
	}()
	// A flight that finished between our cache miss and our registration
	// has already cached its answer (fetch caches before the flight is
	// removed): look again rather than ask the stores twice.
	if e, ok := s.cached(d, q); ok {
		f.id, f.err = Identity{Name: e.name}, e.err
		return f.id, f.err
	}
	// The leader's own cancellation must not fail the callers waiting on it;
	// StoreTimeout still bounds the work.
	f.id, f.err = s.fetch(context.WithoutCancel(ctx), d, q)
	return f.id, f.err
}

// fetch asks the remote stores q needs, in order, and caches a definite
// answer (not an outage). A revocation wins over everything: a key that
// PostgreSQL revokes is refused whichever source lists it. Otherwise the
// first store that holds the key names it, and a revoked_at in the future
// bounds how long that answer is trusted. A key Redis holds while PostgreSQL
// cannot answer is accepted unless it was seen revoked (acceptUnverified).
//
// Each store has StoreTimeout, the first one's including the wait for a
// concurrency slot, so an outage of Redis (which go-redis spends retrying)
// cannot starve PostgreSQL's turn. The wait is capped at a quarter of
// StoreTimeout: a query always keeps most of its budget, because a query cut
// off by its deadline costs its connection (pgx closes it), and reconnecting
// while overloaded is how a flood would snowball into the database.
func (s *Store) fetch(ctx context.Context, d digest, q question) (Identity, error) {
	start := time.Now()
	wait := time.NewTimer(s.timeout / slotWaitShare)
	select {
	case s.sem <- struct{}{}:
		wait.Stop()
	case <-wait.C:
		s.shed.Inc()
		return Identity{}, fmt.Errorf("%w: %d lookups already in flight", ErrStore, cap(s.sem))
	}
	defer func() { <-s.sem }()
	first, cancel := context.WithDeadline(ctx, start.Add(s.timeout))
	defer cancel()

	h := hex.EncodeToString(d[:])
	var (
		holder        *remoteStore // the first store that holds the key
		name          string       // its name for the key
		revokeAt      time.Time    // a revocation scheduled after now
		storeErr      error
		revokerFailed bool
	)
	asked := 0
	for _, st := range s.remotes {
		if q == revokedQ && !st.revokes {
			continue
		}
		stCtx := first
		if asked++; asked > 1 {
			var cancel context.CancelFunc
			stCtx, cancel = context.WithTimeout(ctx, s.timeout)
			defer cancel()
		}
		rec, err := st.lookup(stCtx, h)
		s.noteOutcome(st, err)
		if err != nil {
			storeErr = fmt.Errorf("%s: %w", st.name, err)
			revokerFailed = revokerFailed || st.revokes
			continue
		}
		if !rec.found {
			continue
		}
		if !rec.revokedAt.IsZero() {
			if !rec.revokedAt.After(s.now()) {
				return s.refuseRevoked(d, st, holder)
			}
			revokeAt = rec.revokedAt
		}
		if holder == nil {
			holder, name = st, s.usableName(st, rec.name, d)
		}
	}
	now := s.now()
	switch {
	case holder != nil && revokerFailed:
		return s.acceptUnverified(d, name)
	case holder != nil:
		e := cacheEntry{name: name, exp: now.Add(s.posTTL).UnixNano()}
		if !revokeAt.IsZero() && revokeAt.UnixNano() <= e.exp {
			// Scheduled revocation: trusted only until then, never stale.
			e.exp, e.final = revokeAt.UnixNano(), true
		}
		s.known.put(d, e)
		return Identity{Name: name}, nil
	case storeErr != nil:
		return Identity{}, fmt.Errorf("%w: %w", ErrStore, storeErr)
	case q == revokedQ:
		// The revoking stores do not hold this local key: not revoked.
		s.known.put(d, cacheEntry{unlisted: true, exp: now.Add(s.posTTL).UnixNano()})
		return Identity{}, nil
	}
	s.unknown.put(d, cacheEntry{err: ErrUnknown, exp: now.Add(s.negTTL).UnixNano()})
	return Identity{}, ErrUnknown
}

// usableName is the identity for a name st gives d: the digest prefix
// instead of an empty name or one unfit for a header.
func (s *Store) usableName(st *remoteStore, name string, d digest) string {
	switch {
	case name == "":
		return defaultName(d)
	case !validName(name):
		// It becomes a header value upstream: never forward it as is.
		s.log.Warn("API key has an unusable name in the store; using the digest prefix",
			"store", st.name, "key_prefix", hex.EncodeToString(d[:4]))
		return defaultName(d)
	}
	return name
}

// refuseRevoked caches that revoker revokes d and refuses it. When another
// source still lists the key (a local set, or holder), the operator is told
// where, once: not again while the revocation stays cached.
func (s *Store) refuseRevoked(d digest, revoker, holder *remoteStore) (Identity, error) {
	now := s.now()
	prev, seen := s.known.peek(d)
	s.known.put(d, cacheEntry{err: ErrRevoked, exp: now.Add(s.negTTL).UnixNano()})
	listedIn := s.listedLocally(d)
	if listedIn == "" && holder != nil {
		listedIn = holder.name
	}
	if listedIn != "" && !(seen && errors.Is(prev.err, ErrRevoked)) {
		s.log.Warn("API key refused: revoked, though another source still lists it; remove it there",
			"revoked_in", revoker.name, "listed_in", listedIn, "key_prefix", hex.EncodeToString(d[:4]))
	}
	return Identity{}, ErrRevoked
}

// listedLocally names the local set that holds d ("" for none).
func (s *Store) listedLocally(d digest) string {
	if _, ok := s.env[d]; ok {
		return "API_KEYS/API_KEY_HASHES"
	}
	if _, ok := (*s.local.Load())[d]; ok {
		return "API_KEYS_FILE"
	}
	return ""
}

// noteOutcome counts a store failure and logs an outage once: at its first
// failure and at the first success after it, not per request.
func (s *Store) noteOutcome(st *remoteStore, err error) {
	if err == nil {
		if st.down.CompareAndSwap(true, false) {
			s.log.Info("API key store recovered", "store", st.name)
		}
		return
	}
	st.errors.Inc()
	if st.down.CompareAndSwap(false, true) {
		s.log.Error("API key store unavailable: key lookups that need it fail closed, except keys another source lists",
			"store", st.name, "error", err)
	}
}

// newRemote wires a store with its error counter; revokes marks the store
// whose revocations override every other source.
func (s *Store) newRemote(name string, lookup func(context.Context, string) (record, error), revokes bool) *remoteStore {
	return &remoteStore{name: name, lookup: lookup, revokes: revokes, errors: s.storeErrors.WithLabelValues(name)}
}

// parseDigest decodes a 64-character hex SHA-256 digest (either case).
func parseDigest(h string) (digest, bool) {
	var d digest
	if len(h) != hex.EncodedLen(len(d)) {
		return d, false
	}
	if _, err := hex.Decode(d[:], []byte(h)); err != nil {
		return d, false
	}
	return d, true
}

// defaultName names a key that has no name: "key:" and 12 hex characters
// (48 bits of the digest: enough to tell keys apart in logs, useless to an
// attacker, who would need the key itself).
func defaultName(d digest) string {
	return "key:" + hex.EncodeToString(d[:6])
}

// maxNameBytes bounds a key's name (it becomes the X-User-ID header).
const maxNameBytes = 128

// validName reports whether name can go upstream as a header value and into
// logs as is: 1..128 printable ASCII characters, no edge spaces, and no comma
// (an upstream would read "alice, admin" as a list), as JWT subjects.
func validName(name string) bool {
	if name == "" || len(name) > maxNameBytes || name[0] == ' ' || name[len(name)-1] == ' ' {
		return false
	}
	for i := 0; i < len(name); i++ {
		if name[i] < 0x20 || name[i] > 0x7e || name[i] == ',' {
			return false
		}
	}
	return true
}

package cache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/redisbreaker"
)

// Redis timing. The cache is an optimisation: a Redis that does not answer
// within RedisTimeout is treated as down for this lookup, and after
// redisTrip failures in a row the breaker skips Redis altogether (costing
// nothing) for redisCooldown before one probe tries again. So an outage
// costs at most RedisTimeout on a handful of requests per cooldown.
const (
	RedisTimeout  = 50 * time.Millisecond
	redisTrip     = 3
	redisCooldown = time.Second
	// redisWriters bounds background SETs; beyond it a store is dropped
	// (the next miss stores it again) instead of queueing without limit.
	redisWriters = 64
	redisPrefix  = "portcullis:cache:"
	// RedisSlow: a lookup slower than this counts against the breaker as a
	// failure does (its answer is still used). A Redis that answers, but
	// in tens of milliseconds, would otherwise cost every request that
	// much without ever tripping the breaker; on a LAN Redis answers in
	// well under a millisecond.
	RedisSlow = 10 * time.Millisecond
)

var (
	errSlow = errors.New("cache: redis answered slowly")
	// errClientGone: the client hung up during the lookup, which says
	// nothing about Redis (the breaker does not count it).
	errClientGone = fmt.Errorf("cache: client gone during the lookup: %w", redisbreaker.ErrCallerGone)
)

// Redis is the shared store: every replica pointed at the same Redis sees
// the entries any of them stored.
type Redis struct {
	rdb     redis.UniversalClient
	cb      *redisbreaker.Breaker
	stats   *Stats
	log     *slog.Logger
	writers chan struct{}
}

// NewRedis returns a store on rdb, a client built with
// redisconn.ForCache(RedisTimeout). Errors are counted in stats; the first
// of an outage is logged as a warning, the recovery as info.
func NewRedis(rdb redis.UniversalClient, stats *Stats, log *slog.Logger) *Redis {
	s := &Redis{rdb: rdb, stats: stats, log: log, writers: make(chan struct{}, redisWriters)}
	s.cb = redisbreaker.New(redisbreaker.Settings{
		Name:     "redis-cache",
		Trip:     redisTrip,
		Cooldown: redisCooldown,
		OnOpen: func(error) {
			log.Warn("redis cache unreachable or slow: serving without the cache until it is back", "retry_every", redisCooldown.String(), "slow_above", RedisSlow.String())
		},
		OnClose: func(time.Duration) { log.Info("redis cache reachable again") },
	})
	return s
}

// redisKey hashes the cache key: keys may be kilobytes long (a query
// string), and a collision-resistant hash keeps one URL from being made to
// share another's entry.
func redisKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return redisPrefix + hex.EncodeToString(sum[:])
}

func (s *Redis) Get(ctx context.Context, key string) (*Entry, bool) {
	var b []byte
	err := s.cb.Do(func() error {
		began := time.Now()
		rctx, cancel := context.WithTimeout(ctx, RedisTimeout)
		defer cancel()
		var err error
		b, err = s.rdb.Get(rctx, redisKey(key)).Bytes()
		switch {
		case err != nil && ctx.Err() != nil:
			return errClientGone
		case err == nil && time.Since(began) > RedisSlow:
			return errSlow // the answer is used; the slowness counts against Redis
		}
		return err
	})
	switch {
	case err == nil, errors.Is(err, errSlow):
	case errors.Is(err, redis.Nil), errors.Is(err, errClientGone):
		return nil, false
	default:
		s.stats.Errors.Add(1)
		return nil, false
	}
	e, err := Unmarshal(b)
	if err != nil {
		s.stats.Errors.Add(1)
		s.log.Warn("redis cache entry is not ours: ignored", "error", err.Error())
		return nil, false
	}
	if !e.Fresh(time.Now()) {
		return nil, false
	}
	return e, true
}

func (s *Redis) Set(key string, e *Entry) {
	ttl := time.Until(e.Expires)
	if ttl <= 0 {
		return
	}
	s.background(func(ctx context.Context) error {
		return s.rdb.Set(ctx, redisKey(key), Marshal(e), ttl).Err()
	})
}

func (s *Redis) Delete(key string) {
	s.background(func(ctx context.Context) error { return s.rdb.Del(ctx, redisKey(key)).Err() })
}

// background runs a write off the request path, through the breaker.
func (s *Redis) background(op func(ctx context.Context) error) {
	select {
	case s.writers <- struct{}{}:
	default:
		return // too many writes in flight: Redis is slow; drop this one
	}
	go func() {
		defer func() { <-s.writers }()
		err := s.cb.Do(func() error {
			ctx, cancel := context.WithTimeout(context.Background(), RedisTimeout)
			defer cancel()
			return op(ctx)
		})
		if err != nil {
			s.stats.Errors.Add(1)
		}
	}()
}

func (s *Redis) Name() string { return "redis" }

// Ping reports whether Redis answers within timeout (CACHE_BACKEND=auto).
func Ping(ctx context.Context, rdb redis.UniversalClient, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

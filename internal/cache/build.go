package cache

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/redisconn"
)

// Build opens the response cache's store (CACHE_BACKEND) and returns the
// state every route's cache step shares, or nil when ENABLE_CACHING is
// off; the cache metrics are registered either way. Redis is used only
// when asked for; with `auto`, when it answers at boot. A Redis that dies
// later costs requests nothing but the cache (the store's breaker).
// closeAll releases the store.
func Build(ctx context.Context, cfg *config.Static, log *slog.Logger, reg prometheus.Registerer) (s *Shared, closeAll func(), err error) {
	closeAll = func() {}
	stats := &Stats{}
	if err := RegisterMetrics(stats, reg); err != nil {
		return nil, closeAll, err
	}
	if !cfg.EnableCaching {
		return nil, closeAll, nil
	}
	var store Store
	backend := cfg.CacheBackend
	if backend != "memory" {
		rdb := redisconn.New(redisconn.FromConfig(cfg), redisconn.ForCache(RedisTimeout))
		err := Ping(ctx, rdb, time.Second)
		switch {
		case backend == "auto" && err != nil:
			log.Info("CACHE_BACKEND=auto: Redis not reachable at boot, using the memory cache", "redis", cfg.RedisAddr, "error", err.Error())
			_ = rdb.Close()
			backend = "memory"
		case err != nil:
			log.Warn("CACHE_BACKEND=redis: Redis not reachable at boot; serving without the cache until it is", "redis", cfg.RedisAddr, "error", err.Error())
		}
		if backend != "memory" {
			store = NewRedis(rdb, stats, log)
			closeAll = func() { _ = rdb.Close() }
		}
	}
	if store == nil {
		mem, err := NewMemory(cfg.CacheMaxBytes)
		if err != nil {
			return nil, closeAll, err
		}
		store, closeAll = mem, mem.Close
	}
	s = NewShared(store, stats, Options{
		MaxObject:        cfg.CacheMaxObjectBytes,
		PrivateHeaders:   cfg.CachePrivateHeaders,
		ClientRevalidate: cfg.CacheClientRevalidate,
	})
	log.Info("response cache ready", "backend", store.Name(),
		"max_bytes", cfg.CacheMaxBytes, "max_object_bytes", cfg.CacheMaxObjectBytes,
		"private_headers", cfg.CachePrivateHeaders, "client_revalidate", cfg.CacheClientRevalidate)
	return s, closeAll, nil
}

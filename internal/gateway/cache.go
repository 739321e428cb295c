package gateway

import (
	"time"

	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// buildCache opens the response cache's store (CACHE_BACKEND). Redis is
// used only when asked for; with `auto`, when it answers at boot. A Redis
// that dies later costs requests nothing but the cache (the store's breaker).
func (g *Gateway) buildCache() error {
	cfg := g.cfg
	stats := &cache.Stats{}
	if err := cache.RegisterMetrics(stats, g.metrics.Registry); err != nil {
		return err
	}
	if !cfg.EnableCaching {
		return nil
	}
	log := telemetry.Component(g.log, "cache")
	var store cache.Store
	backend := cfg.CacheBackend
	if backend != "memory" {
		rdb := redisconn.New(redisconn.FromConfig(cfg), redisconn.ForCache(cache.RedisTimeout))
		err := cache.Ping(g.life, rdb, time.Second)
		switch {
		case backend == "auto" && err != nil:
			log.Info("CACHE_BACKEND=auto: Redis not reachable at boot, using the memory cache", "redis", cfg.RedisAddr, "error", err.Error())
			_ = rdb.Close()
			backend = "memory"
		case err != nil:
			log.Warn("CACHE_BACKEND=redis: Redis not reachable at boot; serving without the cache until it is", "redis", cfg.RedisAddr, "error", err.Error())
		}
		if backend != "memory" {
			store = cache.NewRedis(rdb, stats, log)
			g.closers = append(g.closers, func() { _ = rdb.Close() })
		}
	}
	if store == nil {
		mem, err := cache.NewMemory(cfg.CacheMaxBytes)
		if err != nil {
			return err
		}
		g.closers = append(g.closers, mem.Close)
		store = mem
	}
	g.cache = cache.NewShared(store, stats, cache.Options{
		MaxObject:        cfg.CacheMaxObjectBytes,
		PrivateHeaders:   cfg.CachePrivateHeaders,
		ClientRevalidate: cfg.CacheClientRevalidate,
	})
	log.Info("response cache ready", "backend", store.Name(), "default_ttl", cfg.CacheTTL.String(),
		"max_bytes", cfg.CacheMaxBytes, "max_object_bytes", cfg.CacheMaxObjectBytes,
		"private_headers", cfg.CachePrivateHeaders, "client_revalidate", cfg.CacheClientRevalidate)
	return nil
}

// cacheStats is the cache part of /stats.
func (g *Gateway) cacheStats() map[string]any {
	if g.cache == nil {
		return map[string]any{"enabled": false}
	}
	s := g.cache.Stats()
	out := map[string]any{
		"enabled":   true,
		"backend":   g.cache.Store().Name(),
		"hits":      s.Hits.Load(),
		"misses":    s.Misses.Load(),
		"bypasses":  s.Bypasses.Load(),
		"errors":    s.Errors.Load(),
		"hit_ratio": s.HitRatio(),
	}
	if m, ok := g.cache.Store().(*cache.Memory); ok {
		out["bytes"] = m.Bytes()
	}
	return out
}

// cacheHitRatio is hits / (hits + misses) since boot, 0 when caching is off.
func (g *Gateway) cacheHitRatio() float64 {
	if g.cache == nil {
		return 0
	}
	return g.cache.Stats().HitRatio()
}

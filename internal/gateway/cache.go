package gateway

import (
	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// buildCache opens the response cache (cache.Build).
func (g *Gateway) buildCache() error {
	c, closeAll, err := cache.Build(g.life, g.cfg, telemetry.Component(g.log, "cache"), g.metrics.Registry)
	g.closers = append(g.closers, closeAll)
	g.cache = c
	return err
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

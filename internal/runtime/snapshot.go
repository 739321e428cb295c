// Package runtime builds the immutable route table the gateway serves from
// (a Snapshot) and holds the current one behind an atomic pointer, so a
// configuration swap is a single store and in-flight requests finish on the
// snapshot they started with.
package runtime

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/balancer"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/proxy"
	"github.com/portcullis/portcullis/internal/router"
	"github.com/portcullis/portcullis/internal/upstream"
)

// Route is one configured route with everything built for serving it.
type Route struct {
	Config  config.Route
	Pool    *upstream.Pool
	Proxy   *proxy.Route
	Handler http.Handler // the per-route chain ending in the proxy
}

// Snapshot is an immutable view of the routes in force.
type Snapshot struct {
	Table    *router.Table[*Route]
	Routes   []*Route            // sorted by prefix
	Backends []*upstream.Backend // every backend of every route, once
}

// Build turns routes into a snapshot. Backends come from reg, so a backend
// present in the previous snapshot keeps its health, breaker and in-flight
// count. wrap builds the per-route chain around the proxy handler (see
// middleware.PerRoute).
func Build(routes []config.Route, reg *upstream.Registry, sh *proxy.Shared, wrap func(config.Route, http.Handler) (http.Handler, error)) (*Snapshot, error) {
	s := &Snapshot{}
	seen := make(map[*upstream.Backend]bool)
	entries := make([]router.Entry[*Route], 0, len(routes))
	for i, rc := range routes {
		pool := &upstream.Pool{Members: make([]upstream.Member, 0, len(rc.Targets))}
		for _, t := range rc.Targets {
			b := reg.Get(t.URL)
			pool.Members = append(pool.Members, upstream.Member{Backend: b, Weight: t.Weight})
			if !seen[b] {
				seen[b] = true
				s.Backends = append(s.Backends, b)
			}
		}
		sel, err := balancer.New(rc.Algo, pool)
		if err != nil {
			return nil, fmt.Errorf("route %d (%s): %w", i, rc.Prefix, err)
		}
		pr := &proxy.Route{
			Prefix:      rc.Prefix,
			StripPrefix: rc.StripPrefix,
			Timeout:     rc.Timeout,
			MaxBody:     rc.MaxBodyBytes,
			Pool:        pool,
			Selector:    sel,
			Budget:      proxy.NewRetryBudget(0.2, 1, 10*time.Second, nil),
		}
		var h http.Handler = proxy.New(pr, sh)
		if wrap != nil {
			if h, err = wrap(rc, h); err != nil {
				return nil, err
			}
		}
		r := &Route{Config: rc, Pool: pool, Proxy: pr, Handler: h}
		s.Routes = append(s.Routes, r)
		entries = append(entries, router.Entry[*Route]{Prefix: rc.Prefix, Value: r})
	}
	t, err := router.New(entries)
	if err != nil {
		return nil, err
	}
	s.Table = t
	return s, nil
}

// Holder holds the snapshot in force.
type Holder struct{ p atomic.Pointer[Snapshot] }

// Load returns the current snapshot.
func (h *Holder) Load() *Snapshot { return h.p.Load() }

// Store swaps in s.
func (h *Holder) Store(s *Snapshot) { h.p.Store(s) }

// Package routetable builds the immutable route table the gateway serves from
// (a Snapshot) and holds the current one behind an atomic pointer, so a
// configuration swap is a single store and in-flight requests finish on the
// snapshot they started with.
package routetable

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"os"
	"reflect"
	"slices"
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

	backends map[*upstream.Backend]bool
}

// Has reports whether b serves a route of s.
func (s *Snapshot) Has(b *upstream.Backend) bool { return s != nil && s.backends[b] }

// Build turns routes into a snapshot. Backends come from reg, so a backend
// present in the previous snapshot keeps its health, breaker and in-flight
// count. wrap builds the per-route chain around the proxy handler (see
// middleware.PerRoute).
func Build(routes []config.Route, reg *upstream.Registry, sh *proxy.Engine, wrap func(config.Route, http.Handler) (http.Handler, error)) (*Snapshot, error) {
	return BuildFrom(nil, routes, reg, sh, wrap)
}

// BuildFrom is Build for a reload: a route of prev whose configuration is
// unchanged is taken over whole (its chain, balancer position, retry
// budget and per-route rate-limit buckets), so reloading a file that
// changed one route leaves every other route's state alone. prev must have
// been built with the same reg, sh and an equivalent wrap; pass nil when
// wrap's behaviour changed (CORS origins, say).
func BuildFrom(prev *Snapshot, routes []config.Route, reg *upstream.Registry, sh *proxy.Engine, wrap func(config.Route, http.Handler) (http.Handler, error)) (*Snapshot, error) {
	s := &Snapshot{backends: make(map[*upstream.Backend]bool)}
	seen := s.backends
	old := make(map[string]*Route)
	if prev != nil {
		for _, r := range prev.Routes {
			old[r.Config.Prefix] = r
		}
	}
	entries := make([]router.Entry[*Route], 0, len(routes))
	for i, rc := range routes {
		if r, ok := old[rc.Prefix]; ok && reflect.DeepEqual(r.Config, rc) {
			for _, m := range r.Pool.Members {
				// The registry keeps every backend of the snapshot in
				// force, so this is the same one; a different one would
				// split the backend's health and breaker in two.
				if b := reg.Get(m.Backend.URL()); b != m.Backend {
					return nil, fmt.Errorf("route %d (%s): backend %s was replaced in the registry", i, rc.Prefix, b)
				}
				if !seen[m.Backend] {
					seen[m.Backend] = true
					s.Backends = append(s.Backends, m.Backend)
				}
			}
			s.Routes = append(s.Routes, r)
			entries = append(entries, router.Entry[*Route]{Prefix: rc.Prefix, Value: r})
			continue
		}
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
		client, err := routeClient(rc, sh)
		if err != nil {
			return nil, fmt.Errorf("route %d (%s): %w", i, rc.Prefix, err)
		}
		if client != nil {
			if rt, ok := client.(http.RoundTripper); ok {
				for _, m := range pool.Members {
					m.Backend.SetProbeClient(rt)
				}
			}
		}
		pr := &proxy.Route{
			Prefix:       rc.Prefix,
			StripPrefix:  rc.StripPrefix,
			Timeout:      rc.Timeout,
			MaxBody:      rc.MaxBodyBytes,
			Pool:         pool,
			Selector:     sel,
			Budget:       proxy.NewRetryBudget(0.2, 1, 10*time.Second, nil),
			BreakerOn5xx: rc.BreakerOn5xx,
			Keepalive:    rc.UpstreamKeepalive,
			Client:       client,
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

// routeClient is the route's own upstream client when it needs one
// (upstream_tls, upstream_http2, h2c:// targets), nil when the engine's
// serves it. The upstream_tls files are read here, when the route is built;
// a route a reload takes over unchanged keeps its client (and so the files
// it read): a rotated CA or client certificate needs the route changed.
func routeClient(rc config.Route, sh *proxy.Engine) (proxy.Client, error) {
	h2c := slices.ContainsFunc(rc.Targets, func(t config.Target) bool { return t.URL.Scheme == "h2c" })
	if sh.ClientFor == nil || (rc.UpstreamTLS == nil && !rc.UpstreamHTTP2 && !h2c) {
		return nil, nil
	}
	tc, err := upstreamTLS(rc.UpstreamTLS)
	if err != nil {
		return nil, err
	}
	return sh.ClientFor(tc, rc.UpstreamHTTP2), nil
}

// upstreamTLS is the client TLS configuration of an upstream_tls object.
func upstreamTLS(ut *config.UpstreamTLS) (*tls.Config, error) {
	if ut == nil {
		return nil, nil
	}
	tc := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         ut.ServerName,
		InsecureSkipVerify: ut.InsecureSkipVerify, // refused in production by config
	}
	if ut.CAFile != "" {
		pem, err := os.ReadFile(ut.CAFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls.ca_file: %w", err)
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("upstream_tls.ca_file: %s holds no PEM certificate", ut.CAFile)
		}
	}
	if ut.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(ut.CertFile, ut.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstream_tls.cert_file/key_file: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

// Holder holds the snapshot in force.
type Holder struct{ p atomic.Pointer[Snapshot] }

// Load returns the current snapshot.
func (h *Holder) Load() *Snapshot { return h.p.Load() }

// Store swaps in s, and tells its backends which pools they now serve (the
// passive-ejection cap counts within those).
func (h *Holder) Store(s *Snapshot) {
	pools := make([]*upstream.Pool, len(s.Routes))
	for i, r := range s.Routes {
		pools[i] = r.Pool
	}
	upstream.Publish(pools)
	h.p.Store(s)
}

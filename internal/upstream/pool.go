package upstream

import (
	"net/url"
	"sync"
)

// Member is a backend with the weight one route gives it.
type Member struct {
	Backend *Backend
	Weight  int
}

// Pool is the immutable set of backends behind one route.
type Pool struct {
	Members []Member
}

// maxEjected is how many of p's backends open breakers may take out at
// once: percent of them, rounded down, but at least one.
func (p *Pool) maxEjected(percent int) int {
	return max(1, len(p.Members)*percent/100)
}

// ejectedOthers counts p's backends other than b whose breakers are out.
func (p *Pool) ejectedOthers(b *Backend) int {
	n := 0
	for _, m := range p.Members {
		if m.Backend != b && m.Backend.ejected.Load() {
			n++
		}
	}
	return n
}

// Publish tells every backend which pools it serves, for the
// passive-ejection cap: call it with every pool of the route table that
// has just come into force.
func Publish(pools []*Pool) {
	of := make(map[*Backend][]*Pool)
	for _, p := range pools {
		for _, m := range p.Members {
			of[m.Backend] = append(of[m.Backend], p)
		}
	}
	for b, ps := range of {
		b.pools.Store(&ps)
	}
}

// Registry hands out one Backend per URL, so route tables built one after
// another (hot reload) share health, breaker state and in-flight counts.
type Registry struct {
	mu       sync.Mutex // guards backends; only taken while building a table
	settings BreakerSettings
	backends map[string]*Backend
	// ejectMu serialises the ejection decisions of the registry's
	// backends (see Backend.mayEject); taken only when a breaker is
	// ready to trip.
	ejectMu sync.Mutex
}

// NewRegistry returns an empty registry whose backends use bs.
func NewRegistry(bs BreakerSettings) *Registry {
	return &Registry{settings: bs, backends: make(map[string]*Backend)}
}

// Get returns the backend for u, creating it on first use.
func (r *Registry) Get(u *url.URL) *Backend {
	key := u.String()
	r.mu.Lock()
	defer r.mu.Unlock()
	if b, ok := r.backends[key]; ok {
		return b
	}
	b := newBackend(u, r.settings, &r.ejectMu)
	r.backends[key] = b
	return b
}

// All returns every backend known to the registry.
func (r *Registry) All() []*Backend {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Backend, 0, len(r.backends))
	for _, b := range r.backends {
		out = append(out, b)
	}
	return out
}

// Retain forgets every backend not in keep and returns the ones it forgot,
// so a hot reload that removed a backend from every route does not keep its
// state forever; a URL added again later starts afresh (alive, breaker
// closed). Requests still running on an older route table keep using their
// backends: forgetting only stops handing them out.
func (r *Registry) Retain(keep []*Backend) (dropped []*Backend) {
	kept := make(map[*Backend]bool, len(keep))
	for _, b := range keep {
		kept[b] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for key, b := range r.backends {
		if !kept[b] {
			delete(r.backends, key)
			b.retired.Store(true)
			dropped = append(dropped, b)
		}
	}
	return dropped
}

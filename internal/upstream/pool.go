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

// Registry hands out one Backend per URL, so route tables built one after
// another (hot reload) share health, breaker state and in-flight counts.
type Registry struct {
	mu       sync.Mutex // guards backends; only taken while building a table
	settings BreakerSettings
	backends map[string]*Backend
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
	b := NewBackend(u, r.settings)
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

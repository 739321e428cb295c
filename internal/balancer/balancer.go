// Package balancer picks the backend of a route's pool that serves a request,
// with the route's algorithm: round-robin, least-conn, ip-hash or weighted.
package balancer

import (
	"errors"
	"fmt"

	"github.com/portcullis/portcullis/internal/upstream"
)

// Selector picks a backend from one pool. Implementations are safe for
// concurrent use, lock-free and do not allocate.
type Selector interface {
	// Select returns an Available backend of the pool that is not in tried,
	// or nil when there is none (the caller answers 503). hash is the
	// client's HashKey; only ip-hash uses it.
	Select(hash uint64, tried []*upstream.Backend) *upstream.Backend
}

// Algorithm names, as SERVICE_ROUTES and the config file spell them.
const (
	AlgoRoundRobin = "round-robin"
	AlgoLeastConn  = "least-conn"
	AlgoIPHash     = "ip-hash"
	AlgoWeighted   = "weighted"
)

// MaxWeight is the largest member weight New accepts; it keeps least-conn's
// cross-multiplication of in-flight counts and weights far from overflow.
const MaxWeight = 1 << 16

var (
	_ Selector = (*RoundRobin)(nil)
	_ Selector = (*LeastConn)(nil)
	_ Selector = (*IPHash)(nil)
	_ Selector = (*Weighted)(nil)
)

// Known reports whether algo names an algorithm New accepts.
func Known(algo string) bool {
	switch algo {
	case AlgoRoundRobin, AlgoLeastConn, AlgoIPHash, AlgoWeighted:
		return true
	}
	return false
}

// New returns the selector for algo over pool. The pool is copied and must
// have at least one member, each with a non-nil backend and a weight in
// 1..MaxWeight.
func New(algo string, pool *upstream.Pool) (Selector, error) {
	members, err := validate(pool)
	if err != nil {
		return nil, fmt.Errorf("building %q balancer: %w", algo, err)
	}
	switch algo {
	case AlgoRoundRobin:
		return newRoundRobin(members), nil
	case AlgoLeastConn:
		return &LeastConn{members: members}, nil
	case AlgoIPHash:
		return newIPHash(members), nil
	case AlgoWeighted:
		return &Weighted{members: members}, nil
	}
	return nil, fmt.Errorf("building balancer: unknown algorithm %q (want %s, %s, %s or %s)",
		algo, AlgoRoundRobin, AlgoLeastConn, AlgoIPHash, AlgoWeighted)
}

func validate(pool *upstream.Pool) ([]upstream.Member, error) {
	if pool == nil || len(pool.Members) == 0 {
		return nil, errors.New("empty pool")
	}
	var errs []error
	for i, m := range pool.Members {
		if m.Backend == nil {
			errs = append(errs, fmt.Errorf("member %d: nil backend", i))
		}
		if m.Weight < 1 || m.Weight > MaxWeight {
			errs = append(errs, fmt.Errorf("member %d: weight %d out of range 1..%d", i, m.Weight, MaxWeight))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return append([]upstream.Member(nil), pool.Members...), nil
}

// usable reports whether b may serve this attempt. tried is checked first: it
// is cheaper than Available, which may take the breaker's lock when open.
func usable(b *upstream.Backend, tried []*upstream.Backend) bool {
	for _, t := range tried {
		if t == b {
			return false
		}
	}
	return b.Available()
}

// HashKey hashes a client key (the client IP's bytes) for ip-hash: FNV-1a 64
// followed by a murmur3 finaliser. It is fixed and seedless so every replica
// (and every release) sends a client to the same backend; do not change it
// casually. It does not allocate.
func HashKey(b []byte) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	for _, c := range b {
		h ^= uint64(c)
		h *= prime64
	}
	return fmix64(h)
}

// fmix64 is murmur3's 64-bit finaliser: a bijection that spreads every input
// bit over every output bit.
func fmix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}

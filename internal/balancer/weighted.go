package balancer

import (
	"math/rand/v2"

	"github.com/portcullis/portcullis/internal/upstream"
)

// Weighted picks a usable member at random with probability proportional to
// its weight.
type Weighted struct {
	members []upstream.Member
}

// Select sums the usable weights, draws once (math/rand/v2's top-level
// functions are goroutine-safe and lock-free) and walks to the member the
// draw lands on.
func (w *Weighted) Select(_ uint64, tried []*upstream.Backend) *upstream.Backend {
	var total uint64
	for _, m := range w.members {
		if usable(m.Backend, tried) {
			total += uint64(m.Weight)
		}
	}
	if total == 0 {
		return nil
	}
	r := rand.Uint64N(total)
	var last *upstream.Backend
	for _, m := range w.members {
		if !usable(m.Backend, tried) {
			continue
		}
		if r < uint64(m.Weight) {
			return m.Backend
		}
		r -= uint64(m.Weight)
		last = m.Backend
	}
	// A member became unusable between the passes; any usable one will do.
	return last
}

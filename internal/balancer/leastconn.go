package balancer

import (
	"math/bits"
	"math/rand/v2"

	"github.com/portcullis/portcullis/internal/upstream"
)

// LeastConn picks the usable member with the fewest in-flight requests per
// unit of weight. Ties (including the idle case, all at zero) are broken at
// random in proportion to weight, so weights hold at low concurrency too.
type LeastConn struct {
	members []upstream.Member
}

// Select compares inflight_a/weight_a < inflight_b/weight_b as
// inflight_a*weight_b < inflight_b*weight_a: no floats, no division. Ties are
// settled by weighted reservoir sampling over one random draw per call.
func (l *LeastConn) Select(_ uint64, tried []*upstream.Backend) *upstream.Backend {
	var (
		best     *upstream.Backend
		bestIn   int64
		bestW    int64
		tieTotal uint64 // sum of the weights of the members tied with best
		seed     = rand.Uint64()
	)
	for i, m := range l.members {
		if !usable(m.Backend, tried) {
			continue
		}
		in, w := m.Backend.InFlight(), int64(m.Weight)
		switch {
		case best == nil || in*bestW < bestIn*w:
			best, bestIn, bestW, tieTotal = m.Backend, in, w, uint64(w)
		case in*bestW == bestIn*w:
			tieTotal += uint64(w)
			// Replace with probability w/tieTotal; the draw for member i is
			// an independent-looking mix of the call's seed.
			if r, _ := bits.Mul64(fmix64(seed+uint64(i)*0x9e3779b97f4a7c15), tieTotal); r < uint64(w) {
				best, bestIn, bestW = m.Backend, in, w
			}
		}
	}
	return best
}

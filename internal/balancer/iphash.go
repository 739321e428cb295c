package balancer

import (
	"math"

	"github.com/portcullis/portcullis/internal/upstream"
)

// IPHash sends a client to the same backend while the set of usable backends
// is unchanged, by weighted rendezvous (highest random weight) hashing: each
// member scores -weight/ln(u), u uniform in (0,1) from hash(client, member),
// and the highest score wins. When a backend dies only its clients move, each
// to its own second choice; when it returns they move back. Retries (tried)
// go to the client's next choice, also stable.
type IPHash struct {
	members []upstream.Member
	ids     []uint64  // HashKey of each member's URL: stable across processes
	invW    []float64 // 1/weight
	equal   bool      // all weights equal: compare raw hashes, skip the log
}

func newIPHash(members []upstream.Member) *IPHash {
	ip := &IPHash{
		members: members,
		ids:     make([]uint64, len(members)),
		invW:    make([]float64, len(members)),
		equal:   true,
	}
	for i, m := range members {
		ip.ids[i] = HashKey([]byte(m.Backend.String()))
		ip.invW[i] = 1 / float64(m.Weight)
		if m.Weight != members[0].Weight {
			ip.equal = false
		}
	}
	return ip
}

// Select returns the usable member with the highest score for hash.
func (p *IPHash) Select(hash uint64, tried []*upstream.Backend) *upstream.Backend {
	var (
		best      *upstream.Backend
		bestScore float64
		bestRaw   uint64
	)
	for i, m := range p.members {
		if !usable(m.Backend, tried) {
			continue
		}
		h := fmix64(hash ^ p.ids[i])
		if p.equal {
			if best == nil || h > bestRaw {
				best, bestRaw = m.Backend, h
			}
			continue
		}
		// u in (0,1) from the top 53 bits. Maximising -weight/ln(u) is
		// maximising ln(u)/weight (both < 0), which needs no division.
		u := (float64(h>>11) + 0.5) * (1.0 / (1 << 53))
		score := math.Log(u) * p.invW[i]
		if best == nil || score > bestScore {
			best, bestScore = m.Backend, score
		}
	}
	return best
}

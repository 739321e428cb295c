package balancer

import (
	"sync/atomic"

	"github.com/portcullis/portcullis/internal/upstream"
)

// maxSchedule caps a round-robin schedule's length; larger weight sums are
// scaled down proportionally (each member keeping at least one slot).
const maxSchedule = 4096

// RoundRobin serves members in nginx's smooth weighted round-robin order
// (weights 5:1:1 give a a b a c a a, not a a a a a b c), precomputed at New
// and walked with an atomic counter.
type RoundRobin struct {
	members  []upstream.Member
	schedule []int32 // indexes into members
	next     atomic.Uint64
	fallback Weighted
}

func newRoundRobin(members []upstream.Member) *RoundRobin {
	return &RoundRobin{
		members:  members,
		schedule: smoothSchedule(members),
		fallback: Weighted{members: members},
	}
}

// smoothSchedule runs nginx's smooth weighted round-robin over one period:
// each step every member gains its weight, the richest is picked and pays the
// total. Weights are first divided by their GCD and capped to maxSchedule.
func smoothSchedule(members []upstream.Member) []int32 {
	weights := make([]int, len(members))
	g, total := 0, 0
	for i, m := range members {
		weights[i] = m.Weight
		g = gcd(g, m.Weight)
		total += m.Weight
	}
	total = 0
	for i := range weights {
		weights[i] /= g
		total += weights[i]
	}
	if total > maxSchedule {
		scaled := 0
		for i, w := range weights {
			weights[i] = max(1, w*maxSchedule/total)
			scaled += weights[i]
		}
		total = scaled
	}
	schedule := make([]int32, total)
	current := make([]int, len(weights))
	for s := range schedule {
		best := 0
		for i, w := range weights {
			current[i] += w
			if current[i] > current[best] {
				best = i
			}
		}
		current[best] -= total
		schedule[s] = int32(best)
	}
	return schedule
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// Select returns the next usable member in the schedule. Slots of unusable
// members are consumed, not given to the next member (so a dead backend's
// share is spread over the live ones, not dumped on its successor); past
// len(members) unusable slots it falls back to a weighted random choice.
func (r *RoundRobin) Select(_ uint64, tried []*upstream.Backend) *upstream.Backend {
	n := uint64(len(r.schedule))
	pos := r.next.Add(1) - 1
	for skipped := range len(r.members) + 1 {
		if b := r.members[r.schedule[(pos+uint64(skipped))%n]].Backend; usable(b, tried) {
			if skipped > 0 {
				r.next.Add(uint64(skipped))
			}
			return b
		}
	}
	return r.fallback.Select(0, tried)
}

// The shared rate limiter: one GCRA bucket per client key (and route) in
// Redis, run by gcraScript (scripts.go) in one round trip per request.

package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/limiter"
)

// Allow runs the shared GCRA for key (limiter.Remote). It never blocks
// longer than OpTimeout and answers ok=false while Redis is unavailable.
func (n *Node) Allow(ctx context.Context, scope string, key netip.Addr, interval, tau time.Duration) (limiter.Decision, bool) {
	if !n.br.Closed() {
		n.fallbacks.Inc()
		return limiter.Decision{}, false
	}
	var k string
	if scope == "" {
		k = n.keys.rl + keyText(key)
	} else {
		k = n.keys.rlRoute + scope + ":" + keyText(key)
	}
	cctx, cancel := context.WithTimeout(ctx, n.o.OpTimeout)
	res, err := n.gcra.Run(cctx, n.rdb, []string{k}, max(interval.Microseconds(), 1), max(tau.Microseconds(), 1)).Int64Slice()
	cancel()
	if err != nil || len(res) != 4 {
		if err == nil {
			err = fmt.Errorf("gcra script answered %d values", len(res))
		}
		if errors.Is(err, redis.ErrPoolTimeout) {
			// Every connection busy: decide this one locally, no outage.
			n.fallbacks.Inc()
			return limiter.Decision{}, false
		}
		if isOutage(ctx, err) {
			n.fail(err)
		}
		n.fallbacks.Inc()
		return limiter.Decision{}, false
	}
	return limiter.Decision{
		Allowed:    res[0] == 1,
		Remaining:  int(res[1]),
		Reset:      time.Duration(res[2]) * time.Microsecond,
		RetryAfter: time.Duration(res[3]) * time.Microsecond,
	}, true
}

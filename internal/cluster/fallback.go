// The fallback to local state while Redis is unavailable: the breaker
// (redisbreaker, the cache's too), cluster_fallback_total and
// cluster_degraded, and the recovery that replays the outage's changes and
// resyncs before the replica shares state again.

package cluster

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/redisbreaker"
)

// initFallback builds the breaker and the two metrics that report it, and
// registers the metrics with reg (when not nil).
func (n *Node) initFallback(reg prometheus.Registerer) error {
	n.fallbacks = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "cluster_fallback_total",
		Help: "Decisions (rate limits, list changes) made on local state because the shared Redis was unavailable (CLUSTER_MODE=redis).",
	})
	n.degradedG = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "cluster_degraded",
		Help: "1 while this replica runs on local limits and lists because the shared Redis is unavailable, else 0.",
	})
	n.br = redisbreaker.New(redisbreaker.Settings{
		Name: "redis-cluster",
		// The first failure opens it: a request must not wait on a Redis
		// that just failed another.
		Trip: 1,
		// No cooldown of its own: the loop probes every ProbeEvery, with a
		// whole recovery rather than the next request (see recover).
		Cooldown: 0,
		OnOpen: func(err error) {
			n.degradedG.Set(1)
			n.log.Warn("redis unavailable: falling back to local rate limits, DDoS counters and lists until it answers",
				"redis", n.o.Redis.String(), "error", err.Error())
		},
		OnClose: func(outage time.Duration) {
			n.degradedG.Set(0)
			n.log.Info("redis reachable again: back to shared limits and lists",
				"redis", n.o.Redis.String(), "outage", outage.Round(time.Millisecond).String())
		},
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{n.fallbacks, n.degradedG} {
			if err := reg.Register(c); err != nil {
				return fmt.Errorf("cluster: registering metrics: %w", err)
			}
		}
	}
	return nil
}

// Degraded reports whether the replica runs on local state now.
func (n *Node) Degraded() bool { return !n.br.Closed() }

// fail opens the breaker; the first failure of an outage logs a warning
// (OnOpen, in initFallback). After Close, failures are the shutdown's own (the
// client is closed) and change nothing.
func (n *Node) fail(err error) {
	if n.closed.Load() {
		n.log.Debug("redis call after close", "error", err.Error())
		return
	}
	n.br.Fail(err)
}

// endOutage closes the breaker if a failure opened it while Start's
// recovery was under way (Start's recovery runs outside the probe, which
// the loop, not yet started, would otherwise hold).
func (n *Node) endOutage() {
	if done, ok := n.br.Probe(); ok {
		done(nil)
	}
}

// probe runs one recovery while the replica is degraded (loop goroutine).
// It holds the breaker's one probe: a recovery that succeeds closes the
// breaker, from inside recover, once no change is left to replay.
func (n *Node) probe(ctx context.Context) {
	done, ok := n.br.Probe()
	if !ok {
		return
	}
	if err := n.recover(ctx, func() { done(nil) }); err != nil {
		done(err)
		n.log.Debug("redis still unavailable", "error", err.Error())
	}
}

// isOutage tells a Redis failure from the caller giving up.
func isOutage(ctx context.Context, err error) bool {
	if ctx.Err() != nil && errors.Is(err, ctx.Err()) && !errors.Is(err, context.DeadlineExceeded) {
		return false // the client went away
	}
	return redisbreaker.IsFailure(err)
}

// recover brings Redis up to date with this replica and this replica with
// Redis: scripts loaded, lists re-seeded if Redis lost them, the changes
// made during the outage replayed, then a full resync; then it ends the
// outage (up, which closes the breaker), once no change is left to replay.
func (n *Node) recover(ctx context.Context, up func()) error {
	ctx, cancel := context.WithTimeout(ctx, n.o.BackgroundTimeout)
	defer cancel()
	if err := n.rdb.Ping(ctx).Err(); err != nil {
		return err
	}
	for _, s := range []*redis.Script{n.gcra, n.flushDDoS, n.unblockLua} {
		if err := s.Load(ctx, n.rdb).Err(); err != nil {
			return err
		}
	}
	if err := n.reseed(ctx); err != nil {
		return err
	}
	for {
		n.pmu.Lock()
		todo := n.pending
		n.pending = nil
		n.pmu.Unlock()
		for i, c := range todo {
			if err := n.writeChange(ctx, c); err != nil {
				n.pmu.Lock()
				n.pending = append(todo[i:len(todo):len(todo)], n.pending...)
				n.pmu.Unlock()
				return err
			}
		}
		if n.afterReplay != nil {
			n.afterReplay()
		}
		n.lastVersion = "" // force a full read
		if err := n.resync(ctx); err != nil {
			return err
		}
		// Admin changes made during the replay were queued: replay them
		// too before going back to shared state, or they would stay queued
		// and the next resync would undo them locally.
		if n.upIfReplayed(up) {
			return nil
		}
	}
}

// upIfReplayed ends the outage (up) if no change is left to replay, under
// pmu (see queue): the breaker closes before a change can find it open and
// queue itself behind the last replay.
func (n *Node) upIfReplayed(up func()) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if len(n.pending) != 0 {
		return false
	}
	up()
	return true
}

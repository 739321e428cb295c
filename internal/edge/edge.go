// Package edge builds the state the edge-protection steps share with the
// admin API, cluster mode and /stats: client-IP resolution, the allow/deny
// lists, the DDoS guard, the per-IP limiter and, in CLUSTER_MODE=redis, the
// replica's link to the state every replica shares.
package edge

import (
	"context"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/cluster"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/redisconn"
)

// State is the edge state of one gateway process. Its parts are safe for
// concurrent use; the fields never change after Build.
type State struct {
	Resolver *realip.Resolver // TRUSTED_PROXIES: who may say who the client is
	Lists    *iplist.Lists    // IP_WHITELIST / IP_BLACKLIST, changed by the admin API
	Guard    *flood.Guard     // DDoS counts and blocks
	Limits   *limiter.Limits  // per-IP and per-route token buckets

	node *cluster.Node // nil unless CLUSTER_MODE=redis
}

// Build creates the edge state from cfg and, in cluster mode, connects it
// to Redis: the boot lists join the shared ones and the shared state is
// loaded. A Redis that is down does not fail the build: the replica starts
// degraded on local state and joins when Redis answers. The cluster link
// lives until ctx ends and closeAll is called; closeAll is never nil.
func Build(ctx context.Context, cfg *config.Static, log *slog.Logger, reg prometheus.Registerer) (s *State, closeAll func(), err error) {
	s = &State{
		Resolver: realip.NewResolver(cfg.TrustedProxies),
		Lists:    iplist.NewLists(cfg.IPWhitelist, cfg.IPBlacklist),
	}
	closeAll = func() {}
	if cfg.ClusterMode == "redis" {
		if s.node, err = cluster.New(cluster.Options{
			Redis:         redisconn.FromConfig(cfg),
			DDoSThreshold: cfg.DDoSThreshold,
			BlockDuration: cfg.BlockDuration,
			Log:           log,
			Registerer:    reg,
		}); err != nil {
			return nil, closeAll, fmt.Errorf("CLUSTER_MODE=redis: %w", err)
		}
	}
	if s.Guard, err = flood.New(flood.Config{
		Threshold:     cfg.DDoSThreshold,
		BlockDuration: cfg.BlockDuration,
		MaxTrackedIPs: cfg.MaxTrackedIPs,
		Log:           log,
		Registerer:    reg,
		Share:         s.sharer(),
	}); err != nil {
		return nil, closeAll, fmt.Errorf("DDOS_THRESHOLD/BLOCK_DURATION: %w", err)
	}
	if s.Limits, err = limiter.NewLimits(limiter.Config{
		MaxTrackedIPs: cfg.MaxTrackedIPs,
		Log:           log,
		Registerer:    reg,
		Remote:        s.remote(),
	}); err != nil {
		return nil, closeAll, fmt.Errorf("MAX_TRACKED_IPS: %w", err)
	}
	if s.node != nil {
		s.Lists.SetSync(s.node)
		s.node.Attach(s.Lists, s.Guard)
		s.node.Start(ctx)
		closeAll = s.node.Close
	}
	return s, closeAll, nil
}

// sharer and remote hand the node to the guard and the limiter as
// interfaces that are nil (not a typed nil) when cluster mode is off, so
// the request path pays one nil check.
func (s *State) sharer() flood.Sharer {
	if s.node == nil {
		return nil
	}
	return s.node
}

func (s *State) remote() limiter.Remote {
	if s.node == nil {
		return nil
	}
	return s.node
}

// Run sweeps the guard's and the limiter's per-IP state until ctx ends.
func (s *State) Run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.Guard.Run(ctx) })
	wg.Go(func() { s.Limits.Run(ctx) })
	wg.Wait()
}

// Degraded reports a replica running on local state because the shared
// Redis is unavailable; always false outside cluster mode.
func (s *State) Degraded() bool { return s.node != nil && s.node.Degraded() }

package gateway

import (
	"fmt"

	"github.com/portcullis/portcullis/internal/cluster"
	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/redisconn"
)

// clusterNode is the replica's link to the shared state (CLUSTER_MODE=redis).
type clusterNode = cluster.Node

// buildCluster creates the node when CLUSTER_MODE=redis (nil when off). It
// does not touch the network: startCluster connects.
func (g *Gateway) buildCluster() (*clusterNode, error) {
	if g.cfg.ClusterMode != "redis" {
		return nil, nil
	}
	n, err := cluster.New(cluster.Options{
		Redis:         redisconn.FromConfig(g.cfg),
		DDoSThreshold: g.cfg.DDoSThreshold,
		BlockDuration: g.cfg.BlockDuration,
		Log:           g.log,
		Registerer:    g.metrics.Registry,
	})
	if err != nil {
		return nil, fmt.Errorf("CLUSTER_MODE=redis: %w", err)
	}
	return n, nil
}

// clusterShare and clusterRemote hand the node to the guard and the limiter
// as interfaces that are nil (not a typed nil) when cluster mode is off, so
// the request path pays one nil check.
func (g *Gateway) clusterShare() flood.Sharer {
	if g.cluster == nil {
		return nil
	}
	return g.cluster
}

func (g *Gateway) clusterRemote() limiter.Remote {
	if g.cluster == nil {
		return nil
	}
	return g.cluster
}

// startCluster links the lists and the guard to the node and connects: the
// boot lists are added to the shared ones and the shared state loaded. A
// Redis that is down does not stop the boot: the replica starts degraded
// on local state and joins when Redis answers. The node lives until Run's
// shutdown (g.life, then the closers).
func (g *Gateway) startCluster() {
	if g.cluster == nil {
		return
	}
	g.lists.SetSync(g.cluster)
	g.cluster.Attach(g.lists, g.guard)
	g.cluster.Start(g.life)
	g.closers = append(g.closers, g.cluster.Close)
}

// clusterDegraded reports a replica running on local state because the
// shared Redis is unavailable (/health says degraded).
func (g *Gateway) clusterDegraded() bool { return g.cluster != nil && g.cluster.Degraded() }

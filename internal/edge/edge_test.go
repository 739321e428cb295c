package edge

import (
	"context"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

func load(t *testing.T, env map[string]string) *config.Static {
	t.Helper()
	cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &cfg.Static
}

// TestBuildLocal: without cluster mode the state is local, from the
// configuration, and never degraded.
func TestBuildLocal(t *testing.T) {
	s, closeAll, err := Build(context.Background(), load(t, map[string]string{
		"IP_BLACKLIST": "203.0.113.0/24", "TRUSTED_PROXIES": "10.0.0.1",
	}), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	if s.Degraded() || s.Lists.Len(iplist.Deny) != 1 || !s.Resolver.Trusted(netip.MustParseAddr("10.0.0.1")) {
		t.Errorf("degraded %v, deny list %d, 10.0.0.1 trusted %v", s.Degraded(), s.Lists.Len(iplist.Deny), s.Resolver.Trusted(netip.MustParseAddr("10.0.0.1")))
	}
}

// TestBuildClusterModeSharesThroughRedis: in cluster mode a deny entry
// added on one replica's lists reaches the other's, through a real Redis.
func TestBuildClusterModeSharesThroughRedis(t *testing.T) {
	addr, _ := testsvc.Redis(t)
	env := map[string]string{"CLUSTER_MODE": "redis", "REDIS_ADDR": addr}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var states []*State
	for range 2 {
		s, closeAll, err := Build(ctx, load(t, env), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(closeAll)
		states = append(states, s)
	}
	states[0].Lists.Add(iplist.Deny, netip.MustParsePrefix("198.51.100.7/32"))
	deadline := time.Now().Add(5 * time.Second)
	for states[1].Lists.Len(iplist.Deny) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("a deny entry added on one replica never reached the other")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestBuildClusterModeWithRedisDown: a Redis that does not answer does
// not stop the build; the replica runs degraded on local state.
func TestBuildClusterModeWithRedisDown(t *testing.T) {
	env := map[string]string{"CLUSTER_MODE": "redis", "REDIS_ADDR": testutil.DeadAddr(t)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, closeAll, err := Build(ctx, load(t, env), slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	defer closeAll()
	deadline := time.Now().Add(5 * time.Second)
	for !s.Degraded() {
		if time.Now().After(deadline) {
			t.Fatal("a replica whose Redis is down does not report itself degraded")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Package cluster shares rate limits, DDoS counters and blocks, and the
// allow/deny lists between replicas through one Redis (CLUSTER_MODE=redis,
// docs/cluster.md), and falls back to each replica's local
// state while Redis is unreachable.
//
// What lives where:
//
//   - Rate limits: one GCRA bucket per client key (and route) in Redis,
//     updated by a Lua script that reads Redis's own clock, so N replicas
//     together allow exactly what one would, whatever their clocks say.
//     One round trip per request.
//   - DDoS counters: counted locally on the request path and flushed every
//     FlushEvery (100 ms) as per-key deltas, pipelined, into per-minute
//     counters in Redis; the flush script blocks a key whose cluster-wide
//     sliding-minute count is over the threshold and publishes the block.
//     Requests never wait on Redis for it.
//   - Lists and blocks: each replica keeps its own lock-free copy (the
//     request path never asks Redis); changes are written to Redis sets and
//     a sorted set of blocks, and published on one channel that every
//     replica applies; a periodic resync converges a replica that missed
//     messages. A quiet subscription is pinged, and replaced (with a full
//     resync) when the answer does not come: a network cut without a
//     reset would otherwise leave it silently dead for minutes.
//
// Failure: every Redis call has a deadline (OpTimeout on the request path).
// The first failure opens a breaker (redisbreaker, the response cache's
// too): the replica logs one warning, reports degraded, and stops calling
// Redis on the request path (limits and lists are local, each decision
// counted in cluster_fallback_total). A probe pings Redis every ProbeEvery;
// when it answers, the changes made during the outage are replayed, the
// lists resynced, and the replica goes back to shared state with one info
// line. A panic in a background loop is logged with its stack and the loop
// restarted; changes after Close stay local.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/flood"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/redisbreaker"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// This file holds the Node, its options and its lifecycle (New, Attach,
// Start, Close). Each concern of the package comment has its own file:
// ratelimit.go, ddos.go, lists.go (with the replay of an outage's
// changes), pubsub.go, fallback.go (the breaker and the recovery),
// loops.go (the background goroutines) and scripts.go (the Lua).

// Defaults of Options.
const (
	// DefaultOpTimeout bounds a Redis call on the request path. Redis on a
	// LAN answers a script in well under a millisecond; 50 ms absorbs a GC
	// pause or a busy Redis without declaring an outage, and bounds what a
	// hung Redis costs the requests in flight when it hangs (once: the
	// breaker then stops the calls).
	DefaultOpTimeout = 50 * time.Millisecond
	// DefaultBackgroundTimeout bounds a flush, a resync, a list change.
	DefaultBackgroundTimeout = time.Second
	// DefaultProbeEvery is how often an unreachable Redis is pinged.
	DefaultProbeEvery = 250 * time.Millisecond
	// DefaultResyncEvery is the period of the full resync of lists and
	// blocks (cheap when nothing changed: one version read).
	DefaultResyncEvery = 5 * time.Second
	// DefaultFlushEvery is how often DDoS counts are flushed to Redis.
	DefaultFlushEvery = 100 * time.Millisecond
	// DefaultPrefix namespaces every key and the channel.
	DefaultPrefix = "portcullis"
)

// Options configures a Node.
type Options struct {
	// Redis is the shared Redis (REDIS_ADDR, REDIS_PASSWORD, REDIS_DB).
	Redis redisconn.Server
	// Prefix namespaces keys and the channel (default "portcullis").
	Prefix string
	// DDoSThreshold and BlockDuration are DDOS_THRESHOLD and BLOCK_DURATION,
	// applied to the cluster-wide counts. Required.
	DDoSThreshold int
	BlockDuration time.Duration

	OpTimeout         time.Duration // default DefaultOpTimeout
	BackgroundTimeout time.Duration // default DefaultBackgroundTimeout
	ProbeEvery        time.Duration // default DefaultProbeEvery
	ResyncEvery       time.Duration // default DefaultResyncEvery
	FlushEvery        time.Duration // default DefaultFlushEvery

	// Log is the base logger (component "cluster" is added); nil discards.
	Log *slog.Logger
	// Registerer receives cluster_fallback_total and cluster_degraded.
	Registerer prometheus.Registerer
}

// Node is this replica's link to the shared state. Build it with New, hand
// it to the rate limiter (Config.Remote), the DDoS guard (Config.Share) and
// the lists (SetSync), then Attach the lists and guard and Start it.
type Node struct {
	o    Options
	rdb  redis.UniversalClient
	log  *slog.Logger
	keys keys

	// br is open (the replica degraded) from the first failed call to
	// the end of a recovery; see fail and recover.
	br         *redisbreaker.Breaker
	fallbacks  prometheus.Counter
	degradedG  prometheus.Gauge
	gcra       *redis.Script
	flushDDoS  *redis.Script
	unblockLua *redis.Script

	lists *iplist.Lists
	guard *flood.Guard

	counts [countShards]countShard

	pmu     sync.Mutex // guards pending; taken by admin changes, not requests
	pending []change

	lastVersion string // lists version seen at the last resync (loop goroutine only)
	forceSync   atomic.Bool
	// holdsLists: this replica's lists are the cluster's (it loaded them
	// from a Redis that had them, or seeded it), so it may seed a Redis
	// that lost them; seedWait is when it first found Redis without them
	// while it did not. Loop goroutine (and Start) only.
	holdsLists bool
	seedWait   time.Time

	// afterReplay, when set (tests), runs in recover after the outage's
	// changes were replayed, where an admin change may race the recovery.
	afterReplay func()
	// hook, when set (tests, before Start), runs on every turn of the
	// background loops with the loop's name ("receive", "loop"): a test
	// injects a panic there.
	hook func(loop string)

	// closed is set by Close: a change or a failure after it is the
	// shutdown's, not an outage.
	closed atomic.Bool

	events chan string
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ limiter.Remote = (*Node)(nil)
	_ flood.Sharer   = (*Node)(nil)
	_ iplist.Sync    = (*Node)(nil)
)

type keys struct {
	rl, rlRoute, dd, blocks, channel, version, marker string
	list                                              [2]string // by iplist.Kind
}

func newKeys(p string) keys {
	return keys{
		rl:      p + ":rl:",
		rlRoute: p + ":rlr:",
		dd:      p + ":dd:",
		blocks:  p + ":blocks",
		channel: p + ":events",
		version: p + ":lists:version",
		marker:  p + ":lists:init",
		list:    [2]string{iplist.Allow: p + ":list:whitelist", iplist.Deny: p + ":list:blacklist"},
	}
}

// New validates o and connects lazily: it does not touch the network.
func New(o Options) (*Node, error) {
	var errs []error
	if o.Redis.Addr == "" {
		errs = append(errs, errors.New("cluster: Redis address is required"))
	}
	if o.DDoSThreshold < 1 || o.BlockDuration <= 0 {
		errs = append(errs, fmt.Errorf("cluster: DDoS threshold %d / block duration %v: expected ≥ 1 / > 0", o.DDoSThreshold, o.BlockDuration))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.OpTimeout, DefaultOpTimeout)
	def(&o.BackgroundTimeout, DefaultBackgroundTimeout)
	def(&o.ProbeEvery, DefaultProbeEvery)
	def(&o.ResyncEvery, DefaultResyncEvery)
	def(&o.FlushEvery, DefaultFlushEvery)
	if o.Prefix == "" {
		o.Prefix = DefaultPrefix
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	n := &Node{
		o:          o,
		log:        telemetry.Component(o.Log, "cluster"),
		rdb:        redisconn.New(o.Redis, redisconn.ForCluster(o.OpTimeout, o.BackgroundTimeout)),
		keys:       newKeys(o.Prefix),
		gcra:       redis.NewScript(gcraScript),
		flushDDoS:  redis.NewScript(ddosScript),
		unblockLua: redis.NewScript(unblockScript),
		events:     make(chan string, 4096),
	}
	for i := range n.counts {
		n.counts[i].m = make(map[netip.Addr]uint32)
	}
	if err := n.initFallback(o.Registerer); err != nil {
		return nil, err
	}
	return n, nil
}

// Attach gives the node the lists and the guard remote changes apply to.
// The lists' current entries (IP_WHITELIST / IP_BLACKLIST) are added to the
// shared lists at Start.
func (n *Node) Attach(lists *iplist.Lists, guard *flood.Guard) {
	n.lists, n.guard = lists, guard
	for _, k := range []iplist.Kind{iplist.Allow, iplist.Deny} {
		for _, p := range lists.Entries(k) {
			n.pending = append(n.pending, change{kind: k, p: p, add: true})
		}
	}
}

// Start connects (waiting at most BackgroundTimeout), pushes the boot lists,
// loads the shared state, and starts the background loops, which stop when
// ctx ends or Close is called. Redis being unreachable does not fail Start:
// the replica starts degraded and recovers when Redis answers.
func (n *Node) Start(ctx context.Context) {
	ctx, n.cancel = context.WithCancel(ctx)
	// Subscribed before the first resync, so no change falls in between.
	ps := n.rdb.Subscribe(ctx, n.keys.channel)
	if err := n.recover(ctx, n.endOutage); err != nil {
		n.fail(err)
	} else {
		n.log.Info("cluster mode: sharing limits, DDoS counters and lists through Redis", "redis", n.o.Redis.String())
	}
	n.wg.Go(func() {
		n.supervise(ctx, "receive", func(ctx context.Context) {
			first := ps // the first run takes Start's subscription; a restart subscribes anew
			ps = nil
			n.receive(ctx, first)
		})
	})
	n.wg.Go(func() { n.supervise(ctx, "loop", n.loop) })
}

// Close stops the loops and closes the Redis client. A change made after
// it (an admin request racing the shutdown) applies locally only.
func (n *Node) Close() {
	n.closed.Store(true)
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	_ = n.rdb.Close()
}

// keyText is the Redis spelling of a client key: the IPv4 address, or the
// network address of an IPv6 client's /64.
func keyText(a netip.Addr) string { return a.String() }

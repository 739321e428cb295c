// Package cluster shares rate limits, DDoS counters and blocks, and the
// allow/deny lists between replicas through one Redis (CLUSTER_MODE=redis,
// README "Running many replicas"), and falls back to each replica's local
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
// The first failure opens a breaker: the replica logs one warning, reports
// degraded, and stops calling Redis on the request path (limits and lists
// are local, each decision counted in cluster_fallback_total). A probe
// pings Redis every ProbeEvery; when it answers, the changes made during
// the outage are replayed, the lists resynced, and the replica goes back to
// shared state with one info line. A panic in a background loop is logged
// with its stack and the loop restarted; changes after Close stay local.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/middleware/ddos"
	"github.com/portcullis/portcullis/internal/middleware/ipfilter"
	"github.com/portcullis/portcullis/internal/middleware/ratelimit"
	"github.com/portcullis/portcullis/internal/redisbreaker"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/telemetry"
)

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

	// maxPending bounds the changes kept for replay during an outage.
	maxPending = 100_000
	// countShards × maxCountsPerShard bound the DDoS deltas held between
	// two flushes (a spray of addresses cannot grow them without bound).
	countShards       = 32
	maxCountsPerShard = 8192
	// flushChunk is the number of keys per pipeline of a flush.
	flushChunk = 1000

	// pubsubQuiet is how long the channel may stay silent before the
	// subscription is pinged. A network cut without a reset (a node lost,
	// Redis moved to another address, a NAT or firewall entry dropped)
	// leaves a socket that reads nothing and reports no error for as long
	// as TCP keepalives take to give up (minutes): the PING's answer is
	// what proves the subscription alive. One PING a second per replica.
	pubsubQuiet = time.Second

	// restartMin and restartMax bound the pause before a background loop
	// that panicked is started again (doubling while it keeps panicking).
	restartMin = 100 * time.Millisecond
	restartMax = 5 * time.Second
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

	lists *ipfilter.Lists
	guard *ddos.Guard

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
	_ ratelimit.Remote = (*Node)(nil)
	_ ddos.Sharer      = (*Node)(nil)
	_ ipfilter.Sync    = (*Node)(nil)
)

type keys struct {
	rl, rlRoute, dd, blocks, channel, version, marker string
	list                                              [2]string // by ipfilter.Kind
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
		list:    [2]string{ipfilter.Allow: p + ":list:whitelist", ipfilter.Deny: p + ":list:blacklist"},
	}
}

// change is one change kept for replay after an outage.
type change struct {
	kind  ipfilter.Kind
	p     netip.Prefix
	add   bool
	block bool // an unblock of p.Addr() (kind/add unused)
}

func (c change) String() string {
	switch {
	case c.block:
		return "unblock " + c.p.Addr().String()
	case c.add:
		return "add " + c.kind.String() + " " + c.p.String()
	default:
		return "del " + c.kind.String() + " " + c.p.String()
	}
}

type countShard struct {
	mu sync.Mutex
	m  map[netip.Addr]uint32
	_  [40]byte // keep shards on separate cache lines
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
	if o.Registerer != nil {
		for _, c := range []prometheus.Collector{n.fallbacks, n.degradedG} {
			if err := o.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("cluster: registering metrics: %w", err)
			}
		}
	}
	return n, nil
}

// Degraded reports whether the replica runs on local state now.
func (n *Node) Degraded() bool { return !n.br.Closed() }

// Attach gives the node the lists and the guard remote changes apply to.
// The lists' current entries (IP_WHITELIST / IP_BLACKLIST) are added to the
// shared lists at Start.
func (n *Node) Attach(lists *ipfilter.Lists, guard *ddos.Guard) {
	n.lists, n.guard = lists, guard
	for _, k := range []ipfilter.Kind{ipfilter.Allow, ipfilter.Deny} {
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

// supervise runs one background loop until ctx ends. A panic in it is
// logged with its stack and the loop started again after a pause (doubling
// from restartMin to restartMax while it keeps panicking): the replica
// goes on sharing state instead of the process dying, and the restarted
// loop resyncs in full, since what the panic interrupted is unknown.
func (n *Node) supervise(ctx context.Context, name string, run func(context.Context)) {
	pause := restartMin
	for {
		began := time.Now()
		if !n.runRecovered(ctx, name, run) || ctx.Err() != nil {
			return // run returns only when ctx ends
		}
		if time.Since(began) > time.Minute {
			pause = restartMin // an old panic: start again quickly
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, restartMax)
		n.forceSync.Store(true)
	}
}

// runRecovered runs run and reports whether it panicked.
func (n *Node) runRecovered(ctx context.Context, name string, run func(context.Context)) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			n.log.Error("cluster background loop panicked: restarting it", "loop", name,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	run(ctx)
	return false
}

// fail opens the breaker; the first failure of an outage logs a warning
// (OnOpen, in New). After Close, failures are the shutdown's own (the
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

// Allow runs the shared GCRA for key (ratelimit.Remote). It never blocks
// longer than OpTimeout and answers ok=false while Redis is unavailable.
func (n *Node) Allow(ctx context.Context, scope string, key netip.Addr, interval, tau time.Duration) (ratelimit.Decision, bool) {
	if !n.br.Closed() {
		n.fallbacks.Inc()
		return ratelimit.Decision{}, false
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
			return ratelimit.Decision{}, false
		}
		if isOutage(ctx, err) {
			n.fail(err)
		}
		n.fallbacks.Inc()
		return ratelimit.Decision{}, false
	}
	return ratelimit.Decision{
		Allowed:    res[0] == 1,
		Remaining:  int(res[1]),
		Reset:      time.Duration(res[2]) * time.Microsecond,
		RetryAfter: time.Duration(res[3]) * time.Microsecond,
	}, true
}

// Count records a counted request of key for the next flush (ddos.Sharer).
func (n *Node) Count(key netip.Addr) {
	if !n.br.Closed() {
		return // the local guard counts alone during an outage
	}
	s := &n.counts[shardOf(key)]
	s.mu.Lock()
	if v, ok := s.m[key]; ok {
		s.m[key] = v + 1
	} else if len(s.m) < maxCountsPerShard {
		s.m[key] = 1
	}
	s.mu.Unlock()
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % countShards)
}

// Unblocked lifts key's block everywhere (ddos.Sharer): called by the admin
// API's DELETE /admin/blocked after the local guard lifted it.
func (n *Node) Unblocked(key netip.Addr) {
	n.share(change{p: netip.PrefixFrom(key, key.BitLen()), block: true})
}

func (n *Node) unblockRemote(ctx context.Context, key netip.Addr) error {
	ip := keyText(key)
	return n.unblockLua.Run(ctx, n.rdb, []string{n.keys.blocks, n.keys.dd + ip}, ip, n.keys.channel).Err()
}

// ListChanged writes a list change made through the admin API to Redis and
// publishes it (ipfilter.Sync). During an outage it is kept and replayed
// when Redis is back.
func (n *Node) ListChanged(k ipfilter.Kind, p netip.Prefix, added bool) {
	n.share(change{kind: k, p: p, add: added})
}

// share writes c to Redis now, or keeps it for replay while the replica is
// degraded. After Close it applies locally only (the replica is shutting
// down; nothing is left to replay it).
func (n *Node) share(c change) {
	for !n.queue(c) {
		if n.closed.Load() {
			n.log.Debug("change after close not shared", "change", c.String())
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.o.BackgroundTimeout)
		err := n.writeChange(ctx, c)
		cancel()
		if err == nil {
			return
		}
		n.fail(err) // then queued, unless a recovery already ended the outage (or Close came)
	}
}

// queue keeps c for replay and reports true while the replica is degraded;
// false when it is not (write c now). Checked under pmu, which recover
// holds to end an outage: a change is either queued before the last replay
// or written directly, never queued after it.
func (n *Node) queue(c change) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if n.br.Closed() {
		return false
	}
	n.fallbacks.Inc()
	if len(n.pending) >= maxPending {
		n.pending = n.pending[1:] // the oldest goes; a resync is still ahead
	}
	n.pending = append(n.pending, c)
	return true
}

func (n *Node) writeChange(ctx context.Context, c change) error {
	if c.block {
		return n.unblockRemote(ctx, c.p.Addr())
	}
	op, v := "del", c.p.String()
	_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if c.add {
			op = "add"
			p.SAdd(ctx, n.keys.list[c.kind], v)
		} else {
			p.SRem(ctx, n.keys.list[c.kind], v)
		}
		p.Incr(ctx, n.keys.version)
		p.Publish(ctx, n.keys.channel, "list "+op+" "+c.kind.String()+" "+v)
		return nil
	})
	return err
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

// reseed pushes this replica's lists when Redis has none at all (a Redis
// restarted without persistence, or the first replica ever): the replicas
// had converged before the outage, so any one of them holds the lists.
//
// A replica that has not loaded the shared lists yet holds only its boot
// entries: when it finds Redis empty (Redis restarted along with it, as
// when a node dies), the replicas that hold the lists must seed it, or
// their resync would replace every admin change with its boot entries. It
// waits one resync period for them, and seeds only if none did (the first
// replica of a new cluster). Its boot entries are replayed either way.
func (n *Node) reseed(ctx context.Context) error {
	if !n.holdsLists {
		if n.seedWait.IsZero() {
			n.seedWait = time.Now()
		}
		if time.Since(n.seedWait) < n.o.ResyncEvery {
			return nil
		}
	}
	ok, err := n.rdb.SetNX(ctx, n.keys.marker, "1", 0).Result()
	if err != nil || !ok {
		return err
	}
	_, err = n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range []ipfilter.Kind{ipfilter.Allow, ipfilter.Deny} {
			es := n.lists.Entries(k)
			if len(es) == 0 {
				continue
			}
			vals := make([]any, len(es))
			for i, e := range es {
				vals[i] = e.String()
			}
			p.SAdd(ctx, n.keys.list[k], vals...)
		}
		p.Incr(ctx, n.keys.version)
		return nil
	})
	if err == nil {
		n.holdsLists = true
		n.log.Info("shared lists were empty in Redis: seeded them from this replica",
			"whitelist", n.lists.Len(ipfilter.Allow), "blacklist", n.lists.Len(ipfilter.Deny))
	}
	return err
}

// resync makes the local lists equal to Redis's (when their version moved
// since the last resync) and applies every block in force.
func (n *Node) resync(ctx context.Context) error {
	if err := n.reseed(ctx); err != nil {
		return err
	}
	vm, err := n.rdb.MGet(ctx, n.keys.version, n.keys.marker).Result()
	if err != nil {
		return err
	}
	ver, _ := vm[0].(string)
	_, initialised := vm[1].(string)
	if ver != n.lastVersion || ver == "" {
		var members [2]*redis.StringSliceCmd
		var v *redis.StringCmd
		// MULTI: both sets and their version read at one instant.
		if _, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range []ipfilter.Kind{ipfilter.Allow, ipfilter.Deny} {
				members[k] = p.SMembers(ctx, n.keys.list[k])
			}
			v = p.Get(ctx, n.keys.version)
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, k := range []ipfilter.Kind{ipfilter.Allow, ipfilter.Deny} {
			ps := make([]netip.Prefix, 0, len(members[k].Val()))
			for _, s := range members[k].Val() {
				if p, err := netip.ParsePrefix(s); err == nil {
					ps = append(ps, p)
				}
			}
			if n.lists.Replace(k, ps) {
				n.log.Debug("list resynced from redis", "list", k.String(), "entries", len(ps))
			}
		}
		n.lastVersion = v.Val()
	}
	if initialised {
		n.holdsLists = true // the lists just read are the cluster's
	}
	nowMS := time.Now().UnixMilli()
	blocks, err := n.rdb.ZRangeByScoreWithScores(ctx, n.keys.blocks, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(nowMS, 10), Max: "+inf",
	}).Result()
	if err != nil {
		return err
	}
	for _, z := range blocks {
		if s, ok := z.Member.(string); ok {
			n.applyBlock(s, int64(z.Score))
		}
	}
	return nil
}

func (n *Node) applyBlock(ip string, untilMS int64) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	n.guard.Block(a, time.UnixMilli(untilMS))
}

// receive reads the channel and hands every message to the loop, in order.
// A (re)subscription forces a resync: messages may have been missed.
//
// A subscription silent for pubsubQuiet is pinged; one whose answer does
// not come within BackgroundTimeout is dead (the network dropped it
// without a reset, so no read ever fails) and is replaced by a new one.
// ps nil: subscribe first.
func (n *Node) receive(ctx context.Context, ps *redis.PubSub) {
	if ps == nil {
		ps = n.rdb.Subscribe(ctx, n.keys.channel)
	}
	defer func() { _ = ps.Close() }()
	lastRead := time.Now() // of anything: a message, a confirmation, a pong
	var pinged time.Time   // zero: no ping awaiting its answer
	warned := false        // this silence was logged at warn already
	for ctx.Err() == nil {
		wait := time.Until(lastRead.Add(pubsubQuiet))
		if !pinged.IsZero() {
			wait = time.Until(pinged.Add(n.o.BackgroundTimeout))
		}
		msg, err := ps.ReceiveTimeout(ctx, max(wait, time.Millisecond))
		if n.hook != nil {
			n.hook("receive")
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				n.fail(err)
				select { // go-redis redials on the next receive
				case <-ctx.Done():
					return
				case <-time.After(n.o.ProbeEvery):
				}
				lastRead, pinged = time.Now(), time.Time{}
				continue
			}
			now := time.Now()
			switch {
			case pinged.IsZero() && now.Sub(lastRead) >= pubsubQuiet:
				pctx, cancel := context.WithTimeout(ctx, n.o.BackgroundTimeout)
				err := ps.Ping(pctx)
				cancel()
				pinged = now
				if err == nil {
					continue
				}
				fallthrough // a subscription that cannot even send is dead too
			case !pinged.IsZero() && now.Sub(pinged) >= n.o.BackgroundTimeout:
				silent := now.Sub(lastRead).Round(time.Millisecond).String()
				if !warned {
					warned = true
					n.log.Warn("redis subscription silent: resubscribing on a new connection",
						"redis", n.o.Redis.String(), "silent_for", silent)
				} else {
					n.log.Debug("redis subscription still silent: resubscribing", "silent_for", silent)
				}
				_ = ps.Close()
				ps = n.rdb.Subscribe(ctx, n.keys.channel)
				n.forceSync.Store(true) // what was published meanwhile is lost
				lastRead, pinged = time.Now(), time.Time{}
			}
			continue
		}
		lastRead, pinged = time.Now(), time.Time{}
		switch m := msg.(type) {
		case *redis.Subscription:
			if warned {
				warned = false
				n.log.Info("redis subscription restored", "redis", n.o.Redis.String())
			}
			n.forceSync.Store(true)
		case *redis.Message:
			select {
			case n.events <- m.Payload:
			default:
				// The loop is behind: a resync catches up.
				n.forceSync.Store(true)
			}
		}
	}
}

// loop applies messages, flushes DDoS counts, resyncs, and probes Redis
// during an outage: one goroutine, so resyncs and messages apply in order.
func (n *Node) loop(ctx context.Context) {
	flush := time.NewTicker(n.o.FlushEvery)
	resync := time.NewTicker(n.o.ResyncEvery)
	probe := time.NewTicker(n.o.ProbeEvery)
	defer flush.Stop()
	defer resync.Stop()
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-n.events:
			n.apply(ev)
		case <-flush.C:
			if n.hook != nil {
				n.hook("loop")
			}
			if n.br.Closed() {
				n.bg(ctx, n.flush)
			}
			if n.forceSync.Load() && n.br.Closed() {
				n.forceSync.Store(false)
				n.lastVersion = ""
				n.bg(ctx, n.resync)
			}
		case <-resync.C:
			if n.br.Closed() {
				n.bg(ctx, n.resync)
			}
		case <-probe.C:
			n.probe(ctx) // nothing to do unless degraded
		}
	}
}

// bg runs a background call with its deadline; a failure opens the breaker.
func (n *Node) bg(ctx context.Context, f func(context.Context) error) {
	cctx, cancel := context.WithTimeout(ctx, n.o.BackgroundTimeout)
	defer cancel()
	if err := f(cctx); err != nil && ctx.Err() == nil {
		n.fail(err)
	}
}

// apply applies one published change to the local state.
func (n *Node) apply(ev string) {
	f := strings.Fields(ev)
	switch {
	case len(f) == 4 && f[0] == "list":
		var k ipfilter.Kind
		switch f[2] {
		case ipfilter.Allow.String():
			k = ipfilter.Allow
		case ipfilter.Deny.String():
			k = ipfilter.Deny
		default:
			return
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil {
			return
		}
		n.lists.Apply(k, p, f[1] == "add")
	case len(f) == 3 && f[0] == "block":
		if ms, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			n.applyBlock(f[1], ms)
		}
	case len(f) == 2 && f[0] == "unblock":
		if a, err := netip.ParseAddr(f[1]); err == nil {
			n.guard.Lift(a)
		}
	}
}

// flush sends the DDoS counts gathered since the last flush, pipelined;
// the script blocks and publishes keys over the threshold.
func (n *Node) flush(ctx context.Context) error {
	type kv struct {
		k netip.Addr
		v uint32
	}
	var batch []kv
	for i := range n.counts {
		s := &n.counts[i]
		s.mu.Lock()
		if len(s.m) == 0 {
			s.mu.Unlock()
			continue
		}
		m := s.m
		s.m = make(map[netip.Addr]uint32, len(m))
		s.mu.Unlock()
		for k, v := range m {
			batch = append(batch, kv{k, v})
		}
	}
	blockMS := n.o.BlockDuration.Milliseconds()
	for len(batch) > 0 {
		chunk := batch[:min(len(batch), flushChunk)]
		batch = batch[len(chunk):]
		cmds, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range chunk {
				ip := keyText(c.k)
				n.flushDDoS.EvalSha(ctx, p, []string{n.keys.dd + ip, n.keys.blocks},
					c.v, n.o.DDoSThreshold, blockMS, ip, n.keys.channel)
			}
			return nil
		})
		for i, cmd := range cmds {
			// This replica's counts completed a block: it counts it, once
			// in the cluster. (The block arrives on the channel after this
			// loop iteration, as for every replica.)
			if c, ok := cmd.(*redis.Cmd); ok && i < len(chunk) {
				if until, err := c.Int64(); err == nil && until > 0 {
					n.guard.NoteBlock(chunk[i].k, time.UnixMilli(until))
				}
			}
		}
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOSCRIPT") {
				return n.flushDDoS.Load(ctx, n.rdb).Err() // this batch is lost; the next one goes
			}
			return err
		}
	}
	return nil
}

// keyText is the Redis spelling of a client key: the IPv4 address, or the
// network address of an IPv6 client's /64.
func keyText(a netip.Addr) string { return a.String() }

// Package flood counts each client's requests in a sliding minute and
// blocks a client that sends more than DDOS_THRESHOLD of them for
// BLOCK_DURATION. The step that answers 429 is internal/middleware/ddos;
// the admin API lists and lifts blocks, and cluster mode shares counts and
// blocks between replicas.
//
// Counters and blocks are kept apart. Counters (two one-minute counts per
// client key) live in a table capped at MAX_TRACKED_IPS, where a client
// spraying addresses evicts the least recently seen. Blocks live in their
// own capped table that only blocking writes to, so no amount of churn in
// the counters can lift a block early; when that table is full, the block
// expiring soonest is dropped (counted in blocked_ips_dropped_total and
// logged).
package flood

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/iptrack"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Defaults of Config.
const (
	DefaultMaxBlocks  = 65536
	DefaultSweepEvery = 10 * time.Second
	// blocksPerShard keeps shards of the block table large, so "the block
	// expiring soonest" is dropped among at least this many.
	blocksPerShard = 1024
	// BlockLogsPerMinute bounds the "ip blocked" lines; the rest are
	// counted and reported in the next line.
	BlockLogsPerMinute = 100
)

// Config configures a Guard.
type Config struct {
	// Threshold is DDOS_THRESHOLD: more requests than this in a sliding
	// minute block the client. Required, ≥ 1.
	Threshold int
	// BlockDuration is BLOCK_DURATION. Required, > 0.
	BlockDuration time.Duration
	// MaxTrackedIPs caps the counters (MAX_TRACKED_IPS, default 262144,
	// about 80 bytes each when full).
	MaxTrackedIPs int
	// MaxBlocks caps the blocks (default 65536, about 80 bytes each). The
	// block table is sharded by 1024 blocks, so at capacity the block
	// expiring soonest among those of its shard is the one dropped.
	MaxBlocks int
	// Log is the base logger (nil: discard); component "ddos" is added.
	Log *slog.Logger
	// Registerer receives blocked_ips_total, blocked_ips,
	// blocked_ips_dropped_total and tracked_ips{table="ddos"} (nil: none).
	Registerer prometheus.Registerer
	// Now is the clock; tests advance a fake one. Nil (the default) takes
	// a request's time from request.Info.Start, which the envelope read on
	// arrival, so the hot path reads no clock; elsewhere time.Now.
	Now func() time.Time
	// SweepEvery is Run's period (default DefaultSweepEvery).
	SweepEvery time.Duration
	// Share, when set (CLUSTER_MODE=redis), is told of every counted
	// request and of every block lifted through Unblock, so replicas count
	// and block together (internal/cluster). Blocks decided elsewhere come
	// back through Block and Lift. Nil (the default): this process alone.
	Share Sharer
}

// Sharer shares the guard's counts and unblocks with other replicas.
type Sharer interface {
	// Count records one counted request of key. It runs on the request
	// path: it must not block.
	Count(key netip.Addr)
	// Unblocked reports a block of key lifted by the admin API.
	Unblocked(key netip.Addr)
}

// window counts a client's requests in the current and the previous
// minute; the sliding-minute estimate weights the previous one by how much
// of it still lies within the last 60 seconds (it assumes the previous
// minute's requests were evenly spread, as Cloudflare's and nginx-style
// sliding windows do).
type window struct {
	minute    uint32 // minute of cur, counted from the guard's epoch
	cur, prev uint32
	until     int64 // end of the client's block, ns since the guard's epoch
}

// Guard holds the counters and the blocks.
type Guard struct {
	threshold int64
	blockFor  int64 // ns
	log       *slog.Logger
	now       func() time.Time
	arrival   bool // take a request's time from request.Info.Start
	epoch     time.Time
	every     time.Duration

	counters *iptrack.Table[window]
	blocks   *iptrack.Table[int64] // client key -> end of block, ns since epoch

	blockedTotal prometheus.Counter
	exemptLog    *iptrack.Throttle
	blockLog     budget
	dropLog      budget
	dropSeen     atomic.Uint64
	share        Sharer
}

// New returns a guard.
func New(c Config) (*Guard, error) {
	var errs []error
	if c.Threshold < 1 {
		errs = append(errs, fmt.Errorf("ddos: threshold %d: expected an integer >= 1", c.Threshold))
	}
	if c.BlockDuration <= 0 {
		errs = append(errs, fmt.Errorf("ddos: block duration %v: expected a duration > 0", c.BlockDuration))
	}
	if c.MaxTrackedIPs < 0 || c.MaxBlocks < 0 {
		errs = append(errs, fmt.Errorf("ddos: MaxTrackedIPs %d / MaxBlocks %d: must not be negative", c.MaxTrackedIPs, c.MaxBlocks))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if c.MaxTrackedIPs == 0 {
		c.MaxTrackedIPs = iptrack.DefaultMaxEntries
	}
	if c.MaxBlocks == 0 {
		c.MaxBlocks = DefaultMaxBlocks
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	arrival := c.Now == nil
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.SweepEvery <= 0 {
		c.SweepEvery = DefaultSweepEvery
	}
	g := &Guard{
		arrival:   arrival,
		threshold: int64(c.Threshold),
		blockFor:  int64(c.BlockDuration),
		log:       telemetry.Component(c.Log, "ddos"),
		now:       c.Now,
		epoch:     c.Now(),
		every:     c.SweepEvery,
		// After two idle minutes both counts are zero: dropping the
		// counter then loses nothing.
		counters: iptrack.New[window](iptrack.Options{MaxEntries: c.MaxTrackedIPs, IdleTTL: 2 * time.Minute}),
		// Blocks are written once and never marked seen again, so their
		// LRU order is their expiry order and the idle TTL is the block.
		blocks: iptrack.New[int64](iptrack.Options{
			MaxEntries: c.MaxBlocks,
			Shards:     1 << (bits.Len(uint(max(c.MaxBlocks/blocksPerShard, 1))) - 1),
			IdleTTL:    c.BlockDuration,
		}),
		exemptLog: iptrack.NewThrottle(time.Minute, 1024, 100),
		blockLog:  budget{max: BlockLogsPerMinute},
		dropLog:   budget{max: 1},
		share:     c.Share,
	}
	if err := g.register(c.Registerer); err != nil {
		return nil, fmt.Errorf("ddos: registering metrics: %w", err)
	}
	return g, nil
}

func (g *Guard) register(reg prometheus.Registerer) error {
	g.blockedTotal = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "blocked_ips_total",
		Help: "Client IPs (IPv6 per /64) blocked for exceeding DDOS_THRESHOLD requests in a minute; one per block.",
	})
	if reg == nil {
		return nil
	}
	var err error
	if g.blockedTotal, err = telemetry.Register(reg, g.blockedTotal); err != nil {
		return err
	}
	return errors.Join(
		iptrack.Register(reg,
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "blocked_ips",
				Help: "Client IPs (IPv6 per /64) currently blocked by the DDoS guard.",
			}, func() float64 { return float64(g.BlockedCount()) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "blocked_ips_dropped_total",
				Help: "Blocks dropped before their end because the block table was full (the block expiring soonest goes first).",
			}, func() float64 { return float64(g.blocks.Evictions()) }),
		),
		iptrack.RegisterMetrics(reg, "ddos", g.counters.Len, g.counters.Evictions),
	)
}

// Who names the client behind a counted request, for the log lines.
type Who struct {
	ClientIP  string // as resolved (the key is its /64 for IPv6)
	RequestID string
}

// At is the time to count a request at: its arrival (read once by the
// envelope) when the guard has no clock of its own, else the clock.
func (g *Guard) At(arrival time.Time) time.Time {
	if g.arrival && !arrival.IsZero() {
		return arrival
	}
	return g.now()
}

// Hit counts a request of key (a client key, realip.Key) at now. It returns
// whether the client is refused, and for how long its block lasts: a
// blocked client is refused before it is counted, so its count starts from
// zero when the block ends; the request that crosses the threshold starts
// the block (counted in blocked_ips_total and logged) and is refused too.
func (g *Guard) Hit(ctx context.Context, key netip.Addr, now time.Time, who Who) (refused bool, left time.Duration) {
	t := int64(now.Sub(g.epoch))
	var (
		state   int // passed, refused or newBlock
		until   int64
		count   float64
		checked = g.blocks.Len() > 0
	)
	// The counter holds the block's end too, so requests racing the one that
	// crossed the threshold are refused as well. A counter created afresh
	// (first request, or evicted by churn) takes a block from the block
	// table. Lock order: counters, then blocks.
	g.counters.Do(key, now, func(c *window, isNew bool) {
		if isNew && checked {
			if u, ok := g.blocks.Peek(key); ok {
				c.until = u
			}
		}
		if c.until > t {
			state, until = refusedState, c.until
			return
		}
		var over bool
		if over, count = g.count(c, t); over {
			c.until = t + g.blockFor
			state, until = newBlock, c.until
		}
	})
	if state != refusedState && g.share != nil {
		g.share.Count(key)
	}
	switch state {
	case refusedState:
		return true, time.Duration(until - t)
	case newBlock:
		g.blocks.Do(key, now, func(v *int64, _ bool) { *v = until })
		g.blockedTotal.Inc()
		g.logBlock(ctx, who, key, count, until)
		g.checkDropped(ctx, now)
		return true, time.Duration(until - t)
	}
	return false, 0
}

const (
	passed = iota
	refusedState
	newBlock
)

// count adds a request at t to c and reports whether the client is now over
// the threshold (then c starts again from zero) and its sliding-minute count.
// The arithmetic is in integer milliseconds, so a client exactly at the
// threshold is not pushed over it by float rounding.
func (g *Guard) count(c *window, t int64) (bool, float64) {
	t = max(t, 0)
	m := uint32(t / int64(time.Minute))
	switch m {
	case c.minute:
	case c.minute + 1:
		c.prev, c.cur = c.cur, 0
	default: // idle for over a minute, or the clock went back
		c.prev, c.cur = 0, 0
	}
	c.minute = m
	if c.cur < math.MaxUint32 {
		c.cur++
	}
	const minuteMS = int64(time.Minute / time.Millisecond)
	// The part of the previous minute still within the last 60 seconds.
	// Rounded down: rounding never pushes a client over.
	leftMS := (int64(time.Minute) - (t - int64(m)*int64(time.Minute))) / int64(time.Millisecond)
	scaled := int64(c.cur)*minuteMS + int64(c.prev)*leftMS
	if scaled > g.threshold*minuteMS {
		c.cur, c.prev = 0, 0
		return true, float64(scaled) / float64(minuteMS)
	}
	return false, float64(scaled) / float64(minuteMS)
}

// Block is one current block. IP is the client key: an IPv4 address, or the
// network address of an IPv6 client's /64 (see Prefix).
type Block struct {
	IP    netip.Addr
	Until time.Time
}

// Prefix is what the block covers: IP/32 or IP/64.
func (b Block) Prefix() netip.Prefix {
	if b.IP.Is4() {
		return netip.PrefixFrom(b.IP, 32)
	}
	return netip.PrefixFrom(b.IP, 64)
}

// Blocked returns the blocks in force at now, sorted by IP.
func (g *Guard) Blocked(now time.Time) []Block {
	t := int64(now.Sub(g.epoch))
	var out []Block
	g.blocks.Range(func(key netip.Addr, until *int64) bool {
		if *until > t {
			out = append(out, Block{IP: key, Until: g.epoch.Add(time.Duration(*until)).Round(0)})
		}
		return true
	})
	slices.SortFunc(out, func(a, b Block) int { return a.IP.Compare(b.IP) })
	return out
}

// BlockedCount is the number of blocks in force now.
func (g *Guard) BlockedCount() int {
	t := int64(g.now().Sub(g.epoch))
	n := 0
	g.blocks.Range(func(_ netip.Addr, until *int64) bool {
		if *until > t {
			n++
		}
		return true
	})
	return n
}

// Unblock lifts the block of ip (any address; it is keyed like requests,
// IPv6 per /64) and resets its counter. It reports whether a block was in
// force.
func (g *Guard) Unblock(ip netip.Addr) bool {
	key := realip.Key(ip.Unmap())
	lifted := g.Lift(key)
	if g.share != nil {
		g.share.Unblocked(key)
	}
	return lifted
}

// Lift is Unblock without telling the Sharer: it applies an unblock made
// on another replica. key is a client key (realip.Key).
func (g *Guard) Lift(key netip.Addr) bool {
	t := int64(g.now().Sub(g.epoch))
	until, ok := g.blocks.Peek(key)
	g.blocks.Delete(key)
	g.counters.Delete(key)
	return ok && until > t
}

// Block blocks key (a client key, realip.Key) until until, unless it is
// already blocked at least that long: it applies a block made on another
// replica, so it neither counts in blocked_ips_total nor logs. It reports
// whether it changed anything.
func (g *Guard) Block(key netip.Addr, until time.Time) bool {
	now := g.now()
	u, t := int64(until.Sub(g.epoch)), int64(now.Sub(g.epoch))
	if u <= t {
		return false
	}
	changed := false
	g.counters.Do(key, now, func(c *window, _ bool) {
		if c.until < u {
			c.until, c.cur, c.prev = u, 0, 0
		}
	})
	g.blocks.Do(key, now, func(v *int64, _ bool) {
		if *v < u {
			*v, changed = u, true
		}
	})
	return changed
}

// NoteBlock counts (blocked_ips_total) and logs a block that this
// replica's counts completed in the shared store (cluster mode), unless
// this guard already blocked key on its own count. The block itself
// arrives through Block, on every replica.
func (g *Guard) NoteBlock(key netip.Addr, until time.Time) {
	now := g.now()
	if u, ok := g.blocks.Peek(key); ok && u > int64(now.Sub(g.epoch)) {
		return // counted when this guard made it
	}
	g.blockedTotal.Inc()
	ok, suppressed := g.blockLog.allow(now)
	if !ok || !g.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{slog.String("client_ip", key.String()), slog.Time("until", until), slog.Bool("cluster", true)}
	if key.Is6() {
		attrs = append(attrs, slog.String("blocked", netip.PrefixFrom(key, 64).String()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("blocks_not_logged", suppressed))
	}
	g.log.LogAttrs(context.Background(), slog.LevelWarn, "ip blocked", attrs...)
}

// Sweep removes idle counters and expired blocks.
func (g *Guard) Sweep(now time.Time) {
	g.counters.Sweep(now)
	g.blocks.Sweep(now)
	g.exemptLog.Sweep(now)
}

// Run sweeps every SweepEvery until ctx ends.
func (g *Guard) Run(ctx context.Context) {
	iptrack.SweepLoop(ctx, g.every, g.log, func() { g.Sweep(g.now()) })
}

// Tracked is the number of counters held.
func (g *Guard) Tracked() int { return g.counters.Len() }

// Evictions counts counters dropped at capacity (least recently seen
// first): a spray of addresses shows here, and never lifts a block.
func (g *Guard) Evictions() uint64 { return g.counters.Evictions() }

// Blocks is the number of block entries held, in force or expired but not
// yet swept.
func (g *Guard) Blocks() int { return g.blocks.Len() }

// NoteExempt warns, once a minute per proxy, that a trusted proxy is
// itself the client: it sent no usable X-Forwarded-For, so TRUSTED_PROXIES
// or the proxy is misconfigured. Such a client is never blocked, since
// that would block everyone behind it.
func (g *Guard) NoteExempt(ctx context.Context, client netip.Addr, now time.Time, who Who) {
	if !g.log.Enabled(ctx, slog.LevelWarn) || !g.exemptLog.Allow(client, now) {
		return
	}
	g.log.LogAttrs(ctx, slog.LevelWarn, "trusted proxy is the client; it is rate-limited as one client but never DDoS-blocked",
		slog.String("client_ip", who.ClientIP), slog.String("request_id", who.RequestID),
		slog.String("hint", "the proxy sent no X-Forwarded-For: check the proxy and TRUSTED_PROXIES"))
}

func (g *Guard) logBlock(ctx context.Context, who Who, key netip.Addr, count float64, until int64) {
	ok, suppressed := g.blockLog.allow(g.now())
	if !ok || !g.log.Enabled(ctx, slog.LevelWarn) {
		return
	}
	attrs := []slog.Attr{
		slog.String("client_ip", who.ClientIP),
		slog.Int64("count", int64(math.Round(count))),
		slog.Time("until", g.epoch.Add(time.Duration(until)).Round(0)),
		slog.String("request_id", who.RequestID),
	}
	if key.Is6() {
		attrs = append(attrs, slog.String("blocked", netip.PrefixFrom(key, 64).String()))
	}
	if suppressed > 0 {
		attrs = append(attrs, slog.Int64("blocks_not_logged", suppressed))
	}
	g.log.LogAttrs(ctx, slog.LevelWarn, "ip blocked", attrs...)
}

// checkDropped logs, at most once a minute, that full block table dropped
// blocks to make room.
func (g *Guard) checkDropped(ctx context.Context, now time.Time) {
	n := g.blocks.Evictions()
	if n == g.dropSeen.Load() {
		return
	}
	prev := g.dropSeen.Swap(n)
	if n <= prev {
		return
	}
	if ok, _ := g.dropLog.allow(now); ok {
		g.log.LogAttrs(ctx, slog.LevelWarn, "block table full: dropped the blocks expiring soonest",
			slog.Uint64("dropped_total", n), slog.Int("max_blocks", g.blocks.Cap()))
	}
}

// budget allows max events per minute and counts the ones it refused.
type budget struct {
	max int64

	mu         sync.Mutex // taken per block, not per request
	start      time.Time
	n, refused int64
}

// allow reports whether an event at now may be logged, and how many were
// refused since the last one allowed.
func (b *budget) allow(now time.Time) (bool, int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if now.Sub(b.start) >= time.Minute || now.Before(b.start) {
		b.start, b.n = now, 0
	}
	if b.n >= b.max {
		b.refused++
		return false, 0
	}
	b.n++
	refused := b.refused
	b.refused = 0
	return true, refused
}

package accesslog

import (
	"context"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/bits"
	"net/http"
	"net/netip"
	"runtime/debug"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/iptrack"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// SummaryEvery is how often the sampler writes its summary lines. It is
// fixed: the summary is also written when Run's context ends, so nothing
// counted is lost at shutdown.
const SummaryEvery = time.Minute

// samplerShards is the number of locks the per-client table is split into.
const samplerShards = 64

// sampled reports whether the access lines of answers with status are
// subject to sampling: the edge's rejections (deny list, DDoS guard, rate
// limits), which a single client can make as fast as it can send.
func sampled(status int) bool {
	return status == http.StatusForbidden || status == http.StatusTooManyRequests
}

// Clock is the sampler's time source; tests drive a fake one.
type Clock interface {
	Now() time.Time
	// NewTicker returns a channel that receives the time every d, and the
	// function that stops it.
	NewTicker(d time.Duration) (<-chan time.Time, func())
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTicker(d time.Duration) (<-chan time.Time, func()) {
	t := time.NewTicker(d)
	return t.C, t.Stop
}

// SamplerConfig configures a Sampler.
type SamplerConfig struct {
	// Rate is ACCESS_LOG_REJECT_RATE: access lines a second per client for
	// 403 and 429 answers; beyond it lines are counted, not written. 0
	// writes every line and keeps no state.
	Rate int
	// MaxTrackedIPs caps the clients with a budget of their own
	// (MAX_TRACKED_IPS; default iptrack.DefaultMaxEntries). The clients
	// beyond it share one budget of Rate lines a second, so a spray of
	// source addresses neither grows memory nor escapes the limit.
	MaxTrackedIPs int
	// Log is the base logger (nil: discard); component "gateway" is added,
	// as on the access lines.
	Log *slog.Logger
	// Registerer receives access_log_suppressed_total (nil: none).
	Registerer prometheus.Registerer
	// Clock is the time source (nil: the system clock).
	Clock Clock
}

// Sampler decides which access lines of 403 and 429 answers are written: at
// most Rate a second for each client key (the client IP, IPv6 per /64, as
// realip.Key). The others are counted, and once every SummaryEvery one
// line per client that had lines suppressed reports how many. Safe for
// concurrent use. A nil *Sampler writes every line.
type Sampler struct {
	rate       int64
	clock      Clock
	epoch      time.Time
	log        *slog.Logger
	suppressed prometheus.Counter

	seed   maphash.Seed
	shift  uint // 64 - log2(len(shards))
	shards []tallyShard

	// overflow is the budget shared by the clients a full shard has no
	// room for.
	overflow struct {
		mu sync.Mutex
		t  tally
	}

	flushMu sync.Mutex // serialises flush
	start   time.Time  // start of the current window; guarded by flushMu

	// onFlush, when set (tests), is called after each flush of Run.
	onFlush func()
}

// tally is one client's sampling state.
type tally struct {
	sec    int64 // the second (since the sampler's epoch) that n counts
	n      int64 // lines written in sec
	logged int64 // lines written in the current window
	// by status: 403, 429; only sampled statuses reach a tally.
	suppressed [2]int64
}

func statusSlot(status int) int {
	if status == http.StatusTooManyRequests {
		return 1
	}
	return 0
}

var slotStatus = [2]string{strconv.Itoa(http.StatusForbidden), strconv.Itoa(http.StatusTooManyRequests)}

// take reports whether a line may be written in second sec and counts it.
// A second that went backwards (two requests reading the clock in one
// order and reaching here in the other) counts in the newer second.
func (t *tally) take(sec, rate int64, status int) bool {
	if sec > t.sec {
		t.sec, t.n = sec, 0
	}
	if t.n < rate {
		t.n++
		t.logged++
		return true
	}
	t.suppressed[statusSlot(status)]++
	return false
}

func (t *tally) total() int64 { return t.suppressed[0] + t.suppressed[1] }

// key is a client key in 16 bytes, with no pointer, so the index maps are
// never scanned by the garbage collector.
type key [16]byte

// tallyShard holds the tallies of the keys hashed to it: an index into a
// slice, so a lookup is one map access and the tally is updated in place.
// The whole shard is rebuilt at each flush, keeping only the clients
// active in the current second, which gives memory back after a spray (Go
// maps never shrink).
type tallyShard struct {
	mu      sync.Mutex
	index   map[key]int32
	keys    []key
	tallies []tally
	cap     int
	_       [64]byte // keep neighbouring shards' locks off one cache line
}

// NewSampler returns a sampler and registers its counter.
func NewSampler(c SamplerConfig) (*Sampler, error) {
	if c.Rate < 0 || c.MaxTrackedIPs < 0 {
		return nil, fmt.Errorf("accesslog: Rate %d / MaxTrackedIPs %d: must not be negative", c.Rate, c.MaxTrackedIPs)
	}
	if c.MaxTrackedIPs == 0 {
		c.MaxTrackedIPs = iptrack.DefaultMaxEntries
	}
	if c.Log == nil {
		c.Log = slog.New(slog.DiscardHandler)
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	n := samplerShards
	for n > 1 && c.MaxTrackedIPs/n < 64 {
		n >>= 1 // small caps get fewer, larger shards
	}
	s := &Sampler{
		rate:   int64(c.Rate),
		clock:  c.Clock,
		log:    telemetry.Component(c.Log, "gateway"),
		seed:   maphash.MakeSeed(),
		shift:  uint(64 - bits.TrailingZeros(uint(n))),
		shards: make([]tallyShard, n),
	}
	s.epoch = s.clock.Now()
	s.start = s.epoch
	base, rem := c.MaxTrackedIPs/n, c.MaxTrackedIPs%n
	for i := range s.shards {
		s.shards[i].cap = base
		if i < rem {
			s.shards[i].cap++
		}
	}
	var err error
	s.suppressed, err = telemetry.Register(c.Registerer, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "access_log_suppressed_total",
		Help: "Access lines of 403 and 429 answers not written because their client exceeded ACCESS_LOG_REJECT_RATE; each is counted in the client's next summary line.",
	}))
	if err != nil {
		return nil, fmt.Errorf("accesslog: registering metrics: %w", err)
	}
	return s, nil
}

// active reports whether the sampler limits anything.
func (s *Sampler) active() bool { return s != nil && s.rate > 0 }

// admit reports whether the access line of an answer with status to client
// may be written, and counts a sampled one either way.
func (s *Sampler) admit(client netip.Addr, status int) bool {
	if !s.active() || !sampled(status) {
		return true
	}
	sec := int64(s.clock.Now().Sub(s.epoch) / time.Second)
	k := key(realip.Key(client.Unmap()).As16())
	sh := s.shardOf(k)
	sh.mu.Lock()
	if i, ok := sh.lookup(k); ok {
		ok = sh.tallies[i].take(sec, s.rate, status)
		sh.mu.Unlock()
		return s.count(ok)
	}
	sh.mu.Unlock()
	s.overflow.mu.Lock()
	ok := s.overflow.t.take(sec, s.rate, status)
	s.overflow.mu.Unlock()
	return s.count(ok)
}

func (s *Sampler) count(ok bool) bool {
	if !ok {
		s.suppressed.Inc()
	}
	return ok
}

// shardOf picks the shard with a seeded hash, so a client cannot aim its
// addresses at one shard to push others there into the shared budget.
func (s *Sampler) shardOf(k key) *tallyShard {
	if len(s.shards) == 1 {
		return &s.shards[0]
	}
	return &s.shards[maphash.Comparable(s.seed, k)>>s.shift]
}

// lookup returns the index of k's tally, adding one when there is room;
// ok is false when the shard is full and k is not in it.
func (sh *tallyShard) lookup(k key) (int32, bool) {
	if i, ok := sh.index[k]; ok {
		return i, true
	}
	if len(sh.keys) >= sh.cap {
		return 0, false
	}
	if sh.index == nil {
		sh.index = make(map[key]int32)
	}
	i := int32(len(sh.keys))
	sh.keys = append(sh.keys, k)
	sh.tallies = append(sh.tallies, tally{})
	sh.index[k] = i
	return i, true
}

// tracked is the number of clients with a tally of their own.
func (s *Sampler) tracked() int {
	if s == nil {
		return 0
	}
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.keys)
		sh.mu.Unlock()
	}
	return n
}

// summary is one line's worth of a flush.
type summary struct {
	key       key
	untracked bool // the shared budget of the clients beyond the cap
	t         tally
}

// flush writes one summary line for each client (and for the shared
// budget) that had lines suppressed since the last flush, resets the
// counts, and forgets the clients not active in the current second. Run
// calls it every SummaryEvery and once more when its context ends.
func (s *Sampler) flush(now time.Time) {
	if !s.active() {
		return
	}
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	window := now.Sub(s.start)
	s.start = now
	sec := int64(now.Sub(s.epoch) / time.Second)

	var out []summary
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		out = sh.drain(sec, out)
		sh.mu.Unlock()
	}
	s.overflow.mu.Lock()
	if s.overflow.t.total() > 0 {
		out = append(out, summary{untracked: true, t: s.overflow.t})
	}
	s.overflow.t.logged, s.overflow.t.suppressed = 0, [2]int64{}
	s.overflow.mu.Unlock()

	// Written outside the locks: a slow log output must not hold up
	// requests.
	for _, sm := range out {
		s.write(sm, window)
	}
}

// drain appends the shard's tallies that had lines suppressed to out and
// rebuilds the shard with only the clients active in second sec, their
// window counts reset (their count in sec is kept, so a flush does not
// grant a second budget within one second).
func (sh *tallyShard) drain(sec int64, out []summary) []summary {
	kept := 0
	for i := range sh.tallies {
		t := &sh.tallies[i]
		if t.total() > 0 {
			out = append(out, summary{key: sh.keys[i], t: *t})
		}
		if t.sec >= sec {
			kept++
		}
	}
	if kept == 0 {
		sh.index, sh.keys, sh.tallies = nil, nil, nil
		return out
	}
	index := make(map[key]int32, kept)
	keys := make([]key, 0, kept)
	tallies := make([]tally, 0, kept)
	for i, t := range sh.tallies {
		if t.sec < sec {
			continue
		}
		index[sh.keys[i]] = int32(len(keys))
		keys = append(keys, sh.keys[i])
		tallies = append(tallies, tally{sec: t.sec, n: t.n})
	}
	sh.index, sh.keys, sh.tallies = index, keys, tallies
	return out
}

// write logs one summary line at info, the level of the lines it stands
// for: it is visible exactly when they would have been.
func (s *Sampler) write(sm summary, window time.Duration) {
	attrs := make([]slog.Attr, 0, 6)
	if sm.untracked {
		attrs = append(attrs, slog.Bool("untracked", true))
	} else {
		attrs = append(attrs, slog.String("client_ip", keyText(sm.key)))
	}
	statuses := make([]slog.Attr, 0, 2)
	for i, n := range sm.t.suppressed {
		if n > 0 {
			statuses = append(statuses, slog.Int64(slotStatus[i], n))
		}
	}
	attrs = append(attrs,
		slog.Int64("suppressed", sm.t.total()),
		slog.Int64("logged", sm.t.logged),
		slog.Attr{Key: "statuses", Value: slog.GroupValue(statuses...)},
		slog.String("window", window.Round(time.Millisecond).String()),
	)
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "access lines suppressed", attrs...)
}

// keyText is the client key as the summary names it: the address, or for
// IPv6 the /64 every line of the summary came from.
func keyText(k key) string {
	a := netip.AddrFrom16(k).Unmap()
	if a.Is6() {
		return netip.PrefixFrom(a, 64).String()
	}
	return a.String()
}

// Run writes the summaries every SummaryEvery until ctx ends, then once
// more for what is pending, so nothing counted is lost at shutdown. A panic
// in one flush is logged and the loop goes on.
func (s *Sampler) Run(ctx context.Context) {
	if !s.active() {
		return
	}
	tick, stop := s.clock.NewTicker(SummaryEvery)
	defer stop()
	for {
		select {
		case <-ctx.Done():
			s.safeFlush()
			return
		case <-tick:
			s.safeFlush()
		}
	}
}

func (s *Sampler) safeFlush() {
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("access log summary panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		}
		if s.onFlush != nil {
			s.onFlush()
		}
	}()
	s.flush(s.clock.Now())
}

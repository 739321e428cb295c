// Package health runs active health checks (TCP dial or HTTP GET) and feeds
// their verdicts into upstream.Backend liveness.
package health

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/portcullis/portcullis/internal/upstream"
)

// Defaults applied by New to zero or negative Options fields (the
// configuration defaults).
const (
	DefaultInterval = 10 * time.Second
	DefaultFalls    = 2
	DefaultRises    = 2
	maxTimeout      = 5 * time.Second
	// maxDrain bounds how much of a probe's response body is read before
	// closing it; the body is never inspected.
	maxDrain = 4 << 10
	// UserAgent is sent with every HTTP probe so backends can tell probes
	// from traffic in their logs.
	UserAgent = "portcullis-health/1"
)

// Options configures a Checker.
type Options struct {
	// Interval between rounds (HEALTH_CHECK_INTERVAL). Default 10s.
	Interval time.Duration
	// Path is HEALTH_CHECK_PATH: empty means a TCP dial; otherwise an HTTP GET
	// of the backend's base path + Path (a query is allowed), where only a 2xx
	// counts as up. Redirects are not followed, so a 3xx is down.
	Path string
	// Falls consecutive failed probes flip an alive backend dead. Default 2.
	Falls int
	// Rises consecutive passed probes flip a dead backend alive. Default 2.
	Rises int
	// Timeout bounds one probe (the dial, or the whole GET including headers).
	// Default min(Interval, 5s).
	Timeout time.Duration
	// TLSConfig is used for https backends; nil means the system roots.
	// It should match the proxy's transport, or probes and traffic disagree.
	TLSConfig *tls.Config
	// Logger receives flips (warn when dead, info when alive) and recovered
	// panics, tagged component=health. Nil discards.
	Logger *slog.Logger
	// OnChange is called after a backend flips, with its new verdict. It runs
	// on a probe goroutine, concurrently for different backends. May be nil.
	OnChange func(b *upstream.Backend, alive bool)
	// OnProbe is called after every completed probe with the backend's
	// current verdict (for a gauge), after OnChange. Same concurrency as
	// OnChange. May be nil.
	OnProbe func(b *upstream.Backend, alive bool)
}

// Checker probes backends and flips their liveness. Its counters are its own
// and never touched by the request path, which only reads Backend.Alive.
type Checker struct {
	interval, timeout time.Duration
	path, rawQuery    string
	falls, rises      int
	log               *slog.Logger
	onChange, onProbe func(*upstream.Backend, bool)

	client *http.Client
	dialer *net.Dialer

	// mu guards states and every field of every state. It is held only for
	// bookkeeping, never across a probe's I/O.
	mu     sync.Mutex
	states map[*upstream.Backend]*state
}

// state is one backend's probe history.
type state struct {
	busy   bool // a probe is in flight; the next round skips the backend
	gone   bool // dropped from the list while busy; delete when the probe ends
	fails  int  // consecutive failed probes
	passes int  // consecutive passed probes
}

// New returns a Checker with defaults filled in. It starts nothing.
func New(opts Options) *Checker {
	c := &Checker{
		interval: opts.Interval,
		timeout:  opts.Timeout,
		falls:    opts.Falls,
		rises:    opts.Rises,
		log:      opts.Logger,
		onChange: opts.OnChange,
		onProbe:  opts.OnProbe,
		states:   make(map[*upstream.Backend]*state),
	}
	if c.interval <= 0 {
		c.interval = DefaultInterval
	}
	if c.timeout <= 0 {
		c.timeout = min(c.interval, maxTimeout)
	}
	if c.falls <= 0 {
		c.falls = DefaultFalls
	}
	if c.rises <= 0 {
		c.rises = DefaultRises
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	c.log = c.log.With("component", "health")
	if opts.Path != "" {
		p, q, _ := strings.Cut(opts.Path, "?")
		if !strings.HasPrefix(p, "/") {
			p = "/" + p
		}
		c.path, c.rawQuery = p, q
	}
	c.dialer = &net.Dialer{Timeout: c.timeout}
	c.client = &http.Client{
		Transport: &http.Transport{
			// Proxy is nil on purpose: backends are reached directly, never
			// through HTTP_PROXY from the environment.
			DialContext:           c.dialer.DialContext,
			TLSClientConfig:       opts.TLSConfig,
			TLSHandshakeTimeout:   c.timeout,
			ResponseHeaderTimeout: c.timeout,
			DisableCompression:    true,
			// A fresh connection per probe tests that the backend still
			// accepts, and leaves nothing open when Run returns.
			DisableKeepAlives: true,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       c.timeout,
	}
	return c
}

// Run probes every backend returned by backends once at once and then every
// Interval until ctx ends. backends is called each round, so a hot-reloaded
// route table is picked up, and counters of backends no longer listed are
// forgotten. Backends are probed concurrently, but a backend whose previous
// probe is still running is skipped for the round. Panics in a round or a
// probe (including the callbacks) are recovered and logged. Run returns once
// ctx is done and every probe goroutine has finished; results of probes cut
// short by ctx are discarded.
func (c *Checker) Run(ctx context.Context, backends func() []*upstream.Backend) {
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	c.log.Info("health checks started", "interval", c.interval.String(), "path", c.path, "falls", c.falls, "rises", c.rises)
	defer c.log.Info("health checks stopped")
	for {
		c.tick(ctx, backends, &wg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// tick runs one round of Run, isolating a panic in backends() to this round.
func (c *Checker) tick(ctx context.Context, backends func() []*upstream.Backend, wg *sync.WaitGroup) {
	defer c.recoverLog("round", nil)
	if ctx.Err() != nil {
		return
	}
	c.round(ctx, backends(), true, wg)
}

// CheckOnce probes each listed backend once and returns when all probes are
// done. Backends with a probe already in flight (from Run) are skipped.
// Unlike Run it does not forget counters of backends it is not given.
func (c *Checker) CheckOnce(ctx context.Context, backends []*upstream.Backend) {
	var wg sync.WaitGroup
	c.round(ctx, backends, false, &wg)
	wg.Wait()
}

// round starts one probe goroutine per listed, idle backend.
func (c *Checker) round(ctx context.Context, list []*upstream.Backend, prune bool, wg *sync.WaitGroup) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if prune {
		listed := make(map[*upstream.Backend]struct{}, len(list))
		for _, b := range list {
			listed[b] = struct{}{}
		}
		for b, st := range c.states {
			if _, ok := listed[b]; ok {
				continue
			}
			if st.busy {
				st.gone = true
			} else {
				delete(c.states, b)
			}
		}
	}
	for _, b := range list {
		if b == nil {
			continue
		}
		st, ok := c.states[b]
		if !ok {
			st = &state{}
			c.states[b] = st
		}
		if st.gone { // dropped and listed again while its old probe runs
			*st = state{busy: true}
		}
		if st.busy { // also dedupes a backend listed twice
			continue
		}
		st.busy = true
		wg.Add(1)
		go c.probeAndRecord(ctx, b, st, wg)
	}
}

// probeAndRecord runs on its own goroutine; st.busy is set by the caller.
func (c *Checker) probeAndRecord(ctx context.Context, b *upstream.Backend, st *state, wg *sync.WaitGroup) {
	defer wg.Done()
	defer c.recoverLog("probe", b)
	defer c.release(b, st)
	reason, ok := c.probe(ctx, b)
	if ctx.Err() != nil {
		return // shutting down: a cancelled probe says nothing about b
	}
	if !ok {
		c.log.Debug("probe failed", "backend", b.String(), "reason", reason)
	}
	flipped, count, forgotten := c.record(b, st, ok)
	if forgotten {
		// Dropped from the list mid-probe: no callback, so a caller that
		// deleted b's gauge does not see it come back.
		return
	}
	alive := b.Alive()
	if flipped {
		if alive {
			c.log.Info("backend alive", "backend", b.String(), "reason", reason, "consecutive", count)
		} else {
			c.log.Warn("backend dead", "backend", b.String(), "reason", reason, "consecutive", count)
		}
		if c.onChange != nil {
			c.onChange(b, alive)
		}
	}
	if c.onProbe != nil {
		c.onProbe(b, alive)
	}
}

// record counts one probe result and flips b when a streak is long enough.
// It returns whether b flipped, the streak length, and whether b was dropped
// from the list while the probe ran (then nothing is counted).
func (c *Checker) record(b *upstream.Backend, st *state, ok bool) (flipped bool, count int, forgotten bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st.gone {
		return false, 0, true
	}
	if ok {
		st.passes++
		st.fails = 0
		if st.passes >= c.rises && !b.Alive() {
			return b.SetAlive(true), st.passes, false
		}
		return false, st.passes, false
	}
	st.fails++
	st.passes = 0
	if st.fails >= c.falls && b.Alive() {
		return b.SetAlive(false), st.fails, false
	}
	return false, st.fails, false
}

func (c *Checker) release(b *upstream.Backend, st *state) {
	c.mu.Lock()
	defer c.mu.Unlock()
	st.busy = false
	if st.gone && c.states[b] == st {
		delete(c.states, b)
	}
}

func (c *Checker) recoverLog(where string, b *upstream.Backend) {
	if v := recover(); v != nil {
		attrs := []any{"where", where, "panic", v, "stack", string(debug.Stack())}
		if b != nil {
			attrs = append(attrs, "backend", b.String())
		}
		c.log.Error("health check panicked", attrs...)
	}
}

// probe checks b once and returns a reason (error text or HTTP status) and
// whether b passed.
func (c *Checker) probe(ctx context.Context, b *upstream.Backend) (reason string, ok bool) {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	u := b.URL()
	if c.path == "" {
		conn, err := c.dialer.DialContext(ctx, "tcp", hostPort(u))
		if err != nil {
			return err.Error(), false
		}
		conn.Close()
		return "connected", true
	}
	target := &url.URL{
		Scheme:   u.Scheme,
		Host:     u.Host,
		Path:     strings.TrimSuffix(u.Path, "/") + c.path,
		RawQuery: c.rawQuery,
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return fmt.Sprintf("building probe request: %v", err), false
	}
	req.Header.Set("User-Agent", UserAgent)
	client := c.client
	if rt := b.ProbeClient(); rt != nil {
		// The route's own client: its TLS settings, HTTP/2, h2c.
		cc := *c.client
		cc.Transport = rt
		client = &cc
	}
	resp, err := client.Do(req)
	if err != nil {
		return err.Error(), false
	}
	_, _ = io.CopyN(io.Discard, resp.Body, maxDrain)
	resp.Body.Close()
	return resp.Status, resp.StatusCode >= 200 && resp.StatusCode < 300
}

// hostPort is u's host with the scheme's default port when it has none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" || u.Scheme == "wss" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

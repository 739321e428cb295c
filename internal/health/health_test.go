package health

import (
	"bytes"
	"context"
	"github.com/portcullis/portcullis/internal/testutil"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/upstream"
)

func newBackend(t *testing.T, raw string) *upstream.Backend {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return upstream.NewBackend(u, upstream.BreakerSettings{})
}

// listen opens a TCP listener on addr that accepts and closes connections
// until it is closed.
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return ln
}

// scripted serves statuses in order, repeating the last one, and records
// the requests it saw.
type scripted struct {
	mu       sync.Mutex
	statuses []int
	paths    []string
	agents   []string
}

func (s *scripted) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	code := s.statuses[0]
	if len(s.statuses) > 1 {
		s.statuses = s.statuses[1:]
	}
	s.paths = append(s.paths, r.URL.RequestURI())
	s.agents = append(s.agents, r.UserAgent())
	s.mu.Unlock()
	if code >= 300 && code < 400 {
		w.Header().Set("Location", "/elsewhere")
	}
	w.WriteHeader(code)
}

func TestTCPFallsAndRises(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	b := newBackend(t, "http://"+addr)
	c := New(Options{Falls: 3, Rises: 2, Timeout: time.Second})
	ctx := context.Background()
	list := []*upstream.Backend{b}

	c.CheckOnce(ctx, list)
	if !b.Alive() {
		t.Fatal("listening port: want alive")
	}

	ln.Close()
	for i := 1; i < 3; i++ {
		c.CheckOnce(ctx, list)
		if !b.Alive() {
			t.Fatalf("after %d failed rounds (Falls=3): want still alive", i)
		}
	}
	c.CheckOnce(ctx, list)
	if b.Alive() {
		t.Fatal("after 3 failed rounds: want dead")
	}

	listen(t, addr)
	c.CheckOnce(ctx, list)
	if b.Alive() {
		t.Fatal("after 1 passed round (Rises=2): want still dead")
	}
	c.CheckOnce(ctx, list)
	if !b.Alive() {
		t.Fatal("after 2 passed rounds: want alive")
	}
}

func TestHostPortDefaults(t *testing.T) {
	tests := []struct {
		name, url, want string
	}{
		{name: "explicit port", url: "http://10.0.0.1:8080", want: "10.0.0.1:8080"},
		{name: "http default", url: "http://example.com/v1", want: "example.com:80"},
		{name: "https default", url: "https://example.com", want: "example.com:443"},
		{name: "ipv6 default", url: "http://[::1]", want: "[::1]:80"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, _ := url.Parse(tt.url)
			if got := hostPort(u); got != tt.want {
				t.Errorf("hostPort(%q) = %q, want %q", tt.url, got, tt.want)
			}
		})
	}
}

func TestHTTPStatus(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		wantAlive bool
	}{
		{name: "200 is up", status: http.StatusOK, wantAlive: true},
		{name: "204 is up", status: http.StatusNoContent, wantAlive: true},
		{name: "500 is down", status: http.StatusInternalServerError, wantAlive: false},
		{name: "404 is down", status: http.StatusNotFound, wantAlive: false},
		{name: "301 is down, not followed", status: http.StatusMovedPermanently, wantAlive: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &scripted{statuses: []int{tt.status}}
			srv := httptest.NewServer(h)
			defer srv.Close()
			b := newBackend(t, srv.URL)
			c := New(Options{Path: "/healthz", Falls: 1, Rises: 1, Timeout: time.Second})
			c.CheckOnce(context.Background(), []*upstream.Backend{b})
			if got := b.Alive(); got != tt.wantAlive {
				t.Errorf("alive = %v, want %v", got, tt.wantAlive)
			}
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.paths) != 1 {
				t.Fatalf("server saw %d requests (%v), want 1: redirect must not be followed", len(h.paths), h.paths)
			}
			if h.agents[0] != UserAgent {
				t.Errorf("User-Agent = %q, want %q", h.agents[0], UserAgent)
			}
		})
	}
}

func TestHTTPPath(t *testing.T) {
	tests := []struct {
		name, base, path, want string
	}{
		{name: "no base path", base: "", path: "/healthz", want: "/healthz"},
		{name: "base path prefixed", base: "/v1", path: "/healthz", want: "/v1/healthz"},
		{name: "base trailing slash", base: "/v1/", path: "/healthz", want: "/v1/healthz"},
		{name: "path without slash", base: "/v1", path: "healthz", want: "/v1/healthz"},
		{name: "query kept", base: "/v1", path: "/healthz?full=1", want: "/v1/healthz?full=1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &scripted{statuses: []int{http.StatusOK}}
			srv := httptest.NewServer(h)
			defer srv.Close()
			b := newBackend(t, srv.URL+tt.base)
			c := New(Options{Path: tt.path, Timeout: time.Second})
			c.CheckOnce(context.Background(), []*upstream.Backend{b})
			h.mu.Lock()
			defer h.mu.Unlock()
			if len(h.paths) != 1 || h.paths[0] != tt.want {
				t.Errorf("requested %v, want [%s]", h.paths, tt.want)
			}
		})
	}
}

func TestHTTPHangingHandlerFailsWithinTimeout(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release) // runs before srv.Close, so Close does not wait on the handler

	b := newBackend(t, srv.URL)
	c := New(Options{Path: "/healthz", Falls: 1, Timeout: 50 * time.Millisecond})
	start := time.Now()
	c.CheckOnce(context.Background(), []*upstream.Backend{b})
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("probe took %v, want about the 50ms timeout", d)
	}
	if b.Alive() {
		t.Error("hanging backend: want dead")
	}
}

func TestNoFlapOnOneLostProbe(t *testing.T) {
	h := &scripted{statuses: []int{200, 500, 200, 500, 200, 200}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b := newBackend(t, srv.URL)
	var changes atomic.Int32
	c := New(Options{Path: "/", Falls: 2, Rises: 2, Timeout: time.Second,
		OnChange: func(*upstream.Backend, bool) { changes.Add(1) }})
	for i := range 6 {
		c.CheckOnce(context.Background(), []*upstream.Backend{b})
		if !b.Alive() {
			t.Fatalf("round %d: one failure between passes flipped the backend dead", i+1)
		}
	}
	if n := changes.Load(); n != 0 {
		t.Errorf("OnChange called %d times, want 0", n)
	}
}

type event struct {
	b     *upstream.Backend
	alive bool
}

func TestCallbacks(t *testing.T) {
	h := &scripted{statuses: []int{200, 500, 500, 500, 200, 200, 200}}
	srv := httptest.NewServer(h)
	defer srv.Close()
	b := newBackend(t, srv.URL)
	var mu sync.Mutex
	var changes, probes []event
	var buf bytes.Buffer
	c := New(Options{
		Path: "/healthz", Falls: 2, Rises: 2, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})),
		OnChange: func(b *upstream.Backend, alive bool) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, event{b: b, alive: alive})
		},
		OnProbe: func(b *upstream.Backend, alive bool) {
			mu.Lock()
			defer mu.Unlock()
			probes = append(probes, event{b: b, alive: alive})
		},
	})
	for range 7 {
		c.CheckOnce(context.Background(), []*upstream.Backend{b})
	}

	wantChanges := []bool{false, true}
	wantProbes := []bool{true, true, false, false, false, true, true}
	check := func(name string, got []event, want []bool) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s called %d times, want %d", name, len(got), len(want))
		}
		for i := range want {
			if got[i].b != b || got[i].alive != want[i] {
				t.Errorf("%s[%d] = (%v, %v), want (%v, %v)", name, i, got[i].b, got[i].alive, b, want[i])
			}
		}
	}
	check("OnChange", changes, wantChanges)
	check("OnProbe", probes, wantProbes)

	logs := buf.String()
	for _, want := range []string{
		`level=WARN msg="backend dead" component=health backend=` + b.String() + ` reason="500 Internal Server Error" consecutive=2`,
		`level=INFO msg="backend alive" component=health backend=` + b.String() + ` reason="200 OK" consecutive=2`,
	} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

// waitFor polls cond until it holds or a generous deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunStopsOnCancel(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	b := newBackend(t, "http://"+ln.Addr().String())
	var probes atomic.Int32
	c := New(Options{Interval: 20 * time.Millisecond, Timeout: time.Second,
		OnProbe: func(*upstream.Backend, bool) { probes.Add(1) }})

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func() []*upstream.Backend { return []*upstream.Backend{b} })
	}()
	waitFor(t, "first immediate probe and a ticked one", func() bool { return probes.Load() >= 2 })
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of cancel")
	}
	n := probes.Load()
	time.Sleep(60 * time.Millisecond) // three intervals: nothing may probe after Run returned
	if got := probes.Load(); got != n {
		t.Errorf("%d probes after Run returned", got-n)
	}
}

func TestRunCancelDuringHangingProbe(t *testing.T) {
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	defer srv.Close()
	defer close(release)
	b := newBackend(t, srv.URL)
	var probes atomic.Int32
	c := New(Options{Path: "/", Falls: 1, Interval: 20 * time.Millisecond, Timeout: time.Minute,
		OnProbe: func(*upstream.Backend, bool) { probes.Add(1) }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func() []*upstream.Backend { return []*upstream.Backend{b} })
	}()
	time.Sleep(50 * time.Millisecond) // let the probe start and a few ticks skip it
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of cancel while a probe hung")
	}
	if !b.Alive() || probes.Load() != 0 {
		t.Errorf("a probe cut short by shutdown counted: alive=%v probes=%d", b.Alive(), probes.Load())
	}
}

func TestRunPicksUpNewListAndForgetsOld(t *testing.T) {
	lnA := listen(t, "127.0.0.1:0")
	lnB := listen(t, "127.0.0.1:0")
	a := newBackend(t, "http://"+lnA.Addr().String())
	b := newBackend(t, "http://"+lnB.Addr().String())
	var list atomic.Pointer[[]*upstream.Backend]
	list.Store(&[]*upstream.Backend{a})

	var probedA, probedB atomic.Int32
	c := New(Options{Interval: 20 * time.Millisecond, Timeout: time.Second,
		OnProbe: func(be *upstream.Backend, _ bool) {
			switch be {
			case a:
				probedA.Add(1)
			case b:
				probedB.Add(1)
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func() []*upstream.Backend { return *list.Load() })
	}()
	defer func() { cancel(); <-done }()

	waitFor(t, "a probed", func() bool { return probedA.Load() >= 1 })
	list.Store(&[]*upstream.Backend{b})
	waitFor(t, "b probed twice", func() bool { return probedB.Load() >= 2 })
	waitFor(t, "a's counters forgotten", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		_, hasA := c.states[a]
		_, hasB := c.states[b]
		return !hasA && hasB
	})
	n := probedA.Load()
	time.Sleep(60 * time.Millisecond)
	if got := probedA.Load(); got != n {
		t.Errorf("a probed %d more times after it left the list", got-n)
	}
}

func TestRunRecoversPanics(t *testing.T) {
	ln := listen(t, "127.0.0.1:0")
	b := newBackend(t, "http://"+ln.Addr().String())
	var buf testutil.SyncBuffer
	var probes, calls atomic.Int32
	c := New(Options{Interval: 20 * time.Millisecond, Timeout: time.Second,
		Logger: slog.New(slog.NewTextHandler(&buf, nil)),
		OnProbe: func(*upstream.Backend, bool) {
			if probes.Add(1) == 1 {
				panic("gauge exploded")
			}
		}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Run(ctx, func() []*upstream.Backend {
			if calls.Add(1) == 2 {
				panic("route table exploded")
			}
			return []*upstream.Backend{b}
		})
	}()
	waitFor(t, "probes after both panics", func() bool { return probes.Load() >= 3 })
	cancel()
	<-done
	logs := buf.String()
	for _, want := range []string{"gauge exploded", "route table exploded", "where=probe", "where=round"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
}

func TestNewDefaults(t *testing.T) {
	tests := []struct {
		name        string
		opts        Options
		wantTimeout time.Duration
	}{
		{name: "all zero", opts: Options{}, wantTimeout: 5 * time.Second},
		{name: "short interval caps timeout", opts: Options{Interval: time.Second}, wantTimeout: time.Second},
		{name: "explicit timeout kept", opts: Options{Interval: time.Second, Timeout: 3 * time.Second}, wantTimeout: 3 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(tt.opts)
			if c.timeout != tt.wantTimeout {
				t.Errorf("timeout = %v, want %v", c.timeout, tt.wantTimeout)
			}
			if tt.opts.Interval == 0 && c.interval != DefaultInterval {
				t.Errorf("interval = %v, want %v", c.interval, DefaultInterval)
			}
			if c.falls != DefaultFalls || c.rises != DefaultRises {
				t.Errorf("falls/rises = %d/%d, want %d/%d", c.falls, c.rises, DefaultFalls, DefaultRises)
			}
		})
	}
}

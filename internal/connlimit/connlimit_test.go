package connlimit

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// server runs a real http.Server on the wrapped 127.0.0.1:0 listener.
func server(t *testing.T, o Options) (*Listener, string, *prometheus.Registry) {
	t.Helper()
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	o.Registerer = reg
	l := NewListener(inner, o)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })
	return l, inner.Addr().String(), reg
}

func dial(t *testing.T, addr, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// waitFor polls cond (the accept loop runs on the server's goroutine).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// works sends a request on c and expects a 200.
func works(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
		t.Fatalf("write on an admitted conn: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read on an admitted conn: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status = %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
}

// dialRefused connects from `from` and expects the server to close the
// conn at once. The RST may already beat the dialer's connect check.
func dialRefused(t *testing.T, addr, from string) {
	t.Helper()
	d := net.Dialer{Timeout: 2 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Fatalf("dial: %v, want success or reset", err)
		}
		return
	}
	defer c.Close()
	refused(t, c)
}

// refused expects the server to close c at once without an HTTP answer.
func refused(t *testing.T, c net.Conn) {
	t.Helper()
	start := time.Now()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case n > 0:
		t.Fatal("refused conn got bytes")
	case errors.As(err, &ne) && ne.Timeout():
		t.Fatal("refused conn was left open")
	case !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET):
		t.Fatalf("refused conn: read error %v, want EOF or reset", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("refusal took %v", d)
	}
}

func rejected(t *testing.T, reg *prometheus.Registry, reason string) float64 {
	t.Helper()
	return testutil.SeriesValue(t, reg, "connections_rejected_total", map[string]string{"reason": reason})
}

func TestCaps(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		from    []string // source address of each connection, in order
		refuse  []bool   // whether that connection is refused
		reason  string   // counted reason for the refusals
		release int      // closing this conn lets the last refused source in
	}{
		{
			name:   "fourth connection from one IP is refused",
			opts:   Options{MaxConnsPerIP: 3, MaxConnections: 100},
			from:   []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1"},
			refuse: []bool{false, false, false, true},
			reason: ReasonPerIP, release: 0,
		},
		{
			name:   "another IP has its own slots",
			opts:   Options{MaxConnsPerIP: 2, MaxConnections: 100},
			from:   []string{"127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.1", "127.0.0.2", "127.0.0.2"},
			refuse: []bool{false, false, false, true, false, true},
			reason: ReasonPerIP, release: 2,
		},
		{
			name: "trusted proxies are exempt from the per-IP cap",
			opts: Options{MaxConnsPerIP: 2, MaxConnections: 100, Trusted: func(a netip.Addr) bool {
				return a == netip.MustParseAddr("127.0.0.1")
			}},
			from:   []string{"127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.1", "127.0.0.2", "127.0.0.2", "127.0.0.2"},
			refuse: []bool{false, false, false, false, false, false, true},
			reason: ReasonPerIP, release: 5,
		},
		{
			name:   "global cap counts every peer, trusted or not",
			opts:   Options{MaxConnsPerIP: 0, MaxConnections: 3, Trusted: func(netip.Addr) bool { return true }},
			from:   []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.1"},
			refuse: []bool{false, false, false, true, true},
			reason: ReasonGlobal, release: 1,
		},
		{
			name:   "tracking cap refuses a new IP but not a known one",
			opts:   Options{MaxConnsPerIP: 5, MaxConnections: 100, MaxTrackedIPs: 2},
			from:   []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.1"},
			refuse: []bool{false, false, true, false},
			reason: ReasonTracking, release: 1,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, addr, reg := server(t, tc.opts)
			conns := map[int]net.Conn{} // admitted conns by index in tc.from
			wantRefused := 0
			for i, from := range tc.from {
				if tc.refuse[i] {
					dialRefused(t, addr, from)
					wantRefused++
					continue
				}
				conns[i] = dial(t, addr, from)
				waitFor(t, "accept", func() bool { return l.Open() == int64(len(conns)) })
			}
			waitFor(t, "connections_rejected_total{reason="+tc.reason+"}", func() bool {
				return rejected(t, reg, tc.reason) == float64(wantRefused)
			})
			// The admitted connections still work after the refusals.
			for _, c := range conns {
				works(t, c)
			}
			// Closing one frees its slot: the last refused source gets in now.
			last := len(tc.from) - 1
			for !tc.refuse[last] {
				last--
			}
			_ = conns[tc.release].Close()
			delete(conns, tc.release)
			waitFor(t, "release", func() bool { return l.Open() == int64(len(conns)) })
			c := dial(t, addr, tc.from[last])
			works(t, c)
			conns[-1] = c
			kept := slices.Collect(maps.Values(conns))
			for _, c := range kept {
				_ = c.Close()
			}
			waitFor(t, "all closed", func() bool { return l.Open() == 0 })
			if n := l.Tracked(); n != 0 {
				t.Errorf("Tracked() = %d after all closed", n)
			}
			if n := l.entries(); n != 0 {
				t.Errorf("per-IP table holds %d entries after all closed", n)
			}
		})
	}
}

// entries counts the per-IP table's entries.
func (l *Listener) entries() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.m)
		s.mu.Unlock()
	}
	return n
}

func TestCloseReleasesOnce(t *testing.T) {
	inner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l := NewListener(inner, Options{MaxConnsPerIP: 2, MaxConnections: 10})
	defer l.Close()
	var clients []net.Conn
	for range 2 {
		clients = append(clients, dial(t, inner.Addr().String(), ""))
	}
	a, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.Accept()
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		_ = a.Close()
	}
	if got := l.Open(); got != 1 {
		t.Fatalf("Open() = %d after closing one conn three times, want 1", got)
	}
	_ = b.Close()
	if got, tr := l.Open(), l.Tracked(); got != 0 || tr != 0 {
		t.Fatalf("Open() = %d, Tracked() = %d, want 0, 0", got, tr)
	}
	_ = clients
}

// fakeListener hands out conns from the given remote addresses, so IPv6
// keying can be checked without IPv6 sources on the test machine.
type fakeListener struct {
	remotes []string
	closed  []bool
	mu      sync.Mutex
}

type fakeConn struct {
	net.Conn
	remote  net.Addr
	onClose func()
}

func (c *fakeConn) RemoteAddr() net.Addr { return c.remote }
func (c *fakeConn) Close() error         { c.onClose(); return nil }

func (f *fakeListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := len(f.closed)
	if i == len(f.remotes) {
		return nil, net.ErrClosed
	}
	f.closed = append(f.closed, false)
	return &fakeConn{remote: net.TCPAddrFromAddrPort(netip.MustParseAddrPort(f.remotes[i])), onClose: func() {
		f.mu.Lock()
		f.closed[i] = true
		f.mu.Unlock()
	}}, nil
}
func (f *fakeListener) Close() error   { return nil }
func (f *fakeListener) Addr() net.Addr { return &net.TCPAddr{} }

func TestIPv6KeyedPer64(t *testing.T) {
	tests := []struct {
		name     string
		remotes  []string
		accepted []int // indexes of the conns Accept returns, in order
	}{
		{
			name:     "one /64 shares the cap",
			remotes:  []string{"[2001:db8::1]:1", "[2001:db8::ffff:2]:1", "[2001:db8::3]:1", "[2001:db8:0:1::1]:1"},
			accepted: []int{0, 1, 3},
		},
		{
			name:     "IPv4-mapped IPv6 is the IPv4 address",
			remotes:  []string{"[::ffff:192.0.2.1]:1", "192.0.2.1:2", "192.0.2.1:3", "192.0.2.2:1"},
			accepted: []int{0, 1, 3},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeListener{remotes: tc.remotes}
			l := NewListener(f, Options{MaxConnsPerIP: 2, MaxConnections: 100})
			var got []int
			for {
				c, err := l.Accept()
				if err != nil {
					break
				}
				for i, r := range tc.remotes {
					if c.RemoteAddr().String() == net.TCPAddrFromAddrPort(netip.MustParseAddrPort(r)).String() {
						got = append(got, i)
					}
				}
			}
			if len(got) != len(tc.accepted) {
				t.Fatalf("accepted %v, want %v", got, tc.accepted)
			}
			for i := range got {
				if got[i] != tc.accepted[i] {
					t.Fatalf("accepted %v, want %v", got, tc.accepted)
				}
			}
			for i := range tc.remotes {
				wantClosed := true
				for _, a := range tc.accepted {
					if a == i {
						wantClosed = false
					}
				}
				if f.closed[i] != wantClosed {
					t.Errorf("conn %d closed = %v, want %v", i, f.closed[i], wantClosed)
				}
			}
		})
	}
}

func TestConcurrentConnectClose(t *testing.T) {
	l, addr, reg := server(t, Options{MaxConnsPerIP: 8, MaxConnections: 12, MaxTrackedIPs: 3})
	sources := []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.4"}
	var wg sync.WaitGroup
	for g := range 32 {
		wg.Go(func() {
			d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(sources[g%len(sources)])}}
			for i := range 25 {
				c, err := d.Dial("tcp", addr)
				if err != nil {
					continue
				}
				if i%3 == 0 {
					_ = c.SetDeadline(time.Now().Add(2 * time.Second))
					_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
					_, _ = io.Copy(io.Discard, c)
				}
				_ = c.Close()
			}
		})
	}
	wg.Wait()
	waitFor(t, "all closed", func() bool { return l.Open() == 0 })
	if n, e := l.Tracked(), l.entries(); n != 0 || e != 0 {
		t.Errorf("Tracked() = %d, entries = %d after all closed", n, e)
	}
	total := rejected(t, reg, ReasonPerIP) + rejected(t, reg, ReasonGlobal) + rejected(t, reg, ReasonTracking)
	t.Logf("refused %v of %d", total, 32*25)
}

// Refusals are logged at debug, and not once per connection.
func TestRefusalLogsRateLimited(t *testing.T) {
	var buf safeBuffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	l, addr, _ := server(t, Options{MaxConnections: 1, Log: log})
	keep := dial(t, addr, "")
	waitFor(t, "accept", func() bool { return l.Open() == 1 })
	for range 20 {
		dialRefused(t, addr, "")
	}
	waitFor(t, "a log line", func() bool { return strings.Contains(buf.String(), "\n") })
	lines := strings.Count(buf.String(), "\n")
	if lines < 1 || lines > 2 {
		t.Errorf("%d log lines for 20 refusals within a second, want 1 (or 2 across a second boundary):\n%s", lines, buf.String())
	}
	if !strings.Contains(buf.String(), `"level":"DEBUG"`) || !strings.Contains(buf.String(), `"reason":"global"`) {
		t.Errorf("log = %s", buf.String())
	}
	_ = keep
}

type safeBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestMetricRegisteredTwiceIsShared(t *testing.T) {
	reg := prometheus.NewRegistry()
	a := NewListener(&fakeListener{}, Options{Registerer: reg})
	b := NewListener(&fakeListener{}, Options{Registerer: reg})
	a.rejected[rGlobal].Inc()
	b.rejected[rGlobal].Inc()
	if got := rejected(t, reg, ReasonGlobal); got != 2 {
		t.Errorf("shared counter = %v, want 2", got)
	}
}

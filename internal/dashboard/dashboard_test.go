package dashboard

import (
	"context"
	"io"
	"math"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"charm.land/lipgloss/v2"
	"github.com/charmbracelet/x/ansi"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/sysmetrics"
)

func fakeOverview(backends int) overview.Overview {
	ov := overview.Overview{
		Version: "v1.2.3", Uptime: 3*time.Hour + 4*time.Minute, Requests: 12345,
		Status: [6]int64{2: 12000, 3: 5, 4: 300, 5: 40}, Inflight: 3, ActiveConnections: 17, BlockedIPs: 2,
		System: sysmetrics.Sample{
			Host:    sysmetrics.Host{CPUPercent: 42, Memory: sysmetrics.Memory{UsedPercent: 61}, Load: sysmetrics.Load{Load1: 1.5}},
			Process: sysmetrics.Process{CPUPercent: 12, RSSBytes: 48 << 20, Goroutines: 77},
			Traffic: sysmetrics.Rates{
				RequestsPerSecond: 812.5, ErrorRate: 0.012, CacheHitRatio: 0.875, LatencyWindowSeconds: 10,
				LatencyMS: sysmetrics.Latency{P50: 1.25, P90: 8, P99: 312},
			},
		},
	}
	for i := range 30 {
		ov.History = append(ov.History, sysmetrics.Point{RPS: sysmetrics.Num(i * 10)})
	}
	ov.Routes = []overview.Route{
		{Prefix: "/api/orders", Algo: "least-conn", Available: 1, Backends: []overview.Backend{
			{URL: "http://orders-1:8080", Alive: true, Breaker: "closed", InFlight: 2},
		}},
		{Prefix: "/api/legacy", Algo: "round-robin", Backends: []overview.Backend{
			{URL: "http://legacy:9000", Alive: false, Breaker: "open"},
			{URL: "http://legacy-2:9000", Alive: true, Breaker: "half-open"},
		}},
	}
	for i := range backends {
		ov.Routes[0].Backends = append(ov.Routes[0].Backends, overview.Backend{
			URL: "http://orders-extra-" + string(rune('a'+i%26)) + ":8080", Alive: true, Breaker: "closed"})
	}
	return ov
}

var opts = Options{LogFile: "/var/log/portcullis/gateway.log", Addr: "0.0.0.0:9777"}

func TestRenderFitsTheTerminal(t *testing.T) {
	tests := []struct {
		name          string
		width, height int
		backends      int
		want          []string
	}{
		{name: "wide", width: 140, height: 40, want: []string{
			"PORTCULLIS", "v1.2.3", "up 3h04m", "0.0.0.0:9777", "12,345", "812.5 req/s", "2xx 12,000", "5xx 40",
			"1.20%", "1.25 ms", "312 ms", "Connections", "17", "Blocked IPs", "87.5%",
			"/api/orders", "http://orders-1:8080", "● up", "● down", "open", "half-open", "2/3 backends up",
			"CPU 42%", "77 goroutines", "logs → /var/log/portcullis/gateway.log", "q", "close dashboard", "ctrl+c",
		}},
		{name: "classic 80x24", width: 80, height: 24, want: []string{"12,345", "● down", "gateway.log"}},
		{name: "narrow phone-sized", width: 50, height: 30, want: []string{"12,345", "Latency", "gateway.log"}},
		// More backends than rows: dead and tripped ones are listed first,
		// and the rest is counted, never silently cut.
		{name: "short with many backends", width: 120, height: 26, backends: 40, want: []string{"● down", "half-open", "more backends"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := render(fakeOverview(tt.backends), opts, tt.width, tt.height, false)
			lines := strings.Split(out, "\n")
			if len(lines) != tt.height {
				t.Errorf("%d lines for a %d-line terminal", len(lines), tt.height)
			}
			for i, l := range lines {
				if w := lipgloss.Width(l); w > tt.width {
					t.Errorf("line %d is %d cells wide on a %d-cell terminal: %q", i, w, tt.width, ansi.Strip(l))
				}
			}
			plain := ansi.Strip(out)
			for _, w := range tt.want {
				if !strings.Contains(plain, w) {
					t.Errorf("missing %q in\n%s", w, plain)
				}
			}
		})
	}
}

func TestRenderUnknownFigures(t *testing.T) {
	ov := fakeOverview(0)
	nan := sysmetrics.Num(math.NaN())
	ov.System.Traffic.LatencyMS = sysmetrics.Latency{P50: nan, P90: nan, P99: nan}
	ov.System.Traffic.RequestsPerSecond, ov.System.Traffic.ErrorRate, ov.System.Traffic.CacheHitRatio = nan, nan, nan
	plain := ansi.Strip(render(ov, opts, 120, 30, false))
	if strings.Contains(plain, "NaN") || !strings.Contains(plain, "— req/s") {
		t.Errorf("unknown figures must read —, not NaN:\n%s", plain)
	}
	if stopping := ansi.Strip(render(ov, opts, 120, 30, true)); !strings.Contains(stopping, "stopping the gateway") {
		t.Errorf("Ctrl-C frame does not say the gateway is stopping:\n%s", stopping)
	}
}

func TestSparkline(t *testing.T) {
	pts := func(v ...float64) []sysmetrics.Point {
		var p []sysmetrics.Point
		for _, x := range v {
			p = append(p, sysmetrics.Point{RPS: sysmetrics.Num(x)})
		}
		return p
	}
	tests := []struct {
		name   string
		points []sysmetrics.Point
		width  int
		want   string
	}{
		{name: "scaled to the max", points: pts(0, 50, 100), width: 10, want: "▁▅█"},
		{name: "only the newest that fit", points: pts(100, 0, 0, 70), width: 3, want: "▁▁█"},
		{name: "unknown is a gap, all-zero is flat", points: pts(math.NaN(), 0, 0), width: 5, want: " ▁▁"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sparkline(tt.points, tt.width); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGroup(t *testing.T) {
	for in, want := range map[int64]string{0: "0", 999: "999", 1000: "1,000", 1234567: "1,234,567", -5: "-5"} {
		if got := group(in); got != want {
			t.Errorf("group(%d) = %q, want %q", in, got, want)
		}
	}
}

func TestModelKeysAndTicks(t *testing.T) {
	var calls atomic.Int32
	src := func(n int) overview.Overview {
		calls.Add(1)
		ov := fakeOverview(0)
		ov.Requests = int64(calls.Load())
		return ov
	}
	m := NewModel(Options{Source: src})
	if calls.Load() != 1 || m.ov.Requests != 1 {
		t.Fatal("the first frame must have figures")
	}
	next, cmd := m.Update(tickMsg{})
	if m = next.(Model); m.ov.Requests != 2 || cmd == nil {
		t.Fatalf("a tick must refresh the overview and schedule the next one: %d, %v", m.ov.Requests, cmd)
	}
	next, _ = m.Update(tea.WindowSizeMsg{Width: 100, Height: 30})
	if m = next.(Model); m.width != 100 || m.height != 30 {
		t.Fatalf("size %dx%d", m.width, m.height)
	}
	if got := strings.Count(m.View().Content, "\n") + 1; got != 30 {
		t.Errorf("view has %d lines after a resize to 30", got)
	}
	if !m.View().AltScreen {
		t.Error("the dashboard must use the alternate screen, so the terminal is left as it was")
	}

	tests := []struct {
		name string
		key  tea.KeyPressMsg
		want Outcome
	}{
		{name: "q closes the dashboard", key: tea.KeyPressMsg{Code: 'q', Text: "q"}, want: Closed},
		{name: "ctrl+c stops the gateway", key: tea.KeyPressMsg{Code: 'c', Mod: tea.ModCtrl}, want: StopGateway},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, cmd := m.Update(tt.key)
			if got := next.(Model).outcome; got != tt.want || cmd == nil {
				t.Fatalf("outcome %v, cmd %v; want %v and a quit", got, cmd, tt.want)
			}
			if _, ok := cmd().(tea.QuitMsg); !ok {
				t.Fatal("the key does not quit the program")
			}
		})
	}
	if _, cmd := m.Update(tea.KeyPressMsg{Code: 'x', Text: "x"}); cmd != nil {
		t.Error("other keys do nothing")
	}
}

// TestRunEndsOnQAndOnCancel runs the real Bubble Tea program on pipes.
func TestRunEndsOnQAndOnCancel(t *testing.T) {
	src := func(int) overview.Overview { return fakeOverview(0) }
	t.Run("q", func(t *testing.T) {
		in, w := io.Pipe()
		defer w.Close()
		done := make(chan Outcome, 1)
		go func() {
			out, err := Run(context.Background(), Options{Source: src, Input: in, Output: io.Discard, Interval: 20 * time.Millisecond})
			if err != nil {
				t.Error(err)
			}
			done <- out
		}()
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, "q")
		select {
		case got := <-done:
			if got != Closed {
				t.Fatalf("outcome %v, want Closed", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("q did not close the dashboard")
		}
	})
	t.Run("cancel", func(t *testing.T) {
		in, w := io.Pipe()
		defer w.Close()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan Outcome, 1)
		go func() {
			out, _ := Run(ctx, Options{Source: src, Input: in, Output: io.Discard})
			done <- out
		}()
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case got := <-done:
			if got != Cancelled {
				t.Fatalf("outcome %v, want Cancelled", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("cancel did not end the dashboard")
		}
	})
}

// TestRenderCertificates: with TLS a line lists every served certificate
// with the days it has left, one under two weeks in the warning colour and
// an expired one in red; a narrow terminal shows the soonest to expire and
// counts the rest; without TLS there is no line.
func TestRenderCertificates(t *testing.T) {
	now := time.Date(2030, 1, 1, 12, 0, 0, 0, time.UTC)
	day := 24 * time.Hour
	o := opts
	o.Now = func() time.Time { return now }
	ov := fakeOverview(0)
	ov.Certificates = []overview.Certificate{
		{Name: "api.example.test", NotAfter: now.Add(89*day + time.Hour)},
		{Name: "gone.example.test", NotAfter: now.Add(-time.Hour)},
		{Name: "old.example.test", NotAfter: now.Add(10*day + 3*time.Hour)},
		{Name: "today.example.test", NotAfter: now.Add(5*time.Hour + time.Minute)},
	}

	out := render(ov, o, 140, 40, false)
	plain := ansi.Strip(out)
	for _, w := range []string{"TLS certificates", "api.example.test 89d", "old.example.test 10d", "today.example.test 5h", "gone.example.test expired"} {
		if !strings.Contains(plain, w) {
			t.Errorf("missing %q in\n%s", w, plain)
		}
	}
	if !strings.Contains(out, sWarn.Render("old.example.test 10d")) || !strings.Contains(out, sWarn.Render("today.example.test 5h")) {
		t.Error("a certificate with less than 14 days left is not in the warning colour")
	}
	if !strings.Contains(out, sBad.Render("gone.example.test expired")) {
		t.Error("an expired certificate is not in red")
	}
	if strings.Contains(out, sWarn.Render("api.example.test 89d")) {
		t.Error("a certificate with 89 days left is highlighted")
	}

	t.Run("narrow", func(t *testing.T) {
		out := render(ov, o, 60, 30, false)
		for i, l := range strings.Split(out, "\n") {
			if w := lipgloss.Width(l); w > 60 {
				t.Errorf("line %d is %d cells wide on a 60-cell terminal: %q", i, w, ansi.Strip(l))
			}
		}
		var line string
		for _, l := range strings.Split(ansi.Strip(out), "\n") {
			if strings.HasPrefix(l, "TLS certificates") {
				line = l
			}
		}
		if !strings.Contains(line, "gone.example.test expired") || !strings.Contains(line, "more") || strings.Contains(line, "…") {
			t.Errorf("a narrow terminal should show the soonest to expire first and count the rest, got %q", line)
		}
	})
	t.Run("phone-sized", func(t *testing.T) {
		plain := ansi.Strip(render(ov, o, 40, 30, false))
		if !strings.Contains(plain, "TLS  gone.example.test expired +3 more") {
			t.Errorf("a 40-cell terminal should show the expired certificate and count the rest:\n%s", plain)
		}
	})
	t.Run("no TLS", func(t *testing.T) {
		ov.Certificates = nil
		if plain := ansi.Strip(render(ov, o, 140, 40, false)); strings.Contains(plain, "TLS certificates") {
			t.Errorf("a certificates line without TLS:\n%s", plain)
		}
	})
}

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"
)

// browserProblems collects what a person would see as broken: console
// errors, uncaught exceptions, browser log errors (a CSP violation among
// them), failed requests and error statuses.
type browserProblems struct {
	mu   sync.Mutex
	list []string
}

func (b *browserProblems) add(format string, a ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.list = append(b.list, fmt.Sprintf(format, a...))
}

func (b *browserProblems) all() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.list...)
}

func (b *browserProblems) listen(ev any) {
	switch e := ev.(type) {
	case *runtime.EventConsoleAPICalled:
		if e.Type == runtime.ConsoleAPICalledTypeError || e.Type == runtime.ConsoleAPICalledTypeAssert || e.Type == runtime.ConsoleAPICalledTypeWarning {
			var args []string
			for _, a := range e.Args {
				args = append(args, string(a.Value)+a.Description)
			}
			b.add("console.%s: %s", e.Type, strings.Join(args, " "))
		}
	case *runtime.EventExceptionThrown:
		msg := e.ExceptionDetails.Text
		if e.ExceptionDetails.Exception != nil {
			msg += " " + e.ExceptionDetails.Exception.Description
		}
		b.add("uncaught exception: %s", msg)
	case *cdplog.EventEntryAdded:
		if e.Entry.Level == cdplog.EntryLevelError || e.Entry.Level == cdplog.EntryLevelWarning {
			b.add("browser log %s (%s): %s %s", e.Entry.Level, e.Entry.Source, e.Entry.Text, e.Entry.URL)
		}
	case *network.EventLoadingFailed:
		b.add("request failed: %s %s %s", e.Type, e.ErrorText, e.BlockedReason)
	case *network.EventResponseReceived:
		if e.Response.Status >= 400 {
			b.add("HTTP %d for %s", e.Response.Status, e.Response.URL)
		}
	}
}

type chartPoints struct {
	ID     string `json:"id"`
	Points int    `json:"points"`
}

const chartsJS = `[...document.querySelectorAll("canvas")].map(c => ({id: c.id, points: Number(c.dataset.points || 0)}))`

// TestMonitorInChromium loads /monitor from the gateway's ops listener in a
// real headless Chromium while traffic flows through the public one: no
// console errors, no failed requests, every chart has data points, readable
// on a wide screen and on a phone in dark mode. The public listener does not
// serve the page or its data.
// Screenshots go to $MONITOR_SCREENSHOT_DIR (default a temporary directory,
// logged); `MONITOR_SCREENSHOT_DIR=$PWD/../docs MONITOR_SCREENSHOT_AFTER=90s`
// refreshes docs/monitor.png with a minute and a half of history.
func TestMonitorInChromium(t *testing.T) {
	chromium := chromiumPath(t)

	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(time.Duration(1+len(r.URL.Path)%7) * time.Millisecond)
		io.WriteString(w, `{"ok":true}`)
	}))
	defer backend.Close()
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	gw := deployStartGateway(t,
		`SERVICE_ROUTES=[{"prefix":"/api/orders","target_url":"`+backend.URL+`"},{"prefix":"/api/legacy","target_url":"`+deadURL+`"}]`,
		"HEALTH_CHECK_INTERVAL=1s", "RETRY_MAX=1")
	base, opsBase := "http://"+gw.Addr, "http://"+gw.OpsAddr
	for _, p := range []string{"/monitor", "/api/system-metrics"} {
		if code, _ := deployGet(t, base+p); code != http.StatusNotFound {
			t.Errorf("public listener %s: %d, want 404 (ops listener only)", p, code)
		}
	}

	ctx, cancelTraffic := context.WithCancel(context.Background())
	defer cancelTraffic()
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancelTraffic()
	wg.Go(func() { // steady traffic with a few errors and misses
		c := &http.Client{Timeout: 5 * time.Second}
		for i := 0; ctx.Err() == nil; i++ {
			path := fmt.Sprintf("/api/orders/%d", i%13)
			switch {
			case i%17 == 0:
				path = "/api/legacy/x"
			case i%29 == 0:
				path = "/nowhere"
			}
			if resp, err := c.Get(base + path); err == nil {
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			time.Sleep(15 * time.Millisecond)
		}
	})

	bctx, problems := startChromium(t, chromium)
	loadMonitor(t, bctx, opsBase)

	// Every chart gets points as samples arrive (one a second).
	var charts []chartPoints
	deadline := time.Now().Add(20 * time.Second)
	for {
		var err error
		charts, err = chromedp.Run(bctx, chromedp.Evaluate[[]chartPoints](chartsJS))
		if err != nil {
			t.Fatalf("reading the charts: %v", err)
		}
		ready := len(charts) == 7
		for _, c := range charts {
			ready = ready && c.Points >= 3
		}
		if ready || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	if len(charts) != 7 {
		t.Fatalf("want 7 charts, got %+v", charts)
	}
	for _, c := range charts {
		if c.Points < 3 {
			t.Errorf("chart %s has %d data points after 20 s of traffic, want ≥ 3", c.ID, c.Points)
		}
	}

	type figures struct {
		Status, RPS, P99, Err, CPU, Mem, Disk, Gor string
	}
	f, err := chromedp.Run(bctx, chromedp.Evaluate[figures](`({
		Status: document.getElementById("status-text").textContent,
		RPS: document.getElementById("k-rps").textContent,
		P99: document.getElementById("k-p99").textContent,
		Err: document.getElementById("k-err").textContent,
		CPU: document.getElementById("k-cpu").textContent,
		Mem: document.getElementById("k-mem").textContent,
		Disk: document.getElementById("k-disk").textContent,
		Gor: document.getElementById("k-gor").textContent})`))
	if err != nil {
		t.Fatal(err)
	}
	if f.Status != "live" {
		t.Errorf("status chip says %q, want live", f.Status)
	}
	for name, v := range map[string]string{"requests/s": f.RPS, "p99": f.P99, "error rate": f.Err, "cpu": f.CPU, "memory": f.Mem, "disk": f.Disk, "goroutines": f.Gor} {
		if v == "" || v == "—" {
			t.Errorf("the %s figure is empty (%q)", name, v)
		}
	}
	if f.RPS == "0.00" {
		t.Errorf("requests/s reads %q while traffic flows", f.RPS)
	}
	if !strings.HasSuffix(f.P99, "ms") && !strings.HasSuffix(f.P99, " s") {
		t.Errorf("p99 reads %q, want a duration", f.P99)
	}
	// Without TLS there is no certificate to show: the card stays hidden.
	if c := readCertCard(t, bctx); !c.Hidden || c.Display != "none" {
		t.Errorf("without TLS the certificates card shows: %+v", c)
	}

	dir := os.Getenv("MONITOR_SCREENSHOT_DIR")
	if dir == "" {
		dir = t.TempDir()
	}
	if d, err := time.ParseDuration(os.Getenv("MONITOR_SCREENSHOT_AFTER")); err == nil {
		time.Sleep(d) // more history in the picture, for docs/monitor.png
	}
	shot := func(name string) {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, png, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("screenshot: %s (%d bytes)", p, len(png))
	}
	shot("monitor.png")

	// A phone in dark mode: nothing wider than the screen.
	if err := chromedp.Do(bctx,
		chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := cdp.Call(ctx, tg, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
				Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "dark"}},
			})
			return err
		}),
		chromedp.Sleep(1500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	type layout struct {
		ScrollWidth, InnerWidth int
		Background              string
	}
	l, err := chromedp.Run(bctx, chromedp.Evaluate[layout](`({ScrollWidth: document.documentElement.scrollWidth,
		InnerWidth: window.innerWidth, Background: getComputedStyle(document.body).backgroundColor})`))
	if err != nil {
		t.Fatal(err)
	}
	if l.ScrollWidth > l.InnerWidth {
		t.Errorf("on a 390 px phone the page is %d px wide: it scrolls sideways", l.ScrollWidth)
	}
	if l.Background != "rgb(11, 15, 23)" {
		t.Errorf("dark mode background is %s, want the dark theme's rgb(11, 15, 23)", l.Background)
	}
	shot("monitor-phone-dark.png")

	for _, p := range problems.all() {
		t.Errorf("browser: %s", p)
	}
}

// chromiumPath is $CHROMIUM, else Debian's chromium.
func chromiumPath(t *testing.T) string {
	t.Helper()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("Chromium is needed (make test-deps installs Debian's chromium): %v", err)
	}
	return chromium
}

// startChromium starts a headless Chromium with a 1440×1000 viewport that
// records what a person would see as broken; it stops with the test.
func startChromium(t *testing.T, chromium string) (context.Context, *browserProblems) {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.WindowSize(1440, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(cancelBrowser)

	problems := &browserProblems{}
	if err := chromedp.Listen(bctx, problems.listen); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	enable := chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
		if _, err := cdp.Call(ctx, tg, cdplog.Enable, cdp.Empty{}); err != nil {
			return err
		}
		_, err := cdp.Call(ctx, tg, network.Enable, network.EnableParams{})
		return err
	})
	// The first run starts the browser: no timeout on it (a timeout
	// there would stop the whole browser when it fires).
	if err := chromedp.Do(bctx, enable, chromedp.EmulateViewport(1440, 1000)); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return bctx, problems
}

// loadMonitor opens opsBase/monitor and waits for the first chart. A page
// that never renders fails here, not at the test binary's timeout.
func loadMonitor(t *testing.T, bctx context.Context, opsBase string) {
	t.Helper()
	lctx, cancelLoad := context.WithTimeout(bctx, 30*time.Second)
	err := chromedp.Do(lctx, chromedp.Navigate(opsBase+"/monitor"), chromedp.WaitVisible(chromedp.CSS("#c-rps")))
	cancelLoad()
	if err != nil {
		t.Fatalf("loading %s/monitor: %v", opsBase, err)
	}
}

// certCard is what the monitor's certificates card shows.
type certCard struct {
	Hidden  bool
	Display string
	Rows    []struct {
		Class string
		Cells []string
		Color string // the days-left cell's text colour
	}
}

func readCertCard(t *testing.T, bctx context.Context) certCard {
	t.Helper()
	c, err := chromedp.Run(bctx, chromedp.Evaluate[certCard](`(() => {
		const card = document.getElementById("certs");
		return {Hidden: card.hidden, Display: getComputedStyle(card).display,
			Rows: [...document.querySelectorAll("#certs-body tr")].map((r) => ({Class: r.className,
				Cells: [...r.cells].map((c) => c.textContent), Color: getComputedStyle(r.cells[2]).color}))};
	})()`))
	if err != nil {
		t.Fatalf("reading the certificates card: %v", err)
	}
	return c
}

// writeCertificate writes dir/name.crt and dir/name.key: a self-signed
// certificate for name that expires at notAfter.
func writeCertificate(t *testing.T, dir, name string, notAfter time.Time) {
	t.Helper()
	notBefore := time.Now().Add(-24 * time.Hour)
	if notAfter.Before(notBefore) { // an expired one: valid for a day, once
		notBefore = notAfter.Add(-24 * time.Hour)
	}
	writeTLSPair(t, dir, name, selfSigned(t, name, time.Now().UnixNano(), notBefore, notAfter))
}

// TestMonitorShowsCertificates: with TLS_CERTS_DIR the monitor lists every
// served certificate with its expiry date and the days it has left, one
// under two weeks in the warning colour and an expired one in the alarm
// colour, and the card fits a phone.
func TestMonitorShowsCertificates(t *testing.T) {
	chromium := chromiumPath(t)
	dir := t.TempDir()
	day := 24 * time.Hour
	api, old, gone := time.Now().Add(90*day+time.Hour), time.Now().Add(10*day+time.Hour), time.Now().Add(-2*day)
	writeCertificate(t, dir, "api.portcullis.test", api)
	writeCertificate(t, dir, "old.portcullis.test", old)
	writeCertificate(t, dir, "gone.portcullis.test", gone)
	gw := deployStartGateway(t, "TLS_CERTS_DIR="+dir, `SERVICE_ROUTES=[{"prefix":"/api","target_url":"http://127.0.0.1:9"}]`)

	bctx, problems := startChromium(t, chromium)
	loadMonitor(t, bctx, "http://"+gw.OpsAddr)
	var card certCard
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if card = readCertCard(t, bctx); len(card.Rows) == 3 {
			break
		}
	}
	if card.Hidden || card.Display == "none" || len(card.Rows) != 3 {
		t.Fatalf("the certificates card: %+v, want three rows shown", card)
	}
	date := func(tm time.Time) string { return tm.UTC().Format("2006-01-02") }
	want := []struct {
		cells []string
		class string
	}{
		{cells: []string{"api.portcullis.test", date(api), "90 days"}, class: ""},
		{cells: []string{"gone.portcullis.test", date(gone), "expired"}, class: "bad"},
		{cells: []string{"old.portcullis.test", date(old), "10 days"}, class: "warn"},
	}
	for i, w := range want {
		r := card.Rows[i]
		if strings.Join(r.Cells, " | ") != strings.Join(w.cells, " | ") || r.Class != w.class {
			t.Errorf("row %d: %q class %q, want %q class %q", i, r.Cells, r.Class, w.cells, w.class)
		}
	}
	if c := card.Rows; c[0].Color == c[1].Color || c[0].Color == c[2].Color || c[1].Color == c[2].Color {
		t.Errorf("days-left colours %s (ok), %s (expired), %s (10 days): want three different ones", c[0].Color, c[1].Color, c[2].Color)
	}

	if dir := os.Getenv("MONITOR_SCREENSHOT_DIR"); dir != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, "monitor-certificates.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// A phone: the table wraps rather than widening the page.
	if err := chromedp.Do(bctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Sleep(500*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	type layout struct{ ScrollWidth, InnerWidth, CardRight int }
	l, err := chromedp.Run(bctx, chromedp.Evaluate[layout](`({ScrollWidth: document.documentElement.scrollWidth,
		InnerWidth: window.innerWidth, CardRight: Math.ceil(document.getElementById("certs").getBoundingClientRect().right)})`))
	if err != nil {
		t.Fatal(err)
	}
	if l.ScrollWidth > l.InnerWidth || l.CardRight > l.InnerWidth {
		t.Errorf("on a 390 px phone the page is %d px wide and the card ends at %d px: it scrolls sideways", l.ScrollWidth, l.CardRight)
	}

	for _, p := range problems.all() {
		t.Errorf("browser: %s", p)
	}
}

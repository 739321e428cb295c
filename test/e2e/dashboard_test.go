package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// tmuxPane runs the gateway in a detached tmux session on the test's own
// tmux server: a real terminal, so the dashboard comes up with
// DASHBOARD=auto, and capture-pane shows what an operator sees.
type tmuxPane struct {
	t    *testing.T
	sock string
	dir  string
}

func (p *tmuxPane) tmux(args ...string) string {
	p.t.Helper()
	out, err := exec.Command("tmux", append([]string{"-S", p.sock}, args...)...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("tmux %v: %v\n%s", args, err, out)
	}
	return string(out)
}

func (p *tmuxPane) capture() string {
	p.t.Helper()
	out, err := exec.Command("tmux", "-S", p.sock, "capture-pane", "-p", "-t", "gw").CombinedOutput()
	if err != nil {
		return ""
	}
	return string(out)
}

// waitFor polls the pane until cond holds.
func (p *tmuxPane) waitFor(what string, cond func(screen string) bool) string {
	p.t.Helper()
	var screen string
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if screen = p.capture(); cond(screen) {
			return screen
		}
	}
	p.t.Fatalf("waiting for %s; the pane shows:\n%s", what, screen)
	return ""
}

// exitCode waits for the wrapper script to record the gateway's exit code.
func (p *tmuxPane) exitCode() int {
	p.t.Helper()
	for deadline := time.Now().Add(40 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if b, err := os.ReadFile(filepath.Join(p.dir, "exit.code")); err == nil && strings.HasSuffix(string(b), "\n") {
			n, _ := strconv.Atoi(strings.TrimSpace(string(b)))
			return n
		}
	}
	p.t.Fatalf("the gateway did not exit; the pane shows:\n%s", p.capture())
	return -1
}

// startInTmux starts the gateway in an 120×40 pane with env.
func startInTmux(t *testing.T, env ...string) *tmuxPane {
	t.Helper()
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Fatal("tmux is needed for the dashboard test (make test-deps installs it)")
	}
	dir := t.TempDir()
	p := &tmuxPane{t: t, sock: filepath.Join(dir, "tmux.sock"), dir: dir}
	var script strings.Builder
	// The wrapper shell survives the Ctrl-C meant for the gateway (a trap
	// with a command, unlike an ignored signal, is not inherited).
	fmt.Fprintf(&script, "trap : INT\ncd %q\n", dir)
	for _, e := range append([]string{"PATH=" + os.Getenv("PATH"), "GATEWAY_PORT=127.0.0.1:0", "DASHBOARD=auto", "LOG_FILE=dashboard.log"}, env...) {
		k, v, _ := strings.Cut(e, "=")
		fmt.Fprintf(&script, "export %s=%s\n", k, shellQuote(v))
	}
	// After the gateway: its exit code, and the terminal's mode (a
	// dashboard that leaves the terminal raw would show as -icanon -echo).
	fmt.Fprintf(&script, "%s\ncode=$?\nstty -a > stty.txt 2>&1\necho $code > exit.code\nsleep 30\n", shellQuote(bin))
	if err := os.WriteFile(filepath.Join(dir, "run.sh"), []byte(script.String()), 0o755); err != nil {
		t.Fatal(err)
	}
	p.tmux("new-session", "-d", "-s", "gw", "-x", "120", "-y", "40", "sh "+filepath.Join(dir, "run.sh"))
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "dashboard.log"))
			t.Logf("pane:\n%s\nLOG_FILE:\n%s", p.capture(), b)
		}
		exec.Command("tmux", "-S", p.sock, "kill-server").Run()
	})
	return p
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

var (
	addrRe     = regexp.MustCompile(`127\.0\.0\.1:\d+`)
	requestsRe = regexp.MustCompile(`Requests\s+([\d,]+)`)
	rateRe     = regexp.MustCompile(`Rate\s+([\d.]+) req/s`)
)

func requestsShown(screen string) int {
	m := requestsRe.FindStringSubmatch(screen)
	if m == nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.ReplaceAll(m[1], ",", ""))
	return n
}

// TestDashboardInTmux: on a terminal the dashboard comes up, its figures
// move with the traffic, a dead backend shows as down, logs go to LOG_FILE;
// q leaves the gateway serving with logs back on the terminal; Ctrl-C then
// stops it with exit status 0 and the terminal in its normal mode.
func TestDashboardInTmux(t *testing.T) {
	live := backend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := "http://" + ln.Addr().String()
	ln.Close()
	p := startInTmux(t,
		`SERVICE_ROUTES=[{"prefix":"/api/live","target_url":"`+live+`"},{"prefix":"/api/dead","target_url":"`+dead+`"}]`,
		"HEALTH_CHECK_INTERVAL=200ms")

	screen := p.waitFor("the dashboard", func(s string) bool { return strings.Contains(s, "PORTCULLIS") && addrRe.MatchString(s) })
	addr := addrRe.FindString(screen)
	if !strings.Contains(screen, "dashboard.log") || !strings.Contains(screen, "ctrl+c") {
		t.Errorf("the dashboard does not say where the logs go or how to leave:\n%s", screen)
	}
	if strings.Contains(screen, `"msg"`) {
		t.Errorf("log lines on the dashboard's screen:\n%s", screen)
	}

	// Steady traffic while the screen is read, so the one-second rate is
	// above zero whenever it is sampled.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			if resp, err := client.Get("http://" + addr + "/api/live/x"); err == nil {
				resp.Body.Close()
			}
		}
	}()
	defer func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	}()
	screen = p.waitFor("30 requests counted", func(s string) bool { return requestsShown(s) >= 30 })
	first := requestsShown(screen)
	p.waitFor("a request rate above zero", func(s string) bool {
		m := rateRe.FindStringSubmatch(s)
		return m != nil && m[1] != "0.0"
	})
	p.waitFor("the count to move with the traffic", func(s string) bool { return requestsShown(s) >= first+25 })
	close(stop)
	<-done
	screen = p.waitFor("the dead backend shown as down", func(s string) bool {
		for _, l := range strings.Split(s, "\n") {
			if strings.Contains(l, dead) && strings.Contains(l, "down") {
				return true
			}
		}
		return false
	})
	for _, l := range strings.Split(screen, "\n") {
		if strings.Contains(l, live) && !strings.Contains(l, "● up") {
			t.Errorf("the live backend is not shown up: %q", l)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(p.dir, "dashboard.log")); !strings.Contains(string(b), `"path":"/api/live/x"`) {
		t.Errorf("request logs did not go to LOG_FILE while the dashboard was up:\n%s", b)
	}

	// q: the dashboard goes, the gateway stays, logs come back.
	p.tmux("send-keys", "-t", "gw", "q")
	p.waitFor("logs back on the terminal", func(s string) bool { return strings.Contains(s, "dashboard closed") })
	if status, _ := get(t, "http://"+addr+"/api/live/after-q"); status != 200 {
		t.Fatalf("after q the gateway does not serve: %d", status)
	}
	p.waitFor("the request logged on the terminal", func(s string) bool { return strings.Contains(s, "/api/live/after-q") })

	// Ctrl-C now reaches the gateway as SIGINT: graceful stop, exit 0.
	p.tmux("send-keys", "-t", "gw", "C-c")
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit status %d after Ctrl-C, want 0", code)
	}
	assertSaneTerminal(t, p.dir)
}

// TestDashboardCtrlCStopsTheGateway: Ctrl-C while the dashboard is up stops
// the gateway gracefully (exit 0) and leaves the terminal as it found it.
func TestDashboardCtrlCStopsTheGateway(t *testing.T) {
	p := startInTmux(t, `SERVICE_ROUTES=[{"prefix":"/api","target_url":"http://127.0.0.1:9"}]`)
	p.waitFor("the dashboard", func(s string) bool { return strings.Contains(s, "PORTCULLIS") })
	p.tmux("send-keys", "-t", "gw", "C-c")
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit status %d after Ctrl-C on the dashboard, want 0", code)
	}
	screen := p.capture()
	if strings.Contains(screen, "PORTCULLIS") {
		t.Errorf("the dashboard is still on the screen after exit:\n%s", screen)
	}
	if !strings.Contains(screen, `"msg":"stopped"`) {
		t.Errorf("the shutdown was not logged on the terminal:\n%s", screen)
	}
	assertSaneTerminal(t, p.dir)
}

// TestDashboardShowsCertificates: with TLS_CERTS_DIR the dashboard lists
// each served certificate with the days it has left, the one about to
// expire in the warning colour, and /stats lists them too.
func TestDashboardShowsCertificates(t *testing.T) {
	s := newTLSSetup(t)
	day := 24 * time.Hour
	for name, notAfter := range map[string]time.Time{
		"api.portcullis.test": time.Now().Add(90*day + time.Hour),
		"old.portcullis.test": time.Now().Add(10*day + time.Hour),
	} {
		c, k := s.ca.Leaf(t, testutil.LeafSpec{CN: name, DNS: []string{name}, NotAfter: notAfter})
		stem := filepath.Join(s.dir, strings.TrimSuffix(name, ".portcullis.test"))
		if err := os.WriteFile(stem+".crt", c, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(stem+".key", k, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The ops listener on a port of its own, known before the boot lines
	// give way to the dashboard.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ops := ln.Addr().String()
	ln.Close()
	p := startInTmux(t, "TLS_CERTS_DIR="+s.dir, "OPS_ADDR="+ops,
		`SERVICE_ROUTES=[{"prefix":"/api","target_url":"http://127.0.0.1:9"}]`)

	certLine := func(screen string) string {
		for _, l := range strings.Split(screen, "\n") {
			if strings.HasPrefix(l, "TLS certificates ") {
				return l
			}
		}
		return ""
	}
	screen := p.waitFor("the certificates line", func(s string) bool {
		return strings.Contains(s, "PORTCULLIS") && certLine(s) != ""
	})
	line := certLine(screen)
	for _, want := range []string{"api.portcullis.test 90d", "old.portcullis.test 10d"} {
		if !strings.Contains(line, want) {
			t.Errorf("the certificates line %q lacks %q", line, want)
		}
	}
	// With the colours: the one with 10 days left is in the warning colour
	// (yellow, SGR 33), the other is not.
	colored := p.tmux("capture-pane", "-p", "-e", "-t", "gw")
	if !regexp.MustCompile(`\x1b\[[0-9;]*33m[^\x1b]*old\.portcullis\.test 10d`).MatchString(colored) {
		t.Errorf("old.portcullis.test is not highlighted:\n%q", colored)
	}
	if regexp.MustCompile(`\x1b\[[0-9;]*33m[^\x1b]*api\.portcullis\.test`).MatchString(colored) {
		t.Errorf("api.portcullis.test, 90 days from expiry, is highlighted:\n%q", colored)
	}

	status, body := get(t, "http://"+ops+"/stats")
	var stats struct {
		Certificates []struct {
			Name             string `json:"name"`
			NotAfter         string `json:"not_after"`
			ExpiresInSeconds int64  `json:"expires_in_seconds"`
		} `json:"certificates"`
	}
	if err := json.Unmarshal([]byte(body), &stats); status != 200 || err != nil {
		t.Fatalf("/stats: %d %v %s", status, err, body)
	}
	if len(stats.Certificates) != 2 || stats.Certificates[0].Name != "api.portcullis.test" || stats.Certificates[1].Name != "old.portcullis.test" {
		t.Fatalf("/stats certificates = %+v, want api then old", stats.Certificates)
	}
	if d := stats.Certificates[1].ExpiresInSeconds / 86400; d != 10 {
		t.Errorf("/stats: old.portcullis.test has %d days left, want 10", d)
	}

	p.tmux("send-keys", "-t", "gw", "C-c")
	if code := p.exitCode(); code != 0 {
		t.Fatalf("exit status %d after Ctrl-C, want 0", code)
	}
}

func assertSaneTerminal(t *testing.T, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "stty.txt"))
	if err != nil {
		t.Fatal(err)
	}
	mode := " " + strings.Join(strings.Fields(string(b)), " ") + " "
	for _, flag := range []string{" icanon ", " echo ", " isig "} {
		if !strings.Contains(mode, flag) {
			t.Errorf("terminal left without %q after exit: %s", strings.TrimSpace(flag), b)
		}
	}
}

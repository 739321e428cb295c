// Package e2e runs the real gateway binary: signals, exit codes, logs and
// boot behaviour are the process's, so they are tested on the process.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// bin is the gateway binary under test: $GATEWAY_BIN (make test builds it
// once), else built here.
var bin string

func TestMain(m *testing.M) {
	bin = os.Getenv("GATEWAY_BIN")
	cleanup := func() {}
	if bin == "" {
		dir, err := os.MkdirTemp("", "gateway-e2e")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		cleanup = func() { os.RemoveAll(dir) }
		bin = filepath.Join(dir, "gateway")
		out, err := exec.Command("go", "build", "-o", bin, "../../cmd/gateway").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "building gateway: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	cleanup()
	os.Exit(code)
}

// proc is a running gateway process.
type proc struct {
	cmd    *exec.Cmd
	addr   string
	ops    string // the ops listener (OPS_ADDR)
	mu     sync.Mutex
	stdout bytes.Buffer
	lines  chan map[string]any
	exited chan struct{}
	err    error
	stderr bytes.Buffer
}

func (p *proc) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stdout.String()
}

// startGateway runs the binary in a fresh directory with exactly env (plus
// PATH), waits for the "gateway listening" line and returns the process.
func startGateway(t *testing.T, env ...string) *proc {
	t.Helper()
	p := launch(t, env...)
	p.waitListening(t, 10*time.Second)
	return p
}

// launch starts the binary as startGateway does, without waiting for it.
func launch(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "GATEWAY_PORT=127.0.0.1:0", "OPS_ADDR=127.0.0.1:0", "DASHBOARD=off"}, env...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &proc{cmd: cmd, lines: make(chan map[string]any, 1024), exited: make(chan struct{})}
	cmd.Stderr = &p.stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.stdout.Write(sc.Bytes())
			p.stdout.WriteByte('\n')
			p.mu.Unlock()
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				select {
				case p.lines <- m:
				default:
				}
			}
		}
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("gateway stdout:\n%s\nstderr:\n%s", p.logs(), p.stderr.String())
		}
	})
	return p
}

// waitListening waits for the "gateway listening" line and records the address.
func (p *proc) waitListening(t *testing.T, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for p.addr == "" {
		select {
		case m := <-p.lines:
			if m["msg"] == "gateway listening" {
				p.addr, _ = m["addr"].(string)
				p.ops, _ = m["ops_addr"].(string)
			}
		case <-p.exited:
			t.Fatalf("gateway exited at boot: %v\n%s\n%s", p.err, p.logs(), p.stderr.String())
		case <-deadline:
			t.Fatalf("gateway did not log its address\n%s", p.logs())
		}
	}
}

func (p *proc) url(path string) string { return "http://" + p.addr + path }

// opsURL is url on the ops listener: /metrics, /stats, the detailed
// /health, /admin/*.
func (p *proc) opsURL(path string) string { return "http://" + p.ops + path }

// wait returns the exit code, failing the test after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
	case <-time.After(timeout):
		t.Fatalf("gateway did not exit within %v", timeout)
	}
	if p.err == nil {
		return 0
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	t.Fatalf("wait: %v", p.err)
	return -1
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func backend(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String()
}

func TestGracefulShutdownWithSlowRequestInFlight(t *testing.T) {
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(1500 * time.Millisecond)
		w.Write([]byte("slow answer"))
	})
	p := startGateway(t,
		`SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`,
		"SHUTDOWN_DELAY=500ms", "SHUTDOWN_TIMEOUT=10s")

	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := client.Get(p.url("/slow"))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{code: resp.StatusCode, body: string(b)}
	}()
	time.Sleep(200 * time.Millisecond) // the slow request is now in flight
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	// During SHUTDOWN_DELAY: still serving, but not ready and draining.
	if code, _ := get(t, p.url("/readyz")); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining = %d, want 503", code)
	}
	if code, body := get(t, p.url("/health")); code != http.StatusServiceUnavailable || !strings.Contains(body, `"draining"`) {
		t.Errorf("/health while draining = %d %s", code, body)
	}
	r := <-done
	if r.err != nil || r.code != 200 || r.body != "slow answer" {
		t.Errorf("in-flight request during shutdown: %+v", r)
	}
	if code := p.wait(t, 15*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
	if _, err := net.DialTimeout("tcp", p.addr, time.Second); err == nil {
		t.Error("listener still accepting after exit")
	}
	if !strings.Contains(p.logs(), `"msg":"stopped"`) {
		t.Error("no stopped log line")
	}
}

func TestSIGINTAlsoStopsCleanly(t *testing.T) {
	p := startGateway(t)
	p.cmd.Process.Signal(syscall.SIGINT)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit status %d, want 0", code)
	}
}

func TestDefaultsBootWithNineRoutesAndNoRedis(t *testing.T) {
	p := startGateway(t, "REDIS_ADDR=127.0.0.1:1")
	code, body := get(t, p.opsURL("/health"))
	if code != 200 {
		t.Fatalf("/health %d", code)
	}
	var h struct{ Routes []struct{ Prefix string } }
	if err := json.Unmarshal([]byte(body), &h); err != nil {
		t.Fatal(err)
	}
	want := []string{"/api/admin", "/api/agent", "/api/ai", "/api/core", "/api/llm", "/api/llm2", "/api/node", "/api/studio", "/api/studio2"}
	var got []string
	for _, r := range h.Routes {
		got = append(got, r.Prefix)
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("default routes = %v, want %v", got, want)
	}
	if !strings.Contains(p.logs(), "built-in development routes") {
		t.Error("no warning that the built-in default routes are in use")
	}
}

func runOnce(t *testing.T, dir string, env []string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return code, stdout.String(), stderr.String()
}

func TestInvalidConfigStopsBootWithOneLinePerProblem(t *testing.T) {
	code, _, stderr := runOnce(t, t.TempDir(), []string{
		"MAX_BURST_SIZE=lots", "LOAD_BALANCING_ALGO=random", "HEALTH_CHECK_INTERVAL=10", "GATEWAY_PORT=127.0.0.1:0",
	})
	if code != 2 {
		t.Errorf("exit status %d, want 2", code)
	}
	lines := strings.Split(strings.TrimSpace(stderr), "\n")
	if len(lines) != 3 {
		t.Errorf("want 3 problem lines, got %d:\n%s", len(lines), stderr)
	}
	for _, v := range []string{"MAX_BURST_SIZE", "LOAD_BALANCING_ALGO", "HEALTH_CHECK_INTERVAL"} {
		if !strings.Contains(stderr, v) {
			t.Errorf("stderr does not name %s:\n%s", v, stderr)
		}
	}
}

func TestProductionRefusesWeakSetup(t *testing.T) {
	code, _, stderr := runOnce(t, t.TempDir(), []string{"GATEWAY_ENV=production", "JWT_SECRET=your-secret-key-change-in-production"})
	if code != 2 || !strings.Contains(stderr, "JWT_SECRET") || !strings.Contains(stderr, "no routes") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}

func TestValidateAndDotEnv(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ".env"), []byte("LOAD_BALANCING_ALGO=bogus\nROUTE_BILLING_PREFIX=/api/billing\nROUTE_BILLING_URL=http://127.0.0.1:7000\n"), 0o600)
	// .env is read...
	code, _, stderr := runOnce(t, dir, nil, "validate")
	if code != 2 || !strings.Contains(stderr, "LOAD_BALANCING_ALGO") {
		t.Errorf("validate with a bad .env: exit %d, %s", code, stderr)
	}
	// ...and the real environment wins over it.
	code, stdout, stderr := runOnce(t, dir, []string{"LOAD_BALANCING_ALGO=ip-hash"}, "validate")
	if code != 0 || !strings.Contains(stdout, "1 routes") {
		t.Errorf("validate: exit %d, stdout %q stderr %q", code, stdout, stderr)
	}
}

func TestHelpAndVersion(t *testing.T) {
	code, stdout, _ := runOnce(t, t.TempDir(), nil, "--help")
	for _, sub := range []string{"validate", "version"} {
		if code != 0 || !strings.Contains(stdout, sub) {
			t.Errorf("--help (exit %d) does not list %s:\n%s", code, sub, stdout)
		}
	}
	if code, stdout, _ := runOnce(t, t.TempDir(), nil, "version"); code != 0 || !strings.HasPrefix(stdout, "gateway ") {
		t.Errorf("version: %d %q", code, stdout)
	}
	if code, _, _ := runOnce(t, t.TempDir(), nil, "frobnicate"); code != 2 {
		t.Errorf("unknown command exit %d, want 2", code)
	}
}

func TestPanicFreeUnderGarbage(t *testing.T) {
	p := startGateway(t)
	for _, raw := range []string{
		"\x00\x01\x02\r\n\r\n",
		"GET\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"GET http://evil.example/ HTTP/1.1\r\nHost: good\r\n\r\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		c, err := net.Dial("tcp", p.addr)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, raw)
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		io.ReadAll(c)
		c.Close()
	}
	if code, _ := get(t, p.url("/livez")); code != 200 {
		t.Errorf("gateway unhealthy after garbage: %d", code)
	}
}

func TestHashKeyAndTokenCommands(t *testing.T) {
	code, stdout, _ := runOnce(t, t.TempDir(), nil, "hash-key", "abc")
	if code != 0 || strings.TrimSpace(stdout) != "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad" {
		t.Errorf("hash-key abc: %d %q", code, stdout)
	}
	if code, _, _ := runOnce(t, t.TempDir(), nil, "token", "--sub", "alice"); code != 2 {
		t.Errorf("token without JWT_SECRET: exit %d, want 2", code)
	}
	secret := "JWT_SECRET=0123456789abcdef0123456789abcdef-e2e"
	code, tok, stderr := runOnce(t, t.TempDir(), []string{secret}, "token", "--sub", "alice", "--ttl", "5m")
	if code != 0 || strings.Count(strings.TrimSpace(tok), ".") != 2 {
		t.Fatalf("token: %d %q %s", code, tok, stderr)
	}
	// The minted token opens a require_auth route of a gateway with that secret.
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(r.Header.Get("X-User-Id"))) })
	p := startGateway(t, secret, `SERVICE_ROUTES=[{"prefix":"/api","target_url":"`+up+`","require_auth":true}]`)
	req, _ := http.NewRequest(http.MethodGet, p.url("/api/me"), nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(tok))
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "alice" {
		t.Errorf("minted token: %d %q", resp.StatusCode, b)
	}
}

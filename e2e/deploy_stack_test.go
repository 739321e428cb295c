package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeStack runs scripts/stack.sh (make stack) on free loopback ports,
// uses the stack through its nginx edge, then presses Ctrl-C (SIGINT to the
// process group, as a terminal does) and checks that everything stopped.
func TestMakeStack(t *testing.T) {
	for _, tool := range []string{"redis-server", "nginx", "prometheus", "openssl", "python3"} {
		deployLookPath(t, tool)
	}
	ports := map[string]int{}
	for _, k := range []string{"HTTPS", "HTTP", "GATEWAY", "OPS", "REDIS", "PROMETHEUS", "JAEGER_UI", "OTLP", "ECHO1", "ECHO2"} {
		ports[k] = deployFreePort(t)
	}
	cmd := exec.Command("bash", filepath.Join(deployRepoRoot(t), "scripts/stack.sh"))
	cmd.Env = append(os.Environ(),
		"GATEWAY_BIN="+deployGatewayBin(t),
		fmt.Sprintf("STACK_HTTPS_PORT=%d", ports["HTTPS"]), fmt.Sprintf("STACK_HTTP_PORT=%d", ports["HTTP"]),
		fmt.Sprintf("STACK_GATEWAY_PORT=%d", ports["GATEWAY"]), fmt.Sprintf("STACK_OPS_PORT=%d", ports["OPS"]),
		fmt.Sprintf("STACK_REDIS_PORT=%d", ports["REDIS"]),
		fmt.Sprintf("STACK_PROMETHEUS_PORT=%d", ports["PROMETHEUS"]), fmt.Sprintf("STACK_JAEGER_UI_PORT=%d", ports["JAEGER_UI"]),
		fmt.Sprintf("STACK_OTLP_PORT=%d", ports["OTLP"]), fmt.Sprintf("STACK_ECHO_PORTS=%d %d", ports["ECHO1"], ports["ECHO2"]))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out deploySyncBuf
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pgid := cmd.Process.Pid
	up := make(chan struct{})
	exited := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			out.Write(append(sc.Bytes(), '\n'))
			if strings.Contains(sc.Text(), "Ctrl-C stops everything") {
				close(up)
			}
		}
		exited <- cmd.Wait()
	}()
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			syscall.Kill(-pgid, syscall.SIGKILL) // this test's own process group
			<-exited
		}
		if t.Failed() {
			t.Logf("stack.sh output:\n%s", out.String())
		}
	})
	select {
	case <-up:
	case err := <-exited:
		stopped = true
		t.Fatalf("stack.sh exited before it was up: %v", err)
	case <-time.After(90 * time.Second):
		t.Fatal("stack.sh not up after 90s")
	}
	m := regexp.MustCompile(`logs in (\S+)\)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatal("no log directory printed")
	}
	stateDir := m[1]
	for _, want := range []string{
		fmt.Sprintf("https://localhost:%d/", ports["HTTPS"]),
		fmt.Sprintf("http://127.0.0.1:%d/health", ports["GATEWAY"]),
		fmt.Sprintf("http://127.0.0.1:%d/health   /metrics", ports["OPS"]),
		fmt.Sprintf("http://127.0.0.1:%d/", ports["PROMETHEUS"]),
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("URL %s not printed", want)
		}
	}

	t.Run("edge to upstream with the real client address", func(t *testing.T) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			DialContext: d.DialContext,
			// stack.sh made its own self-signed certificate.
			TLSClientConfig: &tls.Config{InsecureSkipVerify: true},
		}}
		resp, err := c.Get(fmt.Sprintf("https://127.0.0.1:%d/api/echo/hello", ports["HTTPS"]))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var echo struct {
			Upstream string            `json:"upstream"`
			Path     string            `json:"path"`
			Headers  map[string]string `json:"headers"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&echo); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d, %v", resp.StatusCode, err)
		}
		if echo.Path != "/hello" || echo.Headers["X-Real-Ip"] != "127.0.0.2" {
			t.Errorf("upstream got path %q, X-Real-IP %q; want /hello and 127.0.0.2", echo.Path, echo.Headers["X-Real-Ip"])
		}
	})

	t.Run("ops endpoints on the ops port only", func(t *testing.T) {
		for _, p := range []string{"/metrics", "/stats", "/monitor"} {
			if code, _ := deployGet(t, fmt.Sprintf("http://127.0.0.1:%d%s", ports["GATEWAY"], p)); code != 404 {
				t.Errorf("public port %s: %d, want 404", p, code)
			}
			if code, _ := deployGet(t, fmt.Sprintf("http://127.0.0.1:%d%s", ports["OPS"], p)); code != 200 {
				t.Errorf("ops port %s: %d, want 200", p, code)
			}
		}
	})

	t.Run("prometheus scrapes the gateway, redis wants the password", func(t *testing.T) {
		// The ops port, successfully: Prometheus has scraped it once it
		// reports the target up.
		type target struct {
			ScrapeURL string `json:"scrapeUrl"`
			Health    string `json:"health"`
			LastError string `json:"lastError"`
		}
		want := fmt.Sprintf("http://127.0.0.1:%d/metrics", ports["OPS"])
		for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			_, body := deployGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/targets?state=active", ports["PROMETHEUS"]))
			var r struct {
				Data struct {
					ActiveTargets []target `json:"activeTargets"`
				} `json:"data"`
			}
			json.Unmarshal([]byte(body), &r)
			var gw *target
			for i, tg := range r.Data.ActiveTargets {
				if strings.HasSuffix(tg.ScrapeURL, "/metrics") && !strings.Contains(tg.ScrapeURL, fmt.Sprintf(":%d/", ports["PROMETHEUS"])) {
					gw = &r.Data.ActiveTargets[i]
				}
			}
			if gw != nil && gw.ScrapeURL == want && gw.Health == "up" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("prometheus's gateway target %+v, want %s up: %.400s", gw, want, body)
				break
			}
		}
		conn, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", ports["REDIS"]))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		pw := ""
		for _, l := range strings.Split(deployRead(t, ".env.development"), "\n") {
			if v, ok := strings.CutPrefix(l, "REDIS_PASSWORD="); ok {
				pw = v
			}
		}
		fmt.Fprintf(conn, "PING\r\nAUTH %s\r\nPING\r\n", pw)
		br := bufio.NewReader(conn)
		var replies []string
		for range 3 {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			replies = append(replies, strings.TrimSpace(l))
		}
		if !strings.HasPrefix(replies[0], "-NOAUTH") || replies[1] != "+OK" || replies[2] != "+PONG" {
			t.Errorf("redis replies %q: want NOAUTH before AUTH, then OK, PONG", replies)
		}
		// No process of the stack shows the password to `ps`.
		procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
		for _, p := range procs {
			if b, err := os.ReadFile(p); err == nil && pw != "" && strings.Contains(string(b), pw) {
				t.Errorf("%s holds the Redis password: %q", p, bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
			}
		}
		if strings.Contains(out.String(), "jaeger         http://") {
			if code, _ := deployGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/services", ports["JAEGER_UI"])); code != 200 {
				t.Errorf("jaeger query API: %d", code)
			}
		}
	})

	// Ctrl-C: SIGINT to the whole foreground process group.
	if err := syscall.Kill(-pgid, syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case <-exited:
		stopped = true
	case <-time.After(40 * time.Second):
		t.Fatal("stack.sh still running 40s after Ctrl-C")
	}
	if !strings.Contains(out.String(), "stack: stopped") {
		t.Error("no \"stack: stopped\" after Ctrl-C")
	}
	for name, p := range ports {
		if c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", p), time.Second); err == nil {
			c.Close()
			t.Errorf("%s port %d still open after Ctrl-C", name, p)
		}
	}
	if _, err := os.Stat(stateDir); err == nil {
		t.Errorf("%s left behind", stateDir)
	}
}

// TestLoadTestScript runs scripts/load-test.sh (make load-test) briefly
// against a gateway and checks wrk ran and reached it.
func TestLoadTestScript(t *testing.T) {
	deployLookPath(t, "wrk")
	gw := deployStartGateway(t)
	cmd := exec.Command("bash", filepath.Join(deployRepoRoot(t), "scripts/load-test.sh"), "http://"+gw.Addr+"/livez")
	cmd.Env = append(os.Environ(), "DURATION=1s", "CONNECTIONS=2", "THREADS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("load-test.sh: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`(\d+) requests in`).FindStringSubmatch(string(out))
	if m == nil || m[1] == "0" || !strings.Contains(string(out), "Requests/sec") || strings.Contains(string(out), "Socket errors") {
		t.Errorf("load-test.sh output:\n%s", out)
	}
}

// TestLoadTestDefaultURL checks that the load test aims, by default, at the
// public listener of a gateway run with .env.development, at a path that
// listener serves: not the ops port, which has no limits or connection
// caps and is not what clients reach.
func TestLoadTestDefaultURL(t *testing.T) {
	script := regexp.MustCompile(`url="\$\{1:-([^}]+)\}"`).FindStringSubmatch(deployRead(t, "scripts/load-test.sh"))
	makefile := regexp.MustCompile(`(?m)^URL\s*\?=\s*(\S+)`).FindStringSubmatch(deployRead(t, "Makefile"))
	if script == nil || makefile == nil {
		t.Fatalf("no default URL found: load-test.sh %v, Makefile %v", script, makefile)
	}
	_, devPort, err := net.SplitHostPort(envFileValue(t, ".env.development", "GATEWAY_PORT"))
	if err != nil {
		t.Fatal(err)
	}
	gw := deployStartGateway(t)
	for name, raw := range map[string]string{"scripts/load-test.sh": script[1], "Makefile URL": makefile[1]} {
		u, err := url.Parse(raw)
		if err != nil || u.Port() != devPort {
			t.Errorf("%s default %q: want the public port %s (%v)", name, raw, devPort, err)
			continue
		}
		if code, body := deployGet(t, "http://"+gw.Addr+u.RequestURI()); code != http.StatusOK {
			t.Errorf("%s default path %s on the public listener: %d %.200s", name, u.RequestURI(), code, body)
		}
	}
}

// TestMakeOpsTargets runs `make health` and `make metrics` against a running
// gateway's ops listener, and checks that by default they ask the address
// the gateway's ops listener has by default (and in .env.development).
func TestMakeOpsTargets(t *testing.T) {
	makeBin := deployLookPath(t, "make")
	deployLookPath(t, "curl")
	root := deployRepoRoot(t)
	def := regexp.MustCompile(`DefaultOpsAddr = "([^"]+)"`).FindStringSubmatch(deployRead(t, "internal/config/config.go"))
	if def == nil {
		t.Fatal("no DefaultOpsAddr in internal/config/config.go")
	}
	if dev := envFileValue(t, ".env.development", "OPS_ADDR"); dev != def[1] {
		t.Errorf(".env.development OPS_ADDR %q, the default is %q: make health/metrics would miss it", dev, def[1])
	}
	// A make of its own, not a sub-make of `make test` (which would print
	// directories), and no OPS_URL from the environment.
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k != "MAKEFLAGS" && k != "MAKELEVEL" && k != "MFLAGS" && k != "OPS_URL" {
			env = append(env, kv)
		}
	}
	for _, target := range []string{"health", "metrics"} {
		cmd := exec.Command(makeBin, "-s", "-n", target)
		cmd.Dir, cmd.Env = root, env
		if code, out := exitCode(t, cmd); code != 0 || !strings.Contains(out, "http://"+def[1]+"/"+target) {
			t.Errorf("make -n %s: exit %d %q, want it to ask http://%s/%s", target, code, out, def[1], target)
		}
	}
	gw := deployStartGateway(t)
	run := func(target string) string {
		t.Helper()
		cmd := exec.Command(makeBin, "-s", target, "OPS_URL=http://"+gw.OpsAddr)
		cmd.Dir, cmd.Env = root, env
		code, out := exitCode(t, cmd)
		if code != 0 {
			t.Fatalf("make %s: exit %d\n%s", target, code, out)
		}
		return out
	}
	if out := run("metrics"); !strings.Contains(out, "# TYPE active_connections gauge") {
		t.Errorf("make metrics: %.300s", out)
	}
	var health struct {
		Status string `json:"status"`
		Routes []any  `json:"routes"`
	}
	if out := run("health"); json.Unmarshal([]byte(out), &health) != nil || health.Status == "" || len(health.Routes) == 0 {
		t.Errorf("make health: %.300s, want the detailed /health with routes", out)
	}
}

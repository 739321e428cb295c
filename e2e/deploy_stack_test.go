package e2e

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
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
	for _, k := range []string{"HTTPS", "HTTP", "GATEWAY", "REDIS", "PROMETHEUS", "JAEGER_UI", "OTLP", "ECHO1", "ECHO2"} {
		ports[k] = deployFreePort(t)
	}
	cmd := exec.Command("bash", filepath.Join(deployRepoRoot(t), "scripts/stack.sh"))
	cmd.Env = append(os.Environ(),
		"GATEWAY_BIN="+deployGatewayBin(t),
		fmt.Sprintf("STACK_HTTPS_PORT=%d", ports["HTTPS"]), fmt.Sprintf("STACK_HTTP_PORT=%d", ports["HTTP"]),
		fmt.Sprintf("STACK_GATEWAY_PORT=%d", ports["GATEWAY"]), fmt.Sprintf("STACK_REDIS_PORT=%d", ports["REDIS"]),
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

	t.Run("prometheus scrapes the gateway, redis wants the password", func(t *testing.T) {
		want := fmt.Sprintf(`"scrapeUrl":"http://127.0.0.1:%d/metrics"`, ports["GATEWAY"])
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
			_, body := deployGet(t, fmt.Sprintf("http://127.0.0.1:%d/api/v1/targets", ports["PROMETHEUS"]))
			if strings.Contains(body, want) {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("prometheus targets: %.400s", body)
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

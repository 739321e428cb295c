package e2e

// Helpers shared by the deployment tests (deploy_*_test.go): the repository,
// the gateway binary, and a gateway process started on loopback.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

// deployRepoRoot is $REPO_ROOT, else the parent of this module.
func deployRepoRoot(t testing.TB) string {
	t.Helper()
	if r := os.Getenv("REPO_ROOT"); r != "" {
		return r
	}
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// deployRead returns a repository file's contents.
func deployRead(t testing.TB, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(deployRepoRoot(t), rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var (
	deployBinOnce sync.Once
	deployBinPath string
	deployBinErr  error
)

// deployGatewayBin is $GATEWAY_BIN (make test builds it once with -race),
// else a binary built here into the user's cache directory (go build's own
// cache makes the rebuild cheap, and nothing is left in /tmp).
func deployGatewayBin(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("GATEWAY_BIN"); b != "" {
		return b
	}
	deployBinOnce.Do(func() {
		dir, err := os.UserCacheDir()
		if err != nil {
			deployBinErr = err
			return
		}
		dir = filepath.Join(dir, "portcullis", "e2e")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			deployBinErr = err
			return
		}
		deployBinPath = filepath.Join(dir, "gateway")
		cmd := exec.Command("go", "build", "-race", "-o", deployBinPath, "./cmd/gateway")
		cmd.Dir = deployRepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			deployBinErr = fmt.Errorf("building the gateway: %v\n%s", err, out)
		}
	})
	if deployBinErr != nil {
		t.Fatal(deployBinErr)
	}
	return deployBinPath
}

// deployLookPath returns the path of a tool the test needs; scripts/test-deps.sh
// installs every one of them, so a missing tool is a failure, not a skip.
func deployLookPath(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	// nginx lives in /usr/sbin, outside a normal user's PATH.
	if p := "/usr/sbin/" + name; fileExecutable(p) {
		return p
	}
	t.Fatalf("%s not found: run scripts/test-deps.sh (make test does)", name)
	return ""
}

func fileExecutable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0
}

// deployGateway is a gateway process under test.
type deployGateway struct {
	Addr    string // public listener, host:port
	OpsAddr string // ops listener, host:port ("" with OPS_ADDR=public)
	cmd     *exec.Cmd
	out     *deploySyncBuf
	exited  chan struct{}
}

type deploySyncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *deploySyncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *deploySyncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// deployStartGateway runs the gateway in a fresh directory with exactly env
// (plus PATH; GATEWAY_PORT and OPS_ADDR default to 127.0.0.1:0, a later
// entry in env wins) and waits until it logs its bound addresses. Never the
// default OPS_ADDR 127.0.0.1:9778: gateways of tests running at the same
// time would fight over it.
func deployStartGateway(t testing.TB, env ...string) *deployGateway {
	t.Helper()
	cmd := exec.Command(deployGatewayBin(t))
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "GATEWAY_PORT=127.0.0.1:0", "OPS_ADDR=127.0.0.1:0", "DASHBOARD=off"}, env...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	g := &deployGateway{cmd: cmd, out: &deploySyncBuf{}, exited: make(chan struct{})}
	cmd.Stderr = g.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type addrs struct{ addr, ops string }
	ready := make(chan addrs, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			g.out.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "gateway listening" {
				a, _ := m["addr"].(string)
				o, _ := m["ops_addr"].(string)
				select {
				case ready <- addrs{a, o}:
				default:
				}
			}
		}
		cmd.Wait()
		close(g.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-g.exited:
		default:
			cmd.Process.Kill()
			<-g.exited
		}
		if t.Failed() {
			t.Logf("gateway output:\n%s", g.out.String())
		}
	})
	select {
	case a := <-ready:
		g.Addr, g.OpsAddr = a.addr, a.ops
		if g.Addr == "" || (g.OpsAddr == "" && !strings.EqualFold(deployEnvValue(cmd.Env, "OPS_ADDR"), "public")) {
			t.Fatalf("gateway listening on %q, ops on %q: want both addresses logged", g.Addr, g.OpsAddr)
		}
	case <-g.exited:
		t.Fatalf("gateway exited at boot:\n%s", g.out.String())
	case <-time.After(15 * time.Second):
		t.Fatalf("gateway did not log its address:\n%s", g.out.String())
	}
	return g
}

// deployEnvValue is the value exec.Cmd passes for key from env: the last one.
func deployEnvValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// deployOpsPaths are ops endpoints the gateway serves on its ops listener
// (OPS_ADDR) and nowhere else.
var deployOpsPaths = []string{"/metrics", "/stats", "/monitor", "/api/system-metrics", "/admin/config", "/admin/blocked"}

// deployCheckOpsSplit checks that gw serves the ops endpoints on its ops
// listener only, and that its public /health tells the status and nothing
// about routes or backends.
func deployCheckOpsSplit(t testing.TB, gw *deployGateway) {
	t.Helper()
	if gw.OpsAddr == "" {
		t.Fatal("the gateway has no ops listener")
	}
	for _, p := range deployOpsPaths {
		if code, body := deployGet(t, "http://"+gw.Addr+p); code != http.StatusNotFound {
			t.Errorf("public listener %s: %d %.200s, want 404 (an ops endpoint)", p, code, body)
		}
		// The admin API answers 401/403 without a token; what matters
		// is that it is there.
		if code, body := deployGet(t, "http://"+gw.OpsAddr+p); code == http.StatusNotFound {
			t.Errorf("ops listener %s: 404 %.200s, want the endpoint", p, body)
		}
	}
	var pub, ops map[string]any
	code, body := deployGet(t, "http://"+gw.Addr+"/health")
	if err := json.Unmarshal([]byte(body), &pub); err != nil || code != http.StatusOK || len(pub) != 1 || pub["status"] == nil {
		t.Errorf("public /health: %d %.300s, want only a status", code, body)
	}
	code, body = deployGet(t, "http://"+gw.OpsAddr+"/health")
	if err := json.Unmarshal([]byte(body), &ops); err != nil || code != http.StatusOK || ops["routes"] == nil {
		t.Errorf("ops /health: %d %.300s, want the status with routes and backends", code, body)
	}
}

// deployFreePort returns a loopback port that was free a moment ago, for
// programs (nginx, prometheus) that cannot report the port they bound.
func deployFreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// deployWaitHTTP polls url until it answers 200 or the timeout passes.
func deployWaitHTTP(t testing.TB, url string, timeout time.Duration) {
	t.Helper()
	c := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(timeout)
	for {
		resp, err := c.Get(url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v (last error %v)", url, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// deployGet fetches url and returns status and body.
func deployGet(t testing.TB, url string) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// deployMetricNames returns the metric family names a gateway exposes on
// /metrics (histograms and summaries under their family name).
func deployMetricNames(t testing.TB, metricsURL string) map[string]bool {
	t.Helper()
	code, body := deployGet(t, metricsURL)
	if code != http.StatusOK {
		t.Fatalf("%s: %d", metricsURL, code)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if f, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(f)[0]] = true
		}
	}
	return names
}

var deployVarLiteral = regexp.MustCompile(`"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*)"`)

// deployConfigVars returns every environment variable name the gateway's
// configuration reads, taken from internal/config's source (its upper-case string
// literals), so a manifest naming a variable the gateway does not know fails.
func deployConfigVars(t testing.TB) map[string]bool {
	t.Helper()
	vars := map[string]bool{
		// Read by the OpenTelemetry SDK itself, documented in docs/operations.md.
		"OTEL_TRACES_SAMPLER":     true,
		"OTEL_TRACES_SAMPLER_ARG": true,
		// Read by the Go runtime (cmd/gateway/gc.go documents them).
		"GOGC":       true,
		"GOMEMLIMIT": true,
	}
	// Every variable is read by name from a string literal in config.go.
	for _, m := range deployVarLiteral.FindAllStringSubmatch(deployRead(t, "internal/config/config.go"), -1) {
		vars[m[1]] = true
	}
	if !vars["GATEWAY_PORT"] || !vars["TRUSTED_PROXIES"] || len(vars) < 40 {
		t.Fatalf("could not read the configuration variables from internal/config/config.go (found %d)", len(vars))
	}
	return vars
}

// deployKnownVar reports whether name is a configuration variable, counting
// the ROUTE_<NAME>_PREFIX / ROUTE_<NAME>_URL family.
func deployKnownVar(vars map[string]bool, name string) bool {
	if vars[name] {
		return true
	}
	if r, ok := strings.CutPrefix(name, "ROUTE_"); ok {
		return len(r) > 0 && (strings.HasSuffix(r, "_PREFIX") || strings.HasSuffix(r, "_URL"))
	}
	return false
}

// deploySorted returns m's keys in order, for stable messages.
func deploySorted[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// exitCode runs cmd and returns its exit status and combined output; a
// command that could not run at all fails the test.
func exitCode(t *testing.T, cmd *exec.Cmd) (int, string) {
	t.Helper()
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &ee):
		return ee.ExitCode(), string(out)
	}
	t.Fatal(err)
	return -1, ""
}

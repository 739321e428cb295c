package gateway

// Cluster mode proven on separate gateway processes sharing one
// real redis-server: each process has its own memory, so whatever they
// agree on went through Redis.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

const clusterAdminToken = "cluster-test-admin-token-0123456789"

var (
	gatewayBinOnce sync.Once
	gatewayBinPath string
	gatewayBinErr  error
)

// gatewayBin is $GATEWAY_BIN (make test builds it once), else a binary
// built here once per test run.
func gatewayBin(t *testing.T) string {
	t.Helper()
	gatewayBinOnce.Do(func() {
		if p := os.Getenv("GATEWAY_BIN"); p != "" {
			gatewayBinPath = p
			return
		}
		dir, err := os.MkdirTemp("", "gateway-cluster-test")
		if err != nil {
			gatewayBinErr = err
			return
		}
		gatewayBinPath = filepath.Join(dir, "gateway")
		out, err := exec.Command("go", "build", "-o", gatewayBinPath, "../../cmd/gateway").CombinedOutput()
		if err != nil {
			gatewayBinErr = fmt.Errorf("building gateway: %v\n%s", err, out)
		}
	})
	if gatewayBinErr != nil {
		t.Fatal(gatewayBinErr)
	}
	return gatewayBinPath
}

// replicaProc is one gateway process.
type replicaProc struct {
	cmd    *exec.Cmd
	url    string
	opsURL string // OPS_ADDR: /metrics, /health with routes, /admin/*
	out    *testutil.SyncBuffer
	exited chan struct{}
}

// startReplica runs the gateway binary with env (plus a loopback port) and
// waits for its "gateway listening" line.
func startReplica(t *testing.T, env map[string]string) *replicaProc {
	t.Helper()
	cmd := exec.Command(gatewayBin(t))
	cmd.Dir = t.TempDir()
	// The tests' clients name their IP in X-Forwarded-For, sent from
	// loopback: loopback is the trusted proxy.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "GATEWAY_PORT=127.0.0.1:0", "OPS_ADDR=127.0.0.1:0",
		"TRUSTED_PROXIES=127.0.0.1,::1", "DASHBOARD=off", "LOG_LEVEL=info"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := &replicaProc{cmd: cmd, out: &testutil.SyncBuffer{}, exited: make(chan struct{})}
	cmd.Stderr = p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			p.out.Write(append(sc.Bytes(), '\n'))
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "gateway listening" {
				a, _ := m["addr"].(string)
				ops, _ := m["ops_addr"].(string)
				select {
				case addr <- [2]string{a, ops}:
				default:
				}
			}
		}
		_ = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("replica %s log:\n%s", p.url, p.out.String())
		}
	})
	select {
	case a := <-addr:
		p.url, p.opsURL = "http://"+a[0], "http://"+a[1]
	case <-p.exited:
		t.Fatalf("gateway exited at boot:\n%s", p.out.String())
	case <-time.After(20 * time.Second):
		t.Fatalf("gateway did not start:\n%s", p.out.String())
	}
	return p
}

func (p *replicaProc) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

// clusterClient keeps connections alive: thousands of requests in a test.
var clusterClient = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 64}}

// do sends method path to p as client ip (X-Forwarded-For from the
// trusted loopback) and returns the status, or an error.
func (p *replicaProc) do(method, path, ip string, admin bool) (int, []byte, error) {
	base := p.url
	if strings.HasPrefix(path, "/admin/") || path == "/metrics" || path == "/health" {
		base = p.opsURL
	}
	req, err := http.NewRequest(method, base+path, nil)
	if err != nil {
		return 0, nil, err
	}
	if ip != "" {
		req.Header.Set("X-Forwarded-For", ip)
	}
	if admin {
		req.Header.Set("Authorization", "Bearer "+clusterAdminToken)
	}
	resp, err := clusterClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

func (p *replicaProc) status(t *testing.T, path, ip string) int {
	t.Helper()
	code, _, err := p.do(http.MethodGet, path, ip, false)
	if err != nil {
		t.Fatalf("GET %s%s as %s: %v", p.url, path, ip, err)
	}
	return code
}

func (p *replicaProc) health(t *testing.T) string {
	t.Helper()
	_, b, err := p.do(http.MethodGet, "/health", "", false)
	if err != nil {
		t.Fatalf("GET /health: %v", err)
	}
	var h struct{ Status string }
	_ = json.Unmarshal(b, &h)
	return h.Status
}

// clusterEnv is the shared configuration of the replicas.
func clusterEnv(t *testing.T, redisAddr string, extra map[string]string) map[string]string {
	t.Helper()
	up, _ := serve(t, echoHandler("up"))
	env := map[string]string{
		"CLUSTER_MODE":            "redis",
		"REDIS_ADDR":              redisAddr,
		"ADMIN_TOKEN":             clusterAdminToken,
		"MAX_REQUESTS_PER_SECOND": "10000",
		"MAX_BURST_SIZE":          "10000",
		"DDOS_THRESHOLD":          "1000000",
		"MAX_CONNS_PER_IP":        "0",
		"ENABLE_CACHING":          "false",
		"SERVICE_ROUTES": routes(
			`{"prefix":"/api","target_url":"`+up+`"}`,
			// Effectively no refill during a test: what passes is the burst.
			`{"prefix":"/limited","target_url":"`+up+`","rate_limit_rps":0.0001,"rate_limit_burst":30}`,
		),
	}
	for k, v := range extra {
		env[k] = v
	}
	return env
}

func startReplicas(t *testing.T, n int, env map[string]string) []*replicaProc {
	t.Helper()
	ps := make([]*replicaProc, n)
	var wg sync.WaitGroup
	for i := range ps {
		wg.Go(func() { ps[i] = startReplica(t, env) })
	}
	wg.Wait()
	for _, p := range ps {
		if p == nil {
			t.FailNow()
		}
	}
	return ps
}

// spreadAllowed sends total requests to path as ip, replica chosen by pick,
// from 6 concurrent clients, and returns how many got 200.
func spreadAllowed(t *testing.T, ps []*replicaProc, path, ip string, total int, pick func(i int) int) int {
	t.Helper()
	var allowed, next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, total)
	for range 6 {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				code, _, err := ps[pick(i)].do(http.MethodGet, path, ip, false)
				switch {
				case err != nil:
					errs <- err
				case code == http.StatusOK:
					allowed.Add(1)
				case code != http.StatusTooManyRequests:
					errs <- fmt.Errorf("status %d", code)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("request to %s as %s: %v", path, ip, err)
	}
	return int(allowed.Load())
}

func TestClusterSharedLimitIsExactAcrossReplicas(t *testing.T) {
	t.Parallel()
	redisAddr, _ := testsvc.Redis(t)
	ps := startReplicas(t, 3, clusterEnv(t, redisAddr, map[string]string{
		"MAX_REQUESTS_PER_SECOND": "0.0001", "MAX_BURST_SIZE": "60",
	}))
	rng := rand.New(rand.NewPCG(1, 2))
	var rmu sync.Mutex
	tests := []struct {
		name string
		path string
		want int // the burst: what one gateway would allow
		pick func(i int) int
	}{
		{name: "per-IP limit, all on one replica", path: "/api/x", want: 60, pick: func(int) int { return 0 }},
		{name: "per-IP limit, round robin", path: "/api/x", want: 60, pick: func(i int) int { return i % 3 }},
		{name: "per-IP limit, random", path: "/api/x", want: 60, pick: func(int) int { rmu.Lock(); defer rmu.Unlock(); return rng.IntN(3) }},
		{name: "per-IP limit, 80/10/10", path: "/api/x", want: 60, pick: func(i int) int { return []int{0, 0, 0, 0, 0, 0, 0, 0, 1, 2}[i%10] }},
		{name: "route limit, round robin", path: "/limited/x", want: 30, pick: func(i int) int { return i % 3 }},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ip := fmt.Sprintf("203.0.113.%d", 10+i)
			got := spreadAllowed(t, ps, tc.path, ip, 3*60, tc.pick)
			// Local limits would allow up to 3× the burst here.
			if lo, hi := float64(tc.want)*0.95, float64(tc.want)*1.05; float64(got) < lo || float64(got) > hi {
				t.Fatalf("3 replicas allowed %d of 180 requests, want %d ±5%% (what one gateway allows)", got, tc.want)
			}
		})
	}
}

func TestClusterListsAndBlocksReachEveryReplica(t *testing.T) {
	t.Parallel()
	redisAddr, _ := testsvc.Redis(t)
	env := clusterEnv(t, redisAddr, map[string]string{"DDOS_THRESHOLD": "30", "IP_WHITELIST": "198.51.100.0/24"})
	ps := startReplicas(t, 3, env)

	// A deny entry added on one replica is enforced by the others within a second.
	const denied = "203.0.113.77"
	if code, b, err := ps[0].do(http.MethodPost, "/admin/blacklist?ip="+denied, "", true); err != nil || code != http.StatusOK {
		t.Fatalf("POST /admin/blacklist: %d %s %v", code, b, err)
	}
	start := time.Now()
	for _, p := range ps[1:] {
		for p.status(t, "/api/x", denied) != http.StatusForbidden {
			if time.Since(start) > time.Second {
				t.Fatalf("deny entry not enforced on %s within 1s", p.url)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("deny entry enforced on every replica after %v", time.Since(start))

	// DDoS counts add up: 12 requests on each replica is 36 > 30 from one
	// client, though each replica alone saw fewer than the threshold.
	const flood = "203.0.113.88"
	for _, p := range ps {
		for range 12 {
			p.status(t, "/api/x", flood)
		}
	}
	start = time.Now()
	for _, p := range ps {
		for {
			code, _, err := p.do(http.MethodGet, "/api/x", flood, false)
			if err == nil && code == http.StatusTooManyRequests {
				break
			}
			if time.Since(start) > time.Second {
				t.Fatalf("cluster-wide DDoS block not enforced on %s within 1s (last %d %v)", p.url, code, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, b, _ := p.do(http.MethodGet, "/admin/blocked", "", true)
		if !strings.Contains(string(b), flood) {
			t.Fatalf("%s /admin/blocked: %s, want %s", p.url, b, flood)
		}
	}

	// A restarted replica gets the lists (boot entries and admin changes)
	// and the blocks back from Redis.
	ps[2].kill()
	p := startReplica(t, clusterEnv(t, redisAddr, map[string]string{"DDOS_THRESHOLD": "30"})) // no IP_WHITELIST of its own
	_, b, err := p.do(http.MethodGet, "/admin/blacklist", "", true)
	if err != nil || !strings.Contains(string(b), denied) {
		t.Fatalf("restarted replica's blacklist: %s %v", b, err)
	}
	_, b, _ = p.do(http.MethodGet, "/admin/whitelist", "", true)
	if !strings.Contains(string(b), "198.51.100.0/24") {
		t.Fatalf("restarted replica's whitelist: %s", b)
	}
	if code := p.status(t, "/api/x", denied); code != http.StatusForbidden {
		t.Fatalf("restarted replica let a denied client through: %d", code)
	}
	if code := p.status(t, "/api/x", flood); code != http.StatusTooManyRequests {
		t.Fatalf("restarted replica let a blocked client through: %d", code)
	}

	// Removing the entry on the new replica reaches the old ones.
	if code, b, err := p.do(http.MethodDelete, "/admin/blacklist?ip="+denied, "", true); err != nil || code != http.StatusOK {
		t.Fatalf("DELETE /admin/blacklist: %d %s %v", code, b, err)
	}
	start = time.Now()
	for ps[0].status(t, "/api/x", denied) != http.StatusOK {
		if time.Since(start) > time.Second {
			t.Fatal("removal not applied on another replica within 1s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Lifting the block on one replica lifts it everywhere.
	if code, b, err := ps[1].do(http.MethodDelete, "/admin/blocked?ip="+flood, "", true); err != nil || code != http.StatusOK {
		t.Fatalf("DELETE /admin/blocked: %d %s %v", code, b, err)
	}
	start = time.Now()
	for _, q := range []*replicaProc{ps[0], p} {
		for q.status(t, "/api/x", flood) != http.StatusOK {
			if time.Since(start) > time.Second {
				t.Fatalf("unblock not applied on %s within 1s", q.url)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

func TestClusterSurvivesRedisOutage(t *testing.T) {
	t.Parallel()
	srv := testsvc.RestartableRedis(t)
	ps := startReplicas(t, 3, clusterEnv(t, srv.Addr, nil))
	rr := func(i int) int { return i % 3 }
	for _, p := range ps {
		if s := p.health(t); s != "ok" {
			t.Fatalf("%s /health %q before the outage", p.url, s)
		}
	}
	if got := spreadAllowed(t, ps, "/limited/x", "203.0.113.1", 90, rr); got != 30 {
		t.Fatalf("before the outage: %d allowed, want the shared burst 30", got)
	}

	// Steady load on every replica from many clients, under their limits,
	// through the outage and the recovery: not one request may fail.
	stop := make(chan struct{})
	var sent, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				code, _, err := ps[(w+i)%3].do(http.MethodGet, "/api/load", fmt.Sprintf("192.0.2.%d", 1+(w*37+i)%200), false)
				sent.Add(1)
				if err != nil || code != http.StatusOK {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d err %v", code, err))
				}
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	srv.Stop()
	waitHealth(t, ps, "degraded", 3*time.Second)
	// Limits fall back to local: each replica allows its own burst.
	if got := spreadAllowed(t, ps, "/limited/x", "203.0.113.2", 120, rr); got != 90 {
		t.Fatalf("during the outage: %d allowed, want 3 × 30 (local limits)", got)
	}
	time.Sleep(300 * time.Millisecond)

	srv.Start() // back, empty
	waitHealth(t, ps, "ok", 5*time.Second)
	if got := spreadAllowed(t, ps, "/limited/x", "203.0.113.3", 90, rr); got != 30 {
		t.Fatalf("after recovery: %d allowed, want the shared burst 30 again", got)
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d requests failed across the Redis outage (first: %v)", n, sent.Load(), firstErr.Load())
	}
	t.Logf("%d requests, none failed, across the outage and recovery", sent.Load())

	for _, p := range ps {
		logs := p.out.String()
		if n := strings.Count(logs, "redis unavailable"); n != 1 {
			t.Errorf("%s logged the outage %d times, want once", p.url, n)
		}
		if !strings.Contains(logs, "redis reachable again") {
			t.Errorf("%s did not log the recovery", p.url)
		}
		_, b, _ := p.do(http.MethodGet, "/metrics", "", false)
		if v := metricLine(string(b), "cluster_fallback_total"); v == "" || v == "0" {
			t.Errorf("%s cluster_fallback_total = %q, want > 0", p.url, v)
		}
	}
}

func waitHealth(t *testing.T, ps []*replicaProc, want string, within time.Duration) {
	t.Helper()
	start := time.Now()
	for _, p := range ps {
		for p.health(t) != want {
			if time.Since(start) > within {
				t.Fatalf("%s /health is %q, want %q within %v", p.url, p.health(t), want, within)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	t.Logf("every replica %s after %v", want, time.Since(start))
}

// metricLine returns the value of an unlabelled metric in an exposition.
func metricLine(exposition, name string) string {
	for l := range strings.SplitSeq(exposition, "\n") {
		if v, ok := strings.CutPrefix(l, name+" "); ok {
			return v
		}
	}
	return ""
}

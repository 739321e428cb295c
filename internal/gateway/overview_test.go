package gateway

import (
	"encoding/json"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/overview"
)

// TestSystemMetricsThroughTheGateway: /api/system-metrics reports the
// traffic the gateway served (rate, percentiles, status split) and plausible
// host figures; Overview carries the same counters and the backends' state
// for the dashboard.
func TestSystemMetricsThroughTheGateway(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"SERVICE_ROUTES": routes(`{"prefix":"/api","target_url":"`+up+`"}`,
			`{"prefix":"/legacy","target_url":"`+deadURL(t)+`"}`),
		"HEALTH_CHECK_INTERVAL": "100ms", "HEALTH_CHECK_FALLS": "1", "RETRY_MAX": "1", "ENABLE_CACHING": "true",
		"CACHE_TTL": "1m", // the echo answers carry no freshness of their own
	})
	for range 40 {
		get(t, gw.URL+"/api/x")
	}
	for range 2 {
		get(t, gw.URL+"/legacy/x")
	}

	type metrics struct {
		Host struct {
			CPUPercent *float64 `json:"cpu_percent"`
			CPUCores   int      `json:"cpu_cores"`
			Memory     struct {
				Total uint64 `json:"total_bytes"`
				Used  uint64 `json:"used_bytes"`
			} `json:"memory"`
			Disk struct {
				Total uint64 `json:"total_bytes"`
			} `json:"disk"`
		} `json:"host"`
		Process struct {
			CPUPercent *float64 `json:"cpu_percent"`
			Goroutines int      `json:"goroutines"`
		} `json:"process"`
		Traffic struct {
			RequestsTotal int64                       `json:"requests_total"`
			RPS           *float64                    `json:"requests_per_second"`
			Responses     map[string]int64            `json:"responses"`
			LatencyMS     struct{ P50, P99 *float64 } `json:"latency_ms"`
		} `json:"traffic"`
	}
	var m metrics
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, body := get(t, gw.OpsURL+"/api/system-metrics")
		if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" {
			t.Fatalf("/api/system-metrics: %d %v", resp.StatusCode, resp.Header)
		}
		m = metrics{}
		if err := json.Unmarshal(body, &m); err != nil {
			t.Fatalf("%v: %s", err, body)
		}
		if m.Traffic.RequestsTotal >= 42 && m.Traffic.LatencyMS.P50 != nil && m.Host.CPUPercent != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	tr := m.Traffic
	if tr.RequestsTotal < 42 || tr.Responses["2xx"] < 40 || tr.Responses["5xx"] < 2 {
		t.Errorf("traffic not counted: %+v", tr)
	}
	if tr.LatencyMS.P50 == nil || tr.LatencyMS.P99 == nil || *tr.LatencyMS.P50 <= 0 || *tr.LatencyMS.P99 < *tr.LatencyMS.P50 {
		t.Errorf("latency percentiles: p50 %v p99 %v", tr.LatencyMS.P50, tr.LatencyMS.P99)
	}
	if tr.RPS == nil || *tr.RPS < 0 {
		t.Errorf("requests_per_second = %v", tr.RPS)
	}
	cores := float64(runtime.NumCPU())
	if c := m.Host.CPUPercent; c == nil || *c < 0 || *c > 100 {
		t.Errorf("host cpu_percent = %v, want 0–100", c)
	}
	if c := m.Process.CPUPercent; c == nil || *c < 0 || *c > 100*cores {
		t.Errorf("process cpu_percent = %v, want 0–%v", c, 100*cores)
	}
	if mem := m.Host.Memory; mem.Total == 0 || mem.Used == 0 || mem.Used >= mem.Total {
		t.Errorf("memory: used %d of %d", mem.Used, mem.Total)
	}
	if m.Host.Disk.Total == 0 || m.Process.Goroutines < 5 || m.Host.CPUCores != runtime.NumCPU() {
		t.Errorf("host/process: %+v %+v", m.Host, m.Process)
	}

	// The histogram the percentiles come from counts exactly the requests
	// the totals count.
	traffic := gw.G.Endpoints().Traffic()
	if n := len(traffic.Latency.Counts); n == 0 || int64(traffic.Latency.Counts[n-1]) != traffic.Requests {
		t.Errorf("latency histogram total %v, requests %d", traffic.Latency.Counts, traffic.Requests)
	}
	// 40 GETs of one cacheable URL: one miss, then hits.
	if !traffic.CacheKnown || traffic.CacheHits < 30 || traffic.CacheMisses < 1 {
		t.Errorf("cache counters: known %v, %d hits, %d misses", traffic.CacheKnown, traffic.CacheHits, traffic.CacheMisses)
	}

	// Overview: the dashboard's view, with the dead backend down.
	var o overview.Overview
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if o = gw.G.Endpoints().Overview(5); len(o.Routes) == 2 && !o.Routes[1].Backends[0].Alive {
			break
		}
	}
	if len(o.Routes) != 2 || o.Routes[0].Prefix != "/api" || !o.Routes[0].Backends[0].Alive || o.Routes[0].Available != 1 {
		t.Fatalf("routes: %+v", o.Routes)
	}
	if b := o.Routes[1].Backends[0]; b.Alive || o.Routes[1].Available != 0 || b.Breaker == "" {
		t.Errorf("dead backend shown as %+v", b)
	}
	if o.Requests < 42 || o.Status[2] < 40 || o.Status[5] < 2 || o.Uptime <= 0 || o.Version == "" {
		t.Errorf("overview counters: %+v", o)
	}
	if len(o.History) == 0 || len(o.History) > 5 || o.System.Timestamp == "" {
		t.Errorf("overview history %d points, sample %q", len(o.History), o.System.Timestamp)
	}
}

func TestMonitorIsAnOpsEndpoint(t *testing.T) {
	up, _ := serve(t, echoHandler("app"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsAddr := ln.Addr().String()
	ln.Close()
	gw := start(t, map[string]string{"OPS_ADDR": opsAddr, "SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`)})
	for _, p := range []string{"/monitor", "/api/system-metrics"} {
		if resp, body := get(t, gw.URL+p); resp.StatusCode != 200 || decodeEcho(t, body).Name != "app" {
			t.Errorf("public %s answered by the gateway, not routed: %d", p, resp.StatusCode)
		}
	}
	var resp *http.Response
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = client.Get("http://" + opsAddr + "/monitor"); err == nil {
			resp.Body.Close()
			break
		}
	}
	if err != nil || resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") ||
		!strings.Contains(resp.Header.Get("Content-Security-Policy"), "script-src 'sha256-") {
		t.Fatalf("ops /monitor: %v %+v", err, resp)
	}
	r2, body := get(t, "http://"+opsAddr+"/api/system-metrics")
	if r2.StatusCode != 200 || !strings.Contains(string(body), `"traffic"`) {
		t.Errorf("ops /api/system-metrics: %d %s", r2.StatusCode, body)
	}
}

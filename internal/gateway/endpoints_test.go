package gateway

import (
	"encoding/json"
	"net"
	"strings"
	"testing"
	"time"
)

func TestOpsEndpointsMoveToOpsAddr(t *testing.T) {
	up, _ := serve(t, echoHandler("app"))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opsAddr := ln.Addr().String()
	ln.Close()
	gw := start(t, map[string]string{
		"OPS_ADDR":       opsAddr,
		"SERVICE_ROUTES": routes(`{"prefix":"/","target_url":"` + up + `"}`),
	})
	// On the public listener /metrics and /stats are no longer the gateway's:
	// they fall through to the catch-all route.
	for _, p := range []string{"/metrics", "/stats"} {
		resp, body := get(t, gw.URL+p)
		if resp.StatusCode != 200 || decodeEcho(t, body).Name != "app" {
			t.Errorf("public %s answered by the gateway, not routed: %d %s", p, resp.StatusCode, body)
		}
	}
	var ready bool
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if c, err := net.Dial("tcp", opsAddr); err == nil {
			c.Close()
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("ops listener not up")
	}
	resp, body := get(t, "http://"+opsAddr+"/metrics")
	if resp.StatusCode != 200 || !strings.Contains(string(body), "http_requests_total") {
		t.Errorf("ops /metrics: %d", resp.StatusCode)
	}
	resp, body = get(t, "http://"+opsAddr+"/stats")
	var st map[string]any
	if resp.StatusCode != 200 || json.Unmarshal(body, &st) != nil || st["route_count"] != float64(1) {
		t.Errorf("ops /stats: %d %s", resp.StatusCode, body)
	}
	if resp, _ := get(t, "http://"+opsAddr+"/api/anything"); resp.StatusCode != 404 {
		t.Errorf("ops listener proxies routes: %d", resp.StatusCode)
	}
}

func TestStatsCountsRequests(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{"SERVICE_ROUTES": routes(`{"prefix":"/api","target_url":"` + up + `"}`)})
	for range 3 {
		get(t, gw.URL+"/api/x")
	}
	get(t, gw.URL+"/nope")
	_, body := get(t, gw.OpsURL+"/stats")
	var st struct {
		RequestsTotal int64            `json:"requests_total"`
		Responses     map[string]int64 `json:"responses"`
		Algorithm     string           `json:"algorithm"`
		Breakers      map[string]string
		Uptime        *int64 `json:"uptime_seconds"`
	}
	if err := json.Unmarshal(body, &st); err != nil {
		t.Fatal(err)
	}
	if st.RequestsTotal != 4 || st.Responses["2xx"] != 3 || st.Responses["4xx"] != 1 || st.Algorithm != "least-conn" || st.Breakers[up] != "closed" || st.Uptime == nil {
		t.Errorf("/stats = %s", body)
	}
}

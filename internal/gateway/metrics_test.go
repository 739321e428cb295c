package gateway

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
)

// TestMetricsExpositionIsValidBoundedAndDocumented drives traffic that
// exercises the metrics, then checks the exposition with promtool (installed
// by scripts/test-deps.sh), that label cardinality stays bounded whatever
// paths clients send, and that every metric the gateway exposes is listed in
// docs/operations.md, the metrics reference (the list is tested, not hoped).
func TestMetricsExpositionIsValidBoundedAndDocumented(t *testing.T) {
	up, _ := serve(t, echoHandler("a"))
	gw := start(t, map[string]string{
		"TRUSTED_PROXIES": untrusted,
		"MAX_BURST_SIZE":  "5000", "MAX_REQUESTS_PER_SECOND": "5000", "DDOS_THRESHOLD": "100000",
		"ENABLE_CACHING": "true",
		"SERVICE_ROUTES": routes(`{"prefix":"/api","target_url":"`+up+`","require_auth":true}`, `{"prefix":"/open","target_url":"`+up+`"}`),
	})
	for i := range 1000 {
		get(t, fmt.Sprintf("%s/random/%d/%x", gw.URL, i, i*7919))
	}
	get(t, gw.URL+"/open/x")
	get(t, gw.URL+"/api/x")
	_, body := get(t, gw.OpsURL+"/metrics")

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not installed: run scripts/test-deps.sh")
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}

	series := regexp.MustCompile(`(?m)^http_requests_total\{`).FindAll(body, -1)
	if len(series) > 10 {
		t.Errorf("%d http_requests_total series after 1000 random paths: labels follow client input", len(series))
	}
	if bytes.Contains(body, []byte("/random/")) {
		t.Error("a raw client path became a label value")
	}

	doc, err := os.ReadFile("../../docs/operations.md")
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^# TYPE (\S+) `).FindAllSubmatch(body, -1) {
		name := string(m[1])
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") || strings.HasPrefix(name, "promhttp_") {
			continue
		}
		names[name] = true
	}
	for _, want := range []string{"http_requests_total", "http_request_duration_seconds", "active_connections",
		"backend_health_status", "circuit_breaker_trips_total", "blocked_ips_total", "rate_limited_requests_total",
		"upstream_request_duration_seconds", "upstream_retries_total", "build_info",
		"cache_hits_total", "cache_misses_total", "cache_errors_total"} {
		if !names[want] {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	for name := range names {
		if !bytes.Contains(doc, []byte("`"+name)) {
			t.Errorf("metric %s is not documented in docs/operations.md", name)
		}
	}
}

package config

import (
	"encoding/json"
	"testing"
)

// TestRouteObjectJSON pins what GET /admin/config shows of each route, to
// the byte: the member order an operator reads, the members left out when
// they hold nothing (name, methods, cache_ttl_secs), and cache_ttl_secs 0
// for a route the cache never touches.
func TestRouteObjectJSON(t *testing.T) {
	c, err := load(map[string]string{
		"SERVICE_ROUTES": `[
			{"prefix": "/api/users", "targets": [{"url": "http://u1:8080", "weight": 3}, {"url": "http://u2:8080"}],
			 "strip_prefix": false, "require_auth": true, "timeout_secs": 2.5, "cache_ttl_secs": 0,
			 "cache_authenticated": true, "algo": "Weighted", "max_body_bytes": 100,
			 "rate_limit_rps": 2.5, "methods": ["POST", "GET"], "breaker_on_5xx": true, "upstream_keepalive": false},
			{"prefix": "/", "target_url": "http://web:80,http://web2:80/a&b", "weight": 7, "cache_ttl_secs": 90.5,
			 "rate_limit_rps": 10, "rate_limit_burst": 4}
		]`,
		"ROUTE_EXTRA_PREFIX": "/extra",
		"ROUTE_EXTRA_URL":    "http://extra",
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	got, err := json.Marshal(c.View().Routes)
	if err != nil {
		t.Fatal(err)
	}
	const want = `[` +
		`{"prefix":"/","targets":[{"url":"http://web:80","weight":7},{"url":"http://web2:80/a\u0026b","weight":7}],"strip_prefix":true,"require_auth":false,"timeout_secs":30,"cache_ttl_secs":90.5,"cache_authenticated":false,"algo":"least-conn","max_body_bytes":10485760,"rate_limit_rps":10,"rate_limit_burst":4,"breaker_on_5xx":false,"upstream_keepalive":true,"upstream_http2":false},` +
		`{"prefix":"/api/users","targets":[{"url":"http://u1:8080","weight":3},{"url":"http://u2:8080","weight":1}],"strip_prefix":false,"require_auth":true,"timeout_secs":2.5,"cache_ttl_secs":0,"cache_authenticated":true,"algo":"weighted","max_body_bytes":100,"rate_limit_rps":2.5,"rate_limit_burst":3,"methods":["GET","HEAD","POST"],"breaker_on_5xx":true,"upstream_keepalive":false,"upstream_http2":false},` +
		`{"name":"extra","prefix":"/extra","targets":[{"url":"http://extra","weight":1}],"strip_prefix":true,"require_auth":false,"timeout_secs":30,"cache_authenticated":false,"algo":"least-conn","max_body_bytes":10485760,"rate_limit_rps":0,"rate_limit_burst":0,"breaker_on_5xx":false,"upstream_keepalive":true,"upstream_http2":false}` +
		`]`
	if string(got) != want {
		t.Errorf("routes in the view:\n got %s\nwant %s", got, want)
	}
}

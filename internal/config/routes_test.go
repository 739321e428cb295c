package config

import (
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvRoutes(t *testing.T) {
	c, err := load(map[string]string{
		"ROUTE_BILLING_PREFIX": "/api/billing/",
		"ROUTE_BILLING_URL":    "http://billing-1:7000, http://Billing-2:7000/base/ ,",
		"ROUTE_Agent_PREFIX":   "/api/agent",
		"ROUTE_Agent_URL":      "https://agent:8788",
		"ROUTE_BLANK_PREFIX":   "", // both blank: no route, no problem
		"ROUTE_BLANK_URL":      "",
		"ROUTE_OTHER_TIMEOUT":  "5", // not a route variable
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.RoutesSource != "ROUTE_*" {
		t.Errorf("RoutesSource = %q", c.RoutesSource)
	}
	type target struct {
		url    string
		weight int
	}
	type route struct {
		name, prefix string
		targets      []target
	}
	var got []route
	for _, r := range c.Routes {
		var ts []target
		for _, tg := range r.Targets {
			ts = append(ts, target{tg.URL.String(), tg.Weight})
		}
		got = append(got, route{r.Name, r.Prefix, ts})
		if !r.StripPrefix || r.RequireAuth || r.Timeout != 30*time.Second || r.CacheTTL != 0 || r.NoCache || !r.UpstreamKeepalive ||
			r.Algo != "least-conn" || r.MaxBodyBytes != 10485760 || r.RateLimitRPS != 0 || r.RateLimitBurst != 0 {
			t.Errorf("route %s does not carry the global defaults: %+v", r.Prefix, r)
		}
	}
	want := []route{
		{"agent", "/api/agent", []target{{"https://agent:8788", 1}}},
		{"billing", "/api/billing", []target{{"http://billing-1:7000", 1}, {"http://billing-2:7000/base", 1}}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", got, want)
	}
}

func TestServiceRoutes(t *testing.T) {
	c, err := load(map[string]string{
		"LOAD_BALANCING_ALGO": "round-robin",
		"CONNECTION_TIMEOUT":  "12s",
		"CACHE_TTL":           "1m",
		"MAX_BODY_BYTES":      "2048",
		"SERVICE_ROUTES": `[
			{"prefix": "/api/users", "targets": [{"url": "http://u1:8080", "weight": 3}, {"url": "http://u2:8080"}],
			 "strip_prefix": false, "require_auth": true, "timeout_secs": 2.5, "cache_ttl_secs": 0,
			 "cache_authenticated": true, "algo": "Weighted", "max_body_bytes": 100,
			 "rate_limit_rps": 2.5, "methods": ["POST", "GET"], "breaker_on_5xx": true, "upstream_keepalive": false},
			{"prefix": "/", "target_url": "http://web:80,http://web2:80", "weight": 7, "rate_limit_rps": 10, "rate_limit_burst": 4},
			{"prefix": "/api/mixed", "target_url": "http://m1", "targets": [{"url": "http://m2", "weight": 2}], "timeout_secs": null}
		]`,
		"ROUTE_EXTRA_PREFIX": "/extra",
		"ROUTE_EXTRA_URL":    "http://extra",
	})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if c.RoutesSource != "SERVICE_ROUTES,ROUTE_*" {
		t.Errorf("RoutesSource = %q", c.RoutesSource)
	}
	tg := func(u string, w int) Target { return Target{URL: mustURL(t, u), Weight: w} }
	want := []Route{
		{Prefix: "/", Targets: []Target{tg("http://web:80", 7), tg("http://web2:80", 7)}, StripPrefix: true,
			Timeout: 12 * time.Second, CacheTTL: time.Minute, Algo: "round-robin", MaxBodyBytes: 2048,
			RateLimitRPS: 10, RateLimitBurst: 4, UpstreamKeepalive: true},
		{Prefix: "/api/mixed", Targets: []Target{tg("http://m1", 1), tg("http://m2", 2)}, StripPrefix: true,
			Timeout: 12 * time.Second, CacheTTL: time.Minute, Algo: "round-robin", MaxBodyBytes: 2048,
			UpstreamKeepalive: true},
		{Prefix: "/api/users", Targets: []Target{tg("http://u1:8080", 3), tg("http://u2:8080", 1)},
			RequireAuth: true, Timeout: 2500 * time.Millisecond, CacheTTL: 0, NoCache: true, CacheAuthenticated: true,
			Algo: "weighted", MaxBodyBytes: 100, RateLimitRPS: 2.5, RateLimitBurst: 3,
			Methods: []string{"GET", "HEAD", "POST"}, BreakerOn5xx: true, UpstreamKeepalive: false},
		{Name: "extra", Prefix: "/extra", Targets: []Target{tg("http://extra", 1)}, StripPrefix: true,
			Timeout: 12 * time.Second, CacheTTL: time.Minute, Algo: "round-robin", MaxBodyBytes: 2048,
			UpstreamKeepalive: true},
	}
	if !reflect.DeepEqual(c.Routes, want) {
		t.Errorf("routes:\n got %+v\nwant %+v", c.Routes, want)
	}
}

func TestDefaultRoutesOnlyInDevelopment(t *testing.T) {
	tests := []struct {
		name       string
		env        map[string]string
		wantRoutes int
		wantSource string
		wantErr    string
		wantWarn   string
	}{
		{name: "development without routes", env: nil, wantRoutes: 9, wantSource: "defaults", wantWarn: "SERVICE_ROUTES: not set"},
		{name: "production without routes", env: map[string]string{"GATEWAY_ENV": "production"}, wantErr: "SERVICE_ROUTES: no routes configured"},
		{name: "CONFIG_FILE brings the routes", env: map[string]string{"CONFIG_FILE": writeConfigFile(t, "routes.yaml", "routes: [{prefix: /a, target_url: 'http://a'}]")}, wantRoutes: 1, wantSource: "CONFIG_FILE"},
		{name: "production with CONFIG_FILE", env: map[string]string{"GATEWAY_ENV": "production", "CONFIG_FILE": writeConfigFile(t, "routes.yaml", "routes: [{prefix: /a, target_url: 'http://a'}]")}, wantRoutes: 1, wantSource: "CONFIG_FILE"},
		{name: "ROUTE_* replaces the defaults", env: map[string]string{"ROUTE_A_PREFIX": "/a", "ROUTE_A_URL": "http://a"}, wantRoutes: 1, wantSource: "ROUTE_*"},
		{name: "an explicit empty SERVICE_ROUTES means no routes", env: map[string]string{"SERVICE_ROUTES": " [ ] "}, wantRoutes: 0, wantSource: "SERVICE_ROUTES", wantWarn: "SERVICE_ROUTES: no routes configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(tt.env)
			if tt.wantErr != "" {
				wantProblems(t, c, err, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if len(c.Routes) != tt.wantRoutes || c.RoutesSource != tt.wantSource {
				t.Errorf("%d routes from %q, want %d from %q", len(c.Routes), c.RoutesSource, tt.wantRoutes, tt.wantSource)
			}
			if tt.wantWarn != "" && !slices.ContainsFunc(c.Warnings, func(s string) bool { return strings.HasPrefix(s, tt.wantWarn) }) {
				t.Errorf("no warning starting with %q in %q", tt.wantWarn, c.Warnings)
			}
		})
	}
}

func TestRouteNormalisation(t *testing.T) {
	c, err := load(map[string]string{"SERVICE_ROUTES": `[
		{"prefix": "/", "target_url": "http://a"},
		{"prefix": "/x/", "target_url": "HTTP://Upper.Example:8080/Base/"},
		{"prefix": "/r", "target_url": "http://b", "rate_limit_rps": 0.2}
	]`})
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	var prefixes []string
	for _, r := range c.Routes {
		prefixes = append(prefixes, r.Prefix)
	}
	if !slices.Equal(prefixes, []string{"/", "/r", "/x"}) {
		t.Errorf("prefixes = %q", prefixes)
	}
	if got := c.Routes[2].Targets[0].URL.String(); got != "http://upper.example:8080/Base" {
		t.Errorf("target = %q", got)
	}
	if got := c.Routes[1].RateLimitBurst; got != 1 {
		t.Errorf("burst for 0.2 rps = %d, want 1", got)
	}
}

func TestRouteProblems(t *testing.T) {
	sr := func(js string) map[string]string { return map[string]string{"SERVICE_ROUTES": js} }
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		// Document shape.
		{name: "not JSON", env: sr(`/api=http://a`), want: []string{`SERVICE_ROUTES: invalid value "/api=http://a": expected a JSON array of route objects`}},
		{name: "an object instead of an array", env: sr(`{"prefix":"/a","target_url":"http://a"}`), want: []string{`SERVICE_ROUTES: invalid value "{\"prefix\"`}},
		{name: "null", env: sr(`null`), want: []string{`SERVICE_ROUTES: invalid value "null": expected a JSON array of route objects (it is null)`}},
		{name: "trailing data", env: sr(`[{"prefix":"/a","target_url":"http://a"}] []`), want: []string{`SERVICE_ROUTES: invalid value: trailing data after the JSON array`}},
		{name: "element not an object", env: sr(`[{"prefix":"/a","target_url":"http://a"}, "/b"]`), want: []string{`SERVICE_ROUTES[1]: invalid value "/b": expected a JSON object`}},
		{name: "unknown field", env: sr(`[{"prefix":"/a","target_url":"http://a","retries":3}]`), want: []string{`SERVICE_ROUTES[0]: unknown field "retries" (expected one of algo, breaker_on_5xx, cache_authenticated, cache_ttl_secs, max_body_bytes, methods, prefix, rate_limit_burst, rate_limit_rps, require_auth, strip_prefix, target_url, targets, timeout_secs, upstream_http2, upstream_keepalive, upstream_tls, weight)`}},
		{name: "field in another case", env: sr(`[{"Prefix":"/a","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0]: unknown field "Prefix" (did you mean "prefix"?)`}},
		{name: "field given twice", env: sr(`[{"prefix":"/a","prefix":"/b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: given twice`}},
		{name: "unknown target field", env: sr(`[{"prefix":"/a","targets":[{"url":"http://a","wieght":2}]}]`), want: []string{`SERVICE_ROUTES[0].targets[0]: unknown field "wieght" (expected one of url, weight)`}},
		{name: "wrong types", env: sr(`[{"prefix":"/a","target_url":"http://a","strip_prefix":"no","weight":"2","timeout_secs":"5"}]`),
			want: []string{`SERVICE_ROUTES[0].strip_prefix: invalid value "no": expected true or false`, `SERVICE_ROUTES[0].weight: invalid value "2": expected an integer`, `SERVICE_ROUTES[0].timeout_secs: invalid value "5": expected a number`}},
		{name: "prefix of the wrong type is not also missing", env: sr(`[{"prefix":5,"target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value 5: expected a string`}},

		// Required members.
		{name: "no prefix", env: sr(`[{"target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: required (a path such as "/api")`}},
		{name: "no target", env: sr(`[{"prefix":"/a"}]`), want: []string{`SERVICE_ROUTES[0]: no target: expected target_url or a non-empty targets array`}},
		{name: "empty targets", env: sr(`[{"prefix":"/a","targets":[],"target_url":" , "}]`), want: []string{`SERVICE_ROUTES[0]: no target`}},
		{name: "target without url", env: sr(`[{"prefix":"/a","targets":[{"weight":2}]}]`), want: []string{`SERVICE_ROUTES[0].targets[0].url: required (an absolute URL such as "http://10.0.0.5:8080")`}},

		// Prefix forms.
		{name: "relative prefix", env: sr(`[{"prefix":"api","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "api": expected a clean path prefix (it must start with "/")`}},
		{name: "empty prefix", env: sr(`[{"prefix":"","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "": expected a clean path prefix`}},
		{name: "double slash", env: sr(`[{"prefix":"/a//b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a//b": expected a clean path prefix (it has "//")`}},
		{name: "dot segment", env: sr(`[{"prefix":"/a/./b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a/./b": expected a clean path prefix (it has a "." segment)`}},
		{name: "dot-dot segment", env: sr(`[{"prefix":"/a/../b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a/../b": expected a clean path prefix (it has a ".." segment)`}},
		{name: "trailing dot", env: sr(`[{"prefix":"/a/.","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a/."`}},
		{name: "trailing dot-dot", env: sr(`[{"prefix":"/a/..","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a/.."`}},
		{name: "percent", env: sr(`[{"prefix":"/a%2fb","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a%2fb"`}},
		{name: "backslash", env: sr(`[{"prefix":"/a\\b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a\\b"`}},
		{name: "NUL", env: sr(`[{"prefix":"/a\u0000","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a\x00": expected a clean path prefix (it has a control character)`}},
		{name: "control character", env: sr(`[{"prefix":"/a\nb","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a\nb"`}},
		{name: "query", env: sr(`[{"prefix":"/a?b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a?b"`}},
		{name: "fragment", env: sr(`[{"prefix":"/a#b","target_url":"http://a"}]`), want: []string{`SERVICE_ROUTES[0].prefix: invalid value "/a#b"`}},
		{name: "env prefix", env: map[string]string{"ROUTE_A_PREFIX": "/a/../admin", "ROUTE_A_URL": "http://a"}, want: []string{`ROUTE_A_PREFIX: invalid value "/a/../admin"`}},

		// Duplicates.
		{name: "duplicate prefix", env: sr(`[{"prefix":"/api","target_url":"http://a"},{"prefix":"/b","target_url":"http://b"},{"prefix":"/api/","target_url":"http://c"}]`),
			want: []string{`SERVICE_ROUTES[2].prefix: duplicate prefix "/api" (also in SERVICE_ROUTES[0])`}},
		{name: "duplicate prefix across sources", env: map[string]string{"SERVICE_ROUTES": `[{"prefix":"/api","target_url":"http://a"}]`, "ROUTE_API_PREFIX": "/api", "ROUTE_API_URL": "http://b"},
			want: []string{`ROUTE_API_PREFIX: duplicate prefix "/api" (also in SERVICE_ROUTES[0])`}},
		{name: "duplicate prefix between ROUTE_ pairs", env: map[string]string{"ROUTE_A_PREFIX": "/x", "ROUTE_A_URL": "http://a", "ROUTE_B_PREFIX": "/x/", "ROUTE_B_URL": "http://b"},
			want: []string{`ROUTE_B_PREFIX: duplicate prefix "/x" (also in ROUTE_A_PREFIX)`}},
		{name: "duplicate route name", env: map[string]string{"ROUTE_A_PREFIX": "/x", "ROUTE_A_URL": "http://a", "ROUTE_a_PREFIX": "/y", "ROUTE_a_URL": "http://b"},
			want: []string{`ROUTE_a_PREFIX: route name "a" is also used by ROUTE_A_PREFIX`}},
		{name: "duplicate target", env: sr(`[{"prefix":"/a","target_url":"http://a:80","targets":[{"url":"http://A:80/"}]}]`),
			want: []string{`SERVICE_ROUTES[0].targets[0].url: duplicate target "http://a:80" in the route's pool`}},

		// Target URLs.
		{name: "upstream_tls key without certificate", env: sr(`[{"prefix":"/a","target_url":"https://a","upstream_tls":{"key_file":"` + os.Args[0] + `"}}]`),
			want: []string{`SERVICE_ROUTES[0].upstream_tls: cert_file and key_file go together`}},
		{name: "upstream_tls CA missing", env: sr(`[{"prefix":"/a","target_url":"https://a","upstream_tls":{"ca_file":"/nonexistent/ca.pem"}}]`),
			want: []string{`SERVICE_ROUTES[0].upstream_tls.ca_file: cannot read "/nonexistent/ca.pem": no such file or directory`}},
		{name: "upstream_tls unknown member", env: sr(`[{"prefix":"/a","target_url":"https://a","upstream_tls":{"verify":false}}]`),
			want: []string{`SERVICE_ROUTES[0].upstream_tls: `}},
		{name: "upstream_tls insecure in production", env: map[string]string{"GATEWAY_ENV": "production", "SERVICE_ROUTES": `[{"prefix":"/a","target_url":"https://a","upstream_tls":{"insecure_skip_verify":true}}]`},
			want: []string{`SERVICE_ROUTES[0].upstream_tls.insecure_skip_verify: refused in production`}},
		{name: "one backend, two ways to speak to it", env: sr(`[{"prefix":"/a","target_url":"https://b","upstream_http2":true},{"prefix":"/c","target_url":"https://b"}]`),
			want: []string{`SERVICE_ROUTES[1]: target "https://b" is also a target of SERVICE_ROUTES[0] with other upstream_tls or upstream_http2 settings`}},
		{name: "relative URL", env: sr(`[{"prefix":"/a","target_url":"/b"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "/b": expected an absolute http://, https:// or h2c:// URL (scheme must be http, https or h2c)`}},
		{name: "host:port without scheme", env: sr(`[{"prefix":"/a","target_url":"backend:8080"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "backend:8080"`}},
		{name: "scheme", env: sr(`[{"prefix":"/a","target_url":"ftp://a"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "ftp://a"`}},
		{name: "no host", env: sr(`[{"prefix":"/a","target_url":"http:///x"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "http:///x": expected an absolute http://, https:// or h2c:// URL (no host)`}},
		{name: "user info", env: sr(`[{"prefix":"/a","target_url":"http://u@a"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "http://[redacted]@a": expected an absolute http://, https:// or h2c:// URL (user info is not allowed)`}},
		{name: "query", env: sr(`[{"prefix":"/a","target_url":"http://a/?x=1"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "http://a/?x=1": expected an absolute http://, https:// or h2c:// URL (a query is not allowed)`}},
		{name: "empty query", env: sr(`[{"prefix":"/a","target_url":"http://a/?"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "http://a/?"`}},
		{name: "fragment", env: sr(`[{"prefix":"/a","targets":[{"url":"http://a/#x"}]}]`), want: []string{`SERVICE_ROUTES[0].targets[0].url: invalid value "http://a/#x": expected an absolute http://, https:// or h2c:// URL (a fragment is not allowed)`}},
		{name: "bad port", env: sr(`[{"prefix":"/a","target_url":"http://a:0"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "http://a:0"`}},
		{name: "base path with dot-dot", env: sr(`[{"prefix":"/a","target_url":"http://a/x/../y"}]`), want: []string{`SERVICE_ROUTES[0].target_url: invalid value "http://a/x/../y"`}},
		{name: "one bad URL in a pool", env: map[string]string{"ROUTE_A_PREFIX": "/a", "ROUTE_A_URL": "http://a,b:80"}, want: []string{`ROUTE_A_URL: invalid value "b:80"`}},

		// Weights.
		{name: "weight zero", env: sr(`[{"prefix":"/a","target_url":"http://a","weight":0}]`), want: []string{`SERVICE_ROUTES[0].weight: invalid value 0: expected an integer from 1 to 1000`}},
		{name: "weight too large", env: sr(`[{"prefix":"/a","targets":[{"url":"http://a","weight":1001}]}]`), want: []string{`SERVICE_ROUTES[0].targets[0].weight: invalid value 1001: expected an integer from 1 to 1000`}},
		{name: "weight negative", env: sr(`[{"prefix":"/a","targets":[{"url":"http://a","weight":-1}]}]`), want: []string{`SERVICE_ROUTES[0].targets[0].weight: invalid value -1`}},
		{name: "weight fractional", env: sr(`[{"prefix":"/a","target_url":"http://a","weight":1.5}]`), want: []string{`SERVICE_ROUTES[0].weight: invalid value 1.5: expected an integer`}},
		{name: "weight without target_url", env: sr(`[{"prefix":"/a","targets":[{"url":"http://a"}],"weight":2}]`), want: []string{`SERVICE_ROUTES[0].weight: set without target_url: it is the weight of each target_url target (use targets[].weight with targets)`}},

		// Other members.
		{name: "timeout zero", env: sr(`[{"prefix":"/a","target_url":"http://a","timeout_secs":0}]`), want: []string{`SERVICE_ROUTES[0].timeout_secs: invalid value 0: expected seconds > 0 and at most 86400`}},
		{name: "timeout too small to count", env: sr(`[{"prefix":"/a","target_url":"http://a","timeout_secs":1e-12}]`), want: []string{`SERVICE_ROUTES[0].timeout_secs: invalid value 1e-12: expected seconds > 0 and at most 86400`}},
		{name: "timeout huge", env: sr(`[{"prefix":"/a","target_url":"http://a","timeout_secs":1e300}]`), want: []string{`SERVICE_ROUTES[0].timeout_secs: invalid value 1e+300: expected seconds > 0 and at most 86400`}},
		{name: "cache ttl negative", env: sr(`[{"prefix":"/a","target_url":"http://a","cache_ttl_secs":-1}]`), want: []string{`SERVICE_ROUTES[0].cache_ttl_secs: invalid value -1: expected seconds >= 0 (0 = never cache this route) and at most 31536000`}},
		{name: "algo", env: sr(`[{"prefix":"/a","target_url":"http://a","algo":"random"}]`), want: []string{`SERVICE_ROUTES[0].algo: invalid value "random": expected one of round-robin, least-conn, ip-hash, weighted`}},
		{name: "max body zero", env: sr(`[{"prefix":"/a","target_url":"http://a","max_body_bytes":0}]`), want: []string{`SERVICE_ROUTES[0].max_body_bytes: invalid value 0: expected an integer >= 1`}},
		{name: "rps negative", env: sr(`[{"prefix":"/a","target_url":"http://a","rate_limit_rps":-1}]`), want: []string{`SERVICE_ROUTES[0].rate_limit_rps: invalid value -1: expected a number >= 0 (0 = no limit)`}},
		{name: "burst negative", env: sr(`[{"prefix":"/a","target_url":"http://a","rate_limit_rps":1,"rate_limit_burst":-1}]`), want: []string{`SERVICE_ROUTES[0].rate_limit_burst: invalid value -1: expected an integer >= 0`}},
		{name: "burst without rps", env: sr(`[{"prefix":"/a","target_url":"http://a","rate_limit_burst":5}]`), want: []string{`SERVICE_ROUTES[0].rate_limit_burst: set without rate_limit_rps: expected rate_limit_rps > 0 too`}},
		{name: "methods not an array", env: sr(`[{"prefix":"/a","target_url":"http://a","methods":"GET"}]`), want: []string{`SERVICE_ROUTES[0].methods: invalid value "GET": expected an array of methods such as ["GET","POST"]`}},
		{name: "methods empty", env: sr(`[{"prefix":"/a","target_url":"http://a","methods":[]}]`), want: []string{`SERVICE_ROUTES[0].methods: empty: expected at least one method such as ["GET"] (leave methods out for any method)`}},
		{name: "method lower case", env: sr(`[{"prefix":"/a","target_url":"http://a","methods":["get"]}]`), want: []string{`SERVICE_ROUTES[0].methods: invalid method "get": methods are case-sensitive, expected "GET"`}},
		{name: "method not a token", env: sr(`[{"prefix":"/a","target_url":"http://a","methods":["GET POST"]}]`), want: []string{`SERVICE_ROUTES[0].methods: invalid method "GET POST": expected a method name such as GET`}},
		{name: "method twice", env: sr(`[{"prefix":"/a","target_url":"http://a","methods":["PUT","PUT"]}]`), want: []string{`SERVICE_ROUTES[0].methods: method PUT given twice`}},
		{name: "method refused everywhere", env: sr(`[{"prefix":"/a","target_url":"http://a","methods":["GET","TRACE","CONNECT"]}]`),
			want: []string{`SERVICE_ROUTES[0].methods: method TRACE is refused by the gateway on every route`, `SERVICE_ROUTES[0].methods: method CONNECT is refused by the gateway on every route`}},
		{name: "breaker_on_5xx type", env: sr(`[{"prefix":"/a","target_url":"http://a","breaker_on_5xx":1}]`), want: []string{`SERVICE_ROUTES[0].breaker_on_5xx: invalid value 1: expected true or false`}},
		{name: "upstream_keepalive type", env: sr(`[{"prefix":"/a","target_url":"http://a","upstream_keepalive":"no"}]`), want: []string{`SERVICE_ROUTES[0].upstream_keepalive: invalid value "no": expected true or false`}},

		// ROUTE_<NAME> pairs.
		{name: "prefix without URL", env: map[string]string{"ROUTE_A_PREFIX": "/a"}, want: []string{`ROUTE_A_URL: missing: ROUTE_A_PREFIX is set`}},
		{name: "URL without prefix", env: map[string]string{"ROUTE_A_URL": "http://a"}, want: []string{`ROUTE_A_PREFIX: missing: ROUTE_A_URL is set`}},
		{name: "URL blank", env: map[string]string{"ROUTE_A_PREFIX": "/a", "ROUTE_A_URL": "  "}, want: []string{`ROUTE_A_URL: missing`}},
		{name: "URL only commas", env: map[string]string{"ROUTE_A_PREFIX": "/a", "ROUTE_A_URL": ",,"}, want: []string{`ROUTE_A_URL: invalid value ",,"`}},
		{name: "empty name", env: map[string]string{"ROUTE__PREFIX": "/a", "ROUTE__URL": "http://a"}, want: []string{`ROUTE__PREFIX: empty route name`}},

		// Every problem of every route, at once.
		{name: "several routes, several problems", env: map[string]string{
			"SERVICE_ROUTES": `[{"prefix":"/a","target_url":"http://a","algo":"x","max_body_bytes":-1},{"prefix":"b","target_url":"ftp://b"}]`,
			"ROUTE_C_URL":    "http://c",
		}, want: []string{"SERVICE_ROUTES[0].algo: ", "SERVICE_ROUTES[0].max_body_bytes: ", "SERVICE_ROUTES[1].prefix: ", "SERVICE_ROUTES[1].target_url: ", "ROUTE_C_PREFIX: missing"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.env)
			wantProblems(t, cfg, err, tt.want...)
		})
	}
}

package config

import (
	"errors"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// load runs Load over env as if it were the whole process environment.
func load(env map[string]string) (*Config, error) {
	environ := make([]string, 0, len(env))
	for k, v := range env {
		environ = append(environ, k+"="+v)
	}
	return Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, environ)
}

// problems returns the single errors joined in err.
func problems(t *testing.T, err error) []string {
	t.Helper()
	if err == nil {
		return nil
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error is not an errors.Join: %v", err)
	}
	var out []string
	for _, e := range joined.Unwrap() {
		if strings.ContainsAny(e.Error(), "\n\r") {
			t.Errorf("problem spans several lines: %q", e.Error())
		}
		out = append(out, e.Error())
	}
	return out
}

// wantProblems checks that err holds exactly one problem per entry of want,
// each starting with that entry (a variable name and usually more).
func wantProblems(t *testing.T, cfg *Config, err error, want ...string) {
	t.Helper()
	got := problems(t, err)
	if len(want) > 0 && cfg != nil {
		t.Errorf("Load returned a Config together with an error")
	}
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	left := slices.Clone(got)
	for _, w := range want {
		i := slices.IndexFunc(left, func(s string) bool { return strings.HasPrefix(s, w) })
		if i < 0 {
			t.Errorf("no problem starting with %q in:\n%s", w, strings.Join(got, "\n"))
			continue
		}
		left = slices.Delete(left, i, i+1)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestDefaults(t *testing.T) {
	cfg, err := load(nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	route := func(prefix, target string) Route {
		return Route{
			Prefix:       prefix,
			Targets:      []Target{{URL: mustURL(t, target), Weight: 1}},
			StripPrefix:  true,
			Timeout:      30 * time.Second,
			Algo:         "least-conn",
			MaxBodyBytes: 10485760,

			UpstreamKeepalive: true,
		}
	}
	want := &Config{
		Static: Static{
			Env:                       "development",
			ListenAddr:                ":9777",
			LogLevel:                  slog.LevelInfo,
			OpsAddr:                   "127.0.0.1:9778",
			TLSMinVersion:             "1.2",
			TLSClientAuth:             "off",
			HTTP2MaxConcurrentStreams: 250,
			ACMECA:                    LetsEncryptDirectory,
			ACMEStorage:               "./acme",
			PublicPaths:               []string{"/health", "/metrics", "/login", "/register", "/api/v1/public"},
			RedisAddr:                 "localhost:6379",
			CacheBackend:              "memory",
			CacheMaxBytes:             256 << 20,
			CacheMaxObjectBytes:       1 << 20,
			ClusterMode:               "off",
			MaxRequestsPerSecond:      100,
			MaxBurstSize:              200,
			DDoSThreshold:             1000,
			BlockDuration:             10 * time.Minute,
			MaxConnsPerIP:             256,
			MaxConnections:            10000,
			MaxInflight:               5000,
			MaxTrackedIPs:             262144,
			MaxEjectedPercent:         50,
			TunnelIdleTimeout:         5 * time.Minute,
			RequestBufferBytes:        1 << 20,
			HideUpstreamHeaders:       []string{"Server", "X-Powered-By", "X-Aspnet-Version"},
			AccessLogRejectRate:       10,
			CachePrivateHeaders:       []string{},
			HealthCheckInterval:       10 * time.Second,
			HealthCheckFalls:          2,
			HealthCheckRises:          2,
			BodyReadTimeout:           60 * time.Second,
			UpstreamDialTimeout:       5 * time.Second,
			MaxIdleConns:              100,
			IdleConnTimeout:           90 * time.Second,
			CircuitBreakerMax:         5,
			CircuitBreakerTimeout:     30 * time.Second,
			RetryMax:                  3,
			EnableCaching:             true,
			ShutdownTimeout:           30 * time.Second,
			Dashboard:                 "auto",
			LogFile:                   "gateway.log",
			EnableCompression:         true,
			CompressionMinBytes:       1024,
			OTelServiceName:           "api-gateway",
			OTelProtocol:              "http/protobuf",
		},
		Routing: Routing{
			LoadBalancingAlgo:  "least-conn",
			CORSAllowedOrigins: []string{},
			MaxBodyBytes:       10485760,
			ConnectionTimeout:  30 * time.Second,
			// Sorted by prefix.
			Routes: []Route{
				route("/api/admin", "http://localhost:8242"),
				route("/api/agent", "http://localhost:8788"),
				route("/api/ai", "http://localhost:8741"),
				route("/api/core", "http://localhost:8743"),
				route("/api/llm", "http://localhost:8745"),
				route("/api/llm2", "http://localhost:8746"),
				route("/api/node", "http://localhost:8744"),
				route("/api/studio", "http://localhost:3000"),
				route("/api/studio2", "http://localhost:3001"),
			},
			RoutesSource: "defaults",
		},
	}
	warnings := cfg.Warnings
	cfg.Warnings = nil
	want.envTunables = want.tunables() // what a reload starts from
	if !reflect.DeepEqual(cfg, want) {
		for _, part := range [][2]any{{cfg.Static, want.Static}, {cfg.Routing, want.Routing}} {
			gv, wv := reflect.ValueOf(part[0]), reflect.ValueOf(part[1])
			for i := 0; i < gv.NumField(); i++ {
				if !reflect.DeepEqual(gv.Field(i).Interface(), wv.Field(i).Interface()) {
					t.Errorf("%s = %#v, want %#v", gv.Type().Field(i).Name, gv.Field(i).Interface(), wv.Field(i).Interface())
				}
			}
		}
	}
	for _, w := range []string{"ADMIN_TOKEN: empty", "SERVICE_ROUTES: not set"} {
		if !slices.ContainsFunc(warnings, func(s string) bool { return strings.HasPrefix(s, w) }) {
			t.Errorf("no warning starting with %q in %q", w, warnings)
		}
	}
}

// TestSetButEmptyMeansDefault pins that VAR= behaves as if VAR were unset.
func TestSetButEmptyMeansDefault(t *testing.T) {
	def, err := load(nil)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for _, name := range documentedVariables {
		if name != "HIDE_UPSTREAM_HEADERS" { // empty means "hide nothing"; tested apart
			env[name] = ""
		}
	}
	env["LOG_LEVEL"] = "  "
	got, err := load(env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, def) {
		t.Errorf("empty variables changed the configuration:\n got %+v\nwant %+v", got, def)
	}
}

// documentedVariables is docs/configuration.md's table (ROUTE_<NAME>_* are
// discovered, not looked up).
var documentedVariables = []string{
	"GATEWAY_PORT", "OPS_ADDR", "GATEWAY_ENV", "LOG_LEVEL",
	"TLS_CERT_FILE", "TLS_KEY_FILE", "TLS_CERTS_DIR", "TLS_MIN_VERSION", "TLS_CLIENT_CA", "TLS_CLIENT_AUTH",
	"ACME_DOMAINS", "ACME_EMAIL", "ACME_CA", "ACME_CA_ROOT", "ACME_STORAGE",
	"HTTP2_MAX_CONCURRENT_STREAMS", "H2C", "HTTP3", "HTTP_REDIRECT_ADDR", "JWT_SECRET", "JWT_ISSUER", "JWT_AUDIENCE",
	"JWT_JWKS_URL", "API_KEYS", "API_KEY_HASHES", "API_KEYS_FILE", "API_KEYS_REDIS", "API_KEYS_DATABASE_URL",
	"ADMIN_TOKEN", "TRUSTED_PROXIES", "IP_WHITELIST", "IP_BLACKLIST", "PUBLIC_PATHS", "LOAD_BALANCING_ALGO",
	"REDIS_ADDR", "REDIS_PASSWORD", "REDIS_DB", "CACHE_BACKEND", "CACHE_MAX_BYTES", "CACHE_MAX_OBJECT_BYTES",
	"CLUSTER_MODE", "CORS_ALLOWED_ORIGINS", "MAX_REQUESTS_PER_SECOND", "MAX_BURST_SIZE", "DDOS_THRESHOLD",
	"BLOCK_DURATION", "MAX_CONNS_PER_IP", "MAX_CONNECTIONS", "MAX_INFLIGHT", "MAX_TRACKED_IPS", "MAX_BODY_BYTES",
	"HEALTH_CHECK_INTERVAL", "HEALTH_CHECK_PATH", "HEALTH_CHECK_FALLS", "HEALTH_CHECK_RISES", "BODY_READ_TIMEOUT",
	"CONNECTION_TIMEOUT", "UPSTREAM_DIAL_TIMEOUT", "MAX_IDLE_CONNS", "IDLE_CONN_TIMEOUT", "CIRCUIT_BREAKER_MAX",
	"CIRCUIT_BREAKER_TIMEOUT", "RETRY_MAX", "ENABLE_CACHING", "CACHE_TTL", "SHUTDOWN_DELAY", "SHUTDOWN_TIMEOUT",
	"MAX_EJECTED_PERCENT", "TUNNEL_IDLE_TIMEOUT", "REQUEST_BUFFER_BYTES", "HIDE_UPSTREAM_HEADERS",
	"ACCESS_LOG_REJECT_RATE", "CACHE_PRIVATE_HEADERS", "CACHE_CLIENT_REVALIDATE",
	"DASHBOARD", "LOG_FILE", "CONFIG_FILE", "ENABLE_COMPRESSION", "COMPRESSION_MIN_BYTES",
	"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_SERVICE_NAME", "SERVICE_ROUTES",
	// The standard OpenTelemetry variable that picks the exporter's
	// protocol, read like the other OTEL_EXPORTER_OTLP_* ones.
	"OTEL_EXPORTER_OTLP_PROTOCOL",
}

func TestReadsExactlyTheDocumentedVariables(t *testing.T) {
	var read []string
	_, err := Load(func(k string) (string, bool) {
		read = append(read, k)
		return "", false
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(read)
	read = slices.Compact(read)
	want := slices.Sorted(slices.Values(documentedVariables))
	if !slices.Equal(read, want) {
		t.Errorf("variables read:\n got %q\nwant %q", read, want)
	}
}

func TestValidValues(t *testing.T) {
	// FIPS 180-2 test vector: SHA-256("abc").
	const abcSHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
	tests := []struct {
		name  string
		env   map[string]string
		check func(t *testing.T, c *Config)
	}{
		{
			name: "listen addresses are normalised",
			env:  map[string]string{"GATEWAY_PORT": "8080", "OPS_ADDR": "[::1]:0"},
			check: func(t *testing.T, c *Config) {
				if c.ListenAddr != ":8080" || c.OpsAddr != "[::1]:0" {
					t.Errorf("ListenAddr %q OpsAddr %q", c.ListenAddr, c.OpsAddr)
				}
			},
		},
		{
			name: "host and port zero",
			env:  map[string]string{"GATEWAY_PORT": "127.0.0.1:0", "OPS_ADDR": "localhost:9090"},
			check: func(t *testing.T, c *Config) {
				if c.ListenAddr != "127.0.0.1:0" || c.OpsAddr != "localhost:9090" {
					t.Errorf("ListenAddr %q OpsAddr %q", c.ListenAddr, c.OpsAddr)
				}
			},
		},
		{
			name: "booleans, enums and levels ignore case",
			env: map[string]string{"ENABLE_CACHING": "FALSE", "ENABLE_COMPRESSION": "0", "API_KEYS_REDIS": "1",
				"LOG_LEVEL": "DEBUG", "DASHBOARD": "Off", "LOAD_BALANCING_ALGO": "ip-hash", "GATEWAY_ENV": "Development"},
			check: func(t *testing.T, c *Config) {
				if c.EnableCaching || c.EnableCompression || !c.APIKeysRedis || c.LogLevel != slog.LevelDebug ||
					c.Dashboard != "off" || c.LoadBalancingAlgo != "ip-hash" || c.Env != "development" {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "numbers, sizes and durations",
			env: map[string]string{"MAX_REQUESTS_PER_SECOND": "2.5", "MAX_BURST_SIZE": "1", "CACHE_MAX_BYTES": "2MiB",
				"CACHE_MAX_OBJECT_BYTES": "2097152", "MAX_BODY_BYTES": "1 KiB", "SHUTDOWN_DELAY": "0s",
				"BLOCK_DURATION": "1h30m", "RETRY_MAX": "10", "MAX_CONNS_PER_IP": "0", "REDIS_DB": "3"},
			check: func(t *testing.T, c *Config) {
				if c.MaxRequestsPerSecond != 2.5 || c.MaxBurstSize != 1 || c.CacheMaxBytes != 2<<20 ||
					c.CacheMaxObjectBytes != 2<<20 || c.MaxBodyBytes != 1024 || c.ShutdownDelay != 0 ||
					c.BlockDuration != 90*time.Minute || c.RetryMax != 10 || c.MaxConnsPerIP != 0 || c.RedisDB != 3 {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "IPs become host prefixes, CIDRs are masked, mapped IPv4 is unmapped, duplicates dropped",
			env: map[string]string{
				"TRUSTED_PROXIES": "10.0.0.1, 10.1.2.3/8, ::ffff:192.168.0.0/112, 2001:db8::1/64, 10.0.0.1",
				"IP_WHITELIST":    "203.0.113.7",
				"IP_BLACKLIST":    "2001:db8::1",
			},
			check: func(t *testing.T, c *Config) {
				want := []netip.Prefix{
					netip.MustParsePrefix("10.0.0.1/32"), netip.MustParsePrefix("10.0.0.0/8"),
					netip.MustParsePrefix("192.168.0.0/16"), netip.MustParsePrefix("2001:db8::/64"),
				}
				if !slices.Equal(c.TrustedProxies, want) {
					t.Errorf("TrustedProxies = %v, want %v", c.TrustedProxies, want)
				}
				if !slices.Equal(c.IPWhitelist, []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}) ||
					!slices.Equal(c.IPBlacklist, []netip.Prefix{netip.MustParsePrefix("2001:db8::1/128")}) {
					t.Errorf("IPWhitelist %v IPBlacklist %v", c.IPWhitelist, c.IPBlacklist)
				}
			},
		},
		{
			name: "OPS_ADDR public serves the ops endpoints on GATEWAY_PORT, with a warning",
			env:  map[string]string{"OPS_ADDR": "Public"},
			check: func(t *testing.T, c *Config) {
				if c.OpsAddr != "" {
					t.Errorf("OpsAddr = %q, want \"\"", c.OpsAddr)
				}
				if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.HasPrefix(w, `OPS_ADDR: "public" serves`) }) {
					t.Errorf("no OPS_ADDR warning in %q", c.Warnings)
				}
				if got := c.View().Settings["OPS_ADDR"]; got != "public" {
					t.Errorf("view OPS_ADDR = %v", got)
				}
			},
		},
		{
			name: "header lists are canonical; HIDE_UPSTREAM_HEADERS set empty hides nothing",
			env:  map[string]string{"HIDE_UPSTREAM_HEADERS": " ", "CACHE_PRIVATE_HEADERS": "x-auth-token, X-AUTH-TOKEN,x-session"},
			check: func(t *testing.T, c *Config) {
				if c.HideUpstreamHeaders == nil || len(c.HideUpstreamHeaders) != 0 {
					t.Errorf("HideUpstreamHeaders = %#v, want empty", c.HideUpstreamHeaders)
				}
				if !slices.Equal(c.CachePrivateHeaders, []string{"X-Auth-Token", "X-Session"}) {
					t.Errorf("CachePrivateHeaders = %q", c.CachePrivateHeaders)
				}
			},
		},
		{
			name: "secure-default knobs",
			env: map[string]string{"MAX_EJECTED_PERCENT": "0", "TUNNEL_IDLE_TIMEOUT": "90s", "REQUEST_BUFFER_BYTES": "0",
				"ACCESS_LOG_REJECT_RATE": "0", "CACHE_CLIENT_REVALIDATE": "true", "CACHE_TTL": "0s", "HIDE_UPSTREAM_HEADERS": "via"},
			check: func(t *testing.T, c *Config) {
				if c.MaxEjectedPercent != 0 || c.TunnelIdleTimeout != 90*time.Second || c.RequestBufferBytes != 0 ||
					c.AccessLogRejectRate != 0 || !c.CacheClientRevalidate || c.CacheTTL != 0 ||
					!slices.Equal(c.HideUpstreamHeaders, []string{"Via"}) {
					t.Errorf("got %+v", c)
				}
			},
		},
		{
			name: "TRUSTED_PROXIES none trusts nobody",
			env:  map[string]string{"TRUSTED_PROXIES": "none"},
			check: func(t *testing.T, c *Config) {
				if c.TrustedProxies == nil || len(c.TrustedProxies) != 0 {
					t.Errorf("TrustedProxies = %#v, want empty", c.TrustedProxies)
				}
			},
		},
		{
			name: "API keys are hashed, digests lower-cased, duplicates dropped",
			env: map[string]string{"API_KEYS": "abc, k2,,", "API_KEY_HASHES": strings.ToUpper(abcSHA256) + "," +
				strings.Repeat("ab", 32)},
			check: func(t *testing.T, c *Config) {
				want := []string{abcSHA256, digest("k2"), strings.Repeat("ab", 32)}
				if !slices.Equal(c.APIKeyDigests, want) {
					t.Errorf("APIKeyDigests = %q, want %q", c.APIKeyDigests, want)
				}
			},
		},
		{
			name: "origins are lower-cased, public paths lose their trailing slash",
			env: map[string]string{"CORS_ALLOWED_ORIGINS": `["https://App.Example:8443", "http://localhost:3000", "*"]`,
				"PUBLIC_PATHS": "/docs/, /status"},
			check: func(t *testing.T, c *Config) {
				if !slices.Equal(c.CORSAllowedOrigins, []string{"https://app.example:8443", "http://localhost:3000", "*"}) {
					t.Errorf("CORSAllowedOrigins = %q", c.CORSAllowedOrigins)
				}
				if !slices.Equal(c.PublicPaths, []string{"/docs", "/status"}) {
					t.Errorf("PublicPaths = %q", c.PublicPaths)
				}
			},
		},
		{
			name: "an empty CORS array allows no origin",
			env:  map[string]string{"CORS_ALLOWED_ORIGINS": `[]`},
			check: func(t *testing.T, c *Config) {
				if c.CORSAllowedOrigins == nil || len(c.CORSAllowedOrigins) != 0 {
					t.Errorf("CORSAllowedOrigins = %#v, want empty", c.CORSAllowedOrigins)
				}
			},
		},
		{
			name: "strings and URLs",
			env: map[string]string{"JWT_JWKS_URL": "https://idp.example/.well-known/jwks.json",
				"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "HEALTH_CHECK_PATH": "/healthz?deep=1",
				"API_KEYS_DATABASE_URL": "postgres://gw:pw@db/keys", "REDIS_ADDR": "redis:6380", "ADMIN_TOKEN": " tok "},
			check: func(t *testing.T, c *Config) {
				if c.JWTJWKSURL != "https://idp.example/.well-known/jwks.json" || c.OTelEndpoint != "http://jaeger:4318" ||
					c.HealthCheckPath != "/healthz?deep=1" || c.APIKeysDatabaseURL != "postgres://gw:pw@db/keys" ||
					c.RedisAddr != "redis:6380" || c.AdminToken != " tok " {
					t.Errorf("got %+v", c)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := load(tt.env)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			tt.check(t, c)
		})
	}
}

func TestInvalidValues(t *testing.T) {
	certsDir := t.TempDir()
	crt, key := filepath.Join(certsDir, "a.crt"), filepath.Join(certsDir, "a.key")
	for _, f := range []string{crt, key} {
		if err := os.WriteFile(f, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string // each problem's start
	}{
		{name: "enum", env: map[string]string{"GATEWAY_ENV": "staging"}, want: []string{`GATEWAY_ENV: invalid value "staging": expected one of development, production`}},
		{name: "algo", env: map[string]string{"LOAD_BALANCING_ALGO": "random"}, want: []string{`LOAD_BALANCING_ALGO: invalid value "random"`}},
		{name: "cache backend", env: map[string]string{"CACHE_BACKEND": "disk"}, want: []string{`CACHE_BACKEND: invalid value "disk"`}},
		{name: "cluster mode", env: map[string]string{"CLUSTER_MODE": "on"}, want: []string{`CLUSTER_MODE: invalid value "on"`}},
		{name: "dashboard", env: map[string]string{"DASHBOARD": "yes"}, want: []string{`DASHBOARD: invalid value "yes"`}},
		{name: "log level", env: map[string]string{"LOG_LEVEL": "trace"}, want: []string{`LOG_LEVEL: invalid value "trace": expected one of debug, info, warn, error`}},
		{name: "boolean yes", env: map[string]string{"ENABLE_CACHING": "yes"}, want: []string{`ENABLE_CACHING: invalid value "yes": expected true, false, 1 or 0`}},
		{name: "boolean 2", env: map[string]string{"API_KEYS_REDIS": "2"}, want: []string{`API_KEYS_REDIS: invalid value "2"`}},
		{name: "int junk", env: map[string]string{"MAX_BURST_SIZE": "20x"}, want: []string{`MAX_BURST_SIZE: invalid value "20x": expected an integer >= 1`}},
		{name: "int zero", env: map[string]string{"MAX_BURST_SIZE": "0"}, want: []string{`MAX_BURST_SIZE: invalid value "0"`}},
		{name: "int negative", env: map[string]string{"MAX_CONNS_PER_IP": "-1"}, want: []string{`MAX_CONNS_PER_IP: invalid value "-1": expected an integer >= 0`}},
		{name: "int overflow", env: map[string]string{"MAX_CONNECTIONS": "99999999999999999999"}, want: []string{`MAX_CONNECTIONS: invalid value`}},
		{name: "tracked IPs too few", env: map[string]string{"MAX_TRACKED_IPS": "1000"}, want: []string{`MAX_TRACKED_IPS: invalid value "1000": expected an integer >= 1024`}},
		{name: "retry max too many", env: map[string]string{"RETRY_MAX": "11"}, want: []string{`RETRY_MAX: invalid value "11": expected an integer from 1 to 10`}},
		{name: "retry max zero", env: map[string]string{"RETRY_MAX": "0"}, want: []string{`RETRY_MAX: invalid value "0"`}},
		{name: "redis db negative", env: map[string]string{"REDIS_DB": "-1"}, want: []string{`REDIS_DB: invalid value "-1"`}},
		{name: "health falls zero", env: map[string]string{"HEALTH_CHECK_FALLS": "0", "HEALTH_CHECK_RISES": "x"}, want: []string{`HEALTH_CHECK_FALLS: invalid value "0"`, `HEALTH_CHECK_RISES: invalid value "x"`}},
		{name: "float zero", env: map[string]string{"MAX_REQUESTS_PER_SECOND": "0"}, want: []string{`MAX_REQUESTS_PER_SECOND: invalid value "0": expected a number > 0`}},
		{name: "float NaN", env: map[string]string{"MAX_REQUESTS_PER_SECOND": "NaN"}, want: []string{`MAX_REQUESTS_PER_SECOND: invalid value "NaN"`}},
		{name: "size junk", env: map[string]string{"MAX_BODY_BYTES": "10MB"}, want: []string{`MAX_BODY_BYTES: invalid value "10MB": expected a byte count >= 1`}},
		{name: "size zero", env: map[string]string{"CACHE_MAX_BYTES": "0"}, want: []string{`CACHE_MAX_BYTES: invalid value "0"`}},
		{name: "size negative", env: map[string]string{"COMPRESSION_MIN_BYTES": "-5"}, want: []string{`COMPRESSION_MIN_BYTES: invalid value "-5"`}},
		{name: "object larger than cache", env: map[string]string{"CACHE_MAX_BYTES": "1024", "CACHE_MAX_OBJECT_BYTES": "2048"}, want: []string{`CACHE_MAX_OBJECT_BYTES: 2048 exceeds CACHE_MAX_BYTES (1024)`}},
		{name: "duration without unit", env: map[string]string{"CACHE_TTL": "300"}, want: []string{`CACHE_TTL: invalid value "300": expected a duration such as 10s`}},
		{name: "duration zero", env: map[string]string{"HEALTH_CHECK_INTERVAL": "0s"}, want: []string{`HEALTH_CHECK_INTERVAL: invalid value "0s": expected a duration > 0`}},
		{name: "duration negative", env: map[string]string{"SHUTDOWN_DELAY": "-1s"}, want: []string{`SHUTDOWN_DELAY: invalid value "-1s": expected a duration >= 0`}},
		{name: "every timeout", env: map[string]string{"BODY_READ_TIMEOUT": "x", "CONNECTION_TIMEOUT": "0", "UPSTREAM_DIAL_TIMEOUT": "1", "IDLE_CONN_TIMEOUT": "-1m", "CIRCUIT_BREAKER_TIMEOUT": "soon", "SHUTDOWN_TIMEOUT": "0ms", "BLOCK_DURATION": "10 m"},
			want: []string{"BODY_READ_TIMEOUT: ", "CONNECTION_TIMEOUT: ", "UPSTREAM_DIAL_TIMEOUT: ", "IDLE_CONN_TIMEOUT: ", "CIRCUIT_BREAKER_TIMEOUT: ", "SHUTDOWN_TIMEOUT: ", "BLOCK_DURATION: "}},
		{name: "port out of range", env: map[string]string{"GATEWAY_PORT": "70000"}, want: []string{`GATEWAY_PORT: invalid value ":70000": expected a listen address`}},
		{name: "port named", env: map[string]string{"GATEWAY_PORT": ":http"}, want: []string{`GATEWAY_PORT: invalid value ":http"`}},
		{name: "address without port", env: map[string]string{"OPS_ADDR": "127.0.0.1"}, want: []string{`OPS_ADDR: invalid value "127.0.0.1"`}},
		{name: "ops address equals listen address", env: map[string]string{"GATEWAY_PORT": "9000", "OPS_ADDR": ":9000"}, want: []string{`OPS_ADDR: invalid value ":9000": expected an address other than GATEWAY_PORT's`}},
		{name: "TLS certificate without key", env: map[string]string{"TLS_CERT_FILE": crt}, want: []string{`TLS_KEY_FILE: not set: TLS_CERT_FILE needs its key`}},
		{name: "TLS key without certificate", env: map[string]string{"TLS_KEY_FILE": key}, want: []string{`TLS_CERT_FILE: not set`}},
		{name: "TLS file and directory", env: map[string]string{"TLS_CERT_FILE": crt, "TLS_KEY_FILE": key, "TLS_CERTS_DIR": certsDir}, want: []string{`TLS_CERTS_DIR: set together with TLS_CERT_FILE`}},
		{name: "TLS files missing or of the wrong kind", env: map[string]string{"TLS_CERT_FILE": filepath.Join(certsDir, "missing.crt"), "TLS_KEY_FILE": certsDir},
			want: []string{`TLS_CERT_FILE: cannot read "` + filepath.Join(certsDir, "missing.crt") + `": no such file or directory`, `TLS_KEY_FILE: "` + certsDir + `" is a directory`}},
		{name: "TLS directory that is a file", env: map[string]string{"TLS_CERTS_DIR": crt}, want: []string{`TLS_CERTS_DIR: "` + crt + `" is a file`}},
		{name: "TLS version", env: map[string]string{"TLS_MIN_VERSION": "1.1"}, want: []string{`TLS_MIN_VERSION: invalid value "1.1": expected one of 1.2, 1.3`}},
		{name: "client auth mode", env: map[string]string{"TLS_CLIENT_AUTH": "optional"}, want: []string{`TLS_CLIENT_AUTH: invalid value "optional"`}},
		{name: "client auth without CA or TLS", env: map[string]string{"TLS_CLIENT_AUTH": "require"}, want: []string{`TLS_CLIENT_CA: not set: TLS_CLIENT_AUTH=require`, `TLS_CLIENT_AUTH: require without TLS`}},
		{name: "client CA with auth off", env: map[string]string{"TLS_CERTS_DIR": certsDir, "TLS_CLIENT_CA": crt}, want: []string{`TLS_CLIENT_AUTH: off while TLS_CLIENT_CA is set`}},
		{name: "h2c with TLS", env: map[string]string{"TLS_CERTS_DIR": certsDir, "H2C": "true"}, want: []string{`H2C: true with TLS`}},
		{name: "redirect without TLS", env: map[string]string{"HTTP_REDIRECT_ADDR": ":80"}, want: []string{`HTTP_REDIRECT_ADDR: set without TLS`}},
		{name: "redirect on the TLS port", env: map[string]string{"TLS_CERTS_DIR": certsDir, "GATEWAY_PORT": ":443", "HTTP_REDIRECT_ADDR": "443"}, want: []string{`HTTP_REDIRECT_ADDR: invalid value ":443": expected an address other than`}},
		{name: "redirect address", env: map[string]string{"TLS_CERTS_DIR": certsDir, "HTTP_REDIRECT_ADDR": "localhost"}, want: []string{`HTTP_REDIRECT_ADDR: invalid value "localhost"`}},
		{name: "ACME wildcard and IP", env: map[string]string{"ACME_DOMAINS": "api.example.com, *.example.com,10.0.0.1"},
			want: []string{`ACME_DOMAINS: invalid value " *.example.com": expected DNS names`, `ACME_DOMAINS: invalid value "10.0.0.1"`}},
		{name: "ACME with certificate files", env: map[string]string{"ACME_DOMAINS": "api.example.com", "TLS_CERTS_DIR": certsDir}, want: []string{`ACME_DOMAINS: set together with TLS_CERT_FILE or TLS_CERTS_DIR`}},
		{name: "ACME CA over plain HTTP", env: map[string]string{"ACME_CA": "http://ca.example/dir"}, want: []string{`ACME_CA: invalid value "http://ca.example/dir": expected an absolute https:// URL`}},
		{name: "ACME CA root missing", env: map[string]string{"ACME_CA_ROOT": filepath.Join(certsDir, "none.pem")}, want: []string{`ACME_CA_ROOT: cannot read`}},
		{name: "HTTP/3 without TLS", env: map[string]string{"HTTP3": "true"}, want: []string{`HTTP3: true without TLS`}},
		{name: "HTTP/2 streams zero", env: map[string]string{"HTTP2_MAX_CONCURRENT_STREAMS": "0"}, want: []string{`HTTP2_MAX_CONCURRENT_STREAMS: invalid value "0"`}},
		{name: "ejected percent over 100", env: map[string]string{"MAX_EJECTED_PERCENT": "101"}, want: []string{`MAX_EJECTED_PERCENT: invalid value "101": expected an integer from 0 to 100`}},
		{name: "tunnel idle timeout zero", env: map[string]string{"TUNNEL_IDLE_TIMEOUT": "0s"}, want: []string{`TUNNEL_IDLE_TIMEOUT: invalid value "0s": expected a duration > 0`}},
		{name: "request buffer negative", env: map[string]string{"REQUEST_BUFFER_BYTES": "-1"}, want: []string{`REQUEST_BUFFER_BYTES: invalid value "-1": expected a byte count >= 0`}},
		{name: "reject rate junk", env: map[string]string{"ACCESS_LOG_REJECT_RATE": "ten"}, want: []string{`ACCESS_LOG_REJECT_RATE: invalid value "ten": expected an integer >= 0`}},
		{name: "header names", env: map[string]string{"HIDE_UPSTREAM_HEADERS": "Server, X Powered", "CACHE_PRIVATE_HEADERS": "X-Auth:x"},
			want: []string{`HIDE_UPSTREAM_HEADERS: invalid value "X Powered": expected header names`, `CACHE_PRIVATE_HEADERS: invalid value "X-Auth:x"`}},
		{name: "cache client revalidate", env: map[string]string{"CACHE_CLIENT_REVALIDATE": "maybe"}, want: []string{`CACHE_CLIENT_REVALIDATE: invalid value "maybe"`}},
		{name: "redis address", env: map[string]string{"REDIS_ADDR": "redis"}, want: []string{`REDIS_ADDR: invalid value "redis": expected host:port`}},
		{name: "redis address port zero", env: map[string]string{"REDIS_ADDR": "redis:0"}, want: []string{`REDIS_ADDR: invalid value "redis:0"`}},
		{name: "JWKS not absolute", env: map[string]string{"JWT_JWKS_URL": "/jwks.json"}, want: []string{`JWT_JWKS_URL: invalid value "/jwks.json": expected an absolute http:// or https:// URL`}},
		{name: "JWKS scheme", env: map[string]string{"JWT_JWKS_URL": "ftp://idp/jwks"}, want: []string{`JWT_JWKS_URL: invalid value "ftp://idp/jwks"`}},
		{name: "OTLP endpoint host:port", env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4317"}, want: []string{`OTEL_EXPORTER_OTLP_ENDPOINT: invalid value "jaeger:4317"`}},
		{name: "API key hash", env: map[string]string{"API_KEY_HASHES": "abc, " + strings.Repeat("g", 64)}, want: []string{`API_KEY_HASHES: entry 1 is not a SHA-256 digest`, `API_KEY_HASHES: entry 2 is not a SHA-256 digest`}},
		{name: "database URL", env: map[string]string{"API_KEYS_DATABASE_URL": "mysql://root:hunter2@db/keys"}, want: []string{`API_KEYS_DATABASE_URL: invalid value (not shown`}},
		{name: "trusted proxy junk", env: map[string]string{"TRUSTED_PROXIES": "10.0.0.0/33,proxy.local"}, want: []string{`TRUSTED_PROXIES: invalid value "10.0.0.0/33": expected an IP address or CIDR`, `TRUSTED_PROXIES: invalid value "proxy.local"`}},
		{name: "trusted proxies /0", env: map[string]string{"TRUSTED_PROXIES": "0.0.0.0/0"}, want: []string{`TRUSTED_PROXIES: invalid value "0.0.0.0/0": expected an IP address or CIDR (a /0 prefix`}},
		{name: "whitelist /0", env: map[string]string{"IP_WHITELIST": "::/0"}, want: []string{`IP_WHITELIST: invalid value "::/0"`}},
		{name: "blacklist /0 via mapped IPv4", env: map[string]string{"IP_BLACKLIST": "::ffff:0.0.0.0/96"}, want: []string{`IP_BLACKLIST: invalid value "::ffff:0.0.0.0/96"`}},
		{name: "blacklist zone", env: map[string]string{"IP_BLACKLIST": "fe80::1%eth0"}, want: []string{`IP_BLACKLIST: invalid value "fe80::1%eth0"`}},
		{name: "public path relative", env: map[string]string{"PUBLIC_PATHS": "/health,login,/a/../b"}, want: []string{`PUBLIC_PATHS: invalid value "login": expected a clean path prefix (it must start with "/")`, `PUBLIC_PATHS: invalid value "/a/../b"`}},
		{name: "health check path", env: map[string]string{"HEALTH_CHECK_PATH": "healthz"}, want: []string{`HEALTH_CHECK_PATH: invalid value "healthz": expected a path starting with "/"`}},
		{name: "CORS not JSON", env: map[string]string{"CORS_ALLOWED_ORIGINS": "https://a.example"}, want: []string{`CORS_ALLOWED_ORIGINS: invalid value "https://a.example": expected a JSON array of origins`}},
		{name: "CORS trailing data", env: map[string]string{"CORS_ALLOWED_ORIGINS": `["*"] ["x"]`}, want: []string{`CORS_ALLOWED_ORIGINS: invalid value`}},
		{name: "CORS bad origins", env: map[string]string{"CORS_ALLOWED_ORIGINS": `["https://a.example/", "a.example", "ftp://a.example", "https://a.example/path"]`},
			want: []string{`CORS_ALLOWED_ORIGINS: invalid value "https://a.example/"`, `CORS_ALLOWED_ORIGINS: invalid value "a.example"`, `CORS_ALLOWED_ORIGINS: invalid value "ftp://a.example"`, `CORS_ALLOWED_ORIGINS: invalid value "https://a.example/path"`}},
		{name: "control characters stay escaped", env: map[string]string{"LOG_LEVEL": "info\nLOG_LEVEL: fine"}, want: []string{`LOG_LEVEL: invalid value "info\nLOG_LEVEL: fine"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.env)
			wantProblems(t, cfg, err, tt.want...)
		})
	}
}

func TestAllProblemsAtOnce(t *testing.T) {
	cfg, err := load(map[string]string{
		"GATEWAY_ENV":    "production",
		"JWT_SECRET":     "short",
		"MAX_BURST_SIZE": "many",
		"CACHE_TTL":      "5",
		"IP_BLACKLIST":   "0.0.0.0/0",
		"SERVICE_ROUTES": `[{"prefix":"api","target_url":"http://a"}]`,
		"ROUTE_X_URL":    "http://x",
	})
	wantProblems(t, cfg, err,
		"JWT_SECRET: refused in production",
		"MAX_BURST_SIZE: ",
		"CACHE_TTL: ",
		"IP_BLACKLIST: ",
		"SERVICE_ROUTES[0].prefix: ",
		"ROUTE_X_PREFIX: missing",
	)
}

func TestProductionRules(t *testing.T) {
	const strong = "0123456789abcdef0123456789abcdef"
	route := map[string]string{"ROUTE_API_PREFIX": "/api", "ROUTE_API_URL": "http://api:8080"}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range route {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	tests := []struct {
		name        string
		env         map[string]string
		wantErrs    []string
		wantWarning string
	}{
		{name: "production with the seed secret", env: with(map[string]string{"GATEWAY_ENV": "production", "JWT_SECRET": seedJWTSecret}),
			wantErrs: []string{"JWT_SECRET: refused in production: the value is the seed's well-known secret"}},
		{name: "production with a short secret", env: with(map[string]string{"GATEWAY_ENV": "production", "JWT_SECRET": strong[:31]}),
			wantErrs: []string{"JWT_SECRET: refused in production: the value is shorter than 32 bytes"}},
		{name: "production with a strong secret", env: with(map[string]string{"GATEWAY_ENV": "production", "JWT_SECRET": strong})},
		{name: "production without a secret", env: with(map[string]string{"GATEWAY_ENV": "production"})},
		{name: "development with the seed secret warns", env: with(map[string]string{"JWT_SECRET": seedJWTSecret}),
			wantWarning: "JWT_SECRET: the value is the seed's well-known secret"},
		{name: "development with a short secret warns", env: with(map[string]string{"JWT_SECRET": "abc"}),
			wantWarning: "JWT_SECRET: the value is shorter than 32 bytes"},
		{name: "production without routes", env: map[string]string{"GATEWAY_ENV": "production"},
			wantErrs: []string{"SERVICE_ROUTES: no routes configured (set SERVICE_ROUTES, ROUTE_<NAME>_PREFIX/_URL or CONFIG_FILE; the built-in default routes exist only in development)"}},
		{name: "production with an empty SERVICE_ROUTES", env: map[string]string{"GATEWAY_ENV": "production", "SERVICE_ROUTES": "[]"},
			wantErrs: []string{"SERVICE_ROUTES: no routes configured"}},
		{name: "production with CONFIG_FILE only", env: map[string]string{"GATEWAY_ENV": "production", "CONFIG_FILE": writeConfigFile(t, "routes.yaml", "routes: [{prefix: /a, target_url: 'http://a'}]")}},
		{name: "the demo API key warns", env: with(map[string]string{"API_KEYS": "demo-api-key-123"}),
			wantWarning: `API_KEYS: contains the seed's demo key`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := load(tt.env)
			wantProblems(t, cfg, err, tt.wantErrs...)
			if err != nil && strings.Contains(err.Error(), tt.env["JWT_SECRET"]) && tt.env["JWT_SECRET"] != "" {
				t.Errorf("the error shows the secret: %v", err)
			}
			if tt.wantWarning != "" && !slices.ContainsFunc(cfg.Warnings, func(s string) bool { return strings.HasPrefix(s, tt.wantWarning) }) {
				t.Errorf("no warning starting with %q in %q", tt.wantWarning, cfg.Warnings)
			}
		})
	}
}

// TestSecretsAreNotEchoed pins that problems with credential-bearing values
// never print them (boot errors end up in logs).
func TestSecretsAreNotEchoed(t *testing.T) {
	const secret = "hunter2-s3cret"
	tests := []struct {
		name string
		env  map[string]string
	}{
		{name: "plain key pasted as a hash", env: map[string]string{"API_KEY_HASHES": secret}},
		{name: "database URL", env: map[string]string{"API_KEYS_DATABASE_URL": "mysql://u:" + secret + "@db/x"}},
		{name: "target with user info", env: map[string]string{"ROUTE_A_PREFIX": "/a", "ROUTE_A_URL": "http://u:" + secret + "@a"}},
		{name: "production JWT secret", env: map[string]string{"GATEWAY_ENV": "production", "JWT_SECRET": secret, "SERVICE_ROUTES": `[{"prefix":"/a","target_url":"http://a"}]`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.env)
			if err == nil {
				t.Fatal("Load accepted the configuration")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error shows the secret: %v", err)
			}
		})
	}
}

func TestLoadDotEnv(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, ".env")
	const body = "PORTCULLIS_TEST_SET=from-file\nPORTCULLIS_TEST_NEW=\"from file\"\n# comment\nexport PORTCULLIS_TEST_EMPTY=x\n"
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PORTCULLIS_TEST_SET", "from-env")
	t.Setenv("PORTCULLIS_TEST_EMPTY", "")
	t.Setenv("PORTCULLIS_TEST_NEW", "") // restores the variable's absence after the test
	os.Unsetenv("PORTCULLIS_TEST_NEW")

	if err := LoadDotEnv(path); err != nil {
		t.Fatalf("LoadDotEnv: %v", err)
	}
	for name, want := range map[string]string{
		"PORTCULLIS_TEST_SET":   "from-env",
		"PORTCULLIS_TEST_NEW":   "from file",
		"PORTCULLIS_TEST_EMPTY": "",
	} {
		if got := os.Getenv(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}

	t.Run("a missing file is fine", func(t *testing.T) {
		if err := LoadDotEnv(filepath.Join(dir, "absent.env")); err != nil {
			t.Errorf("LoadDotEnv: %v", err)
		}
	})
	t.Run("a malformed file is an error that does not quote the file", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.env")
		if err := os.WriteFile(bad, []byte("GOOD=1\nBAD KEY!=x\nSECRET=hunter2\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		err := LoadDotEnv(bad)
		if err == nil {
			t.Fatal("LoadDotEnv accepted a malformed file")
		}
		if !strings.Contains(err.Error(), bad) || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("error = %v", err)
		}
		if errors.Is(err, os.ErrNotExist) {
			t.Errorf("error wraps ErrNotExist: %v", err)
		}
	})
}

func TestProductionRefusesDemoKeyAndPlainHTTPJWKS(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{name: "demo key", env: map[string]string{"API_KEYS": "mine,demo-api-key-123"}, wantErr: "API_KEYS: refused in production"},
		{name: "plain-HTTP JWKS", env: map[string]string{"JWT_JWKS_URL": "http://idp.example/jwks.json"}, wantErr: "JWT_JWKS_URL: refused in production"},
		{name: "ops endpoints on the public port", env: map[string]string{"OPS_ADDR": "public"}, wantErr: `OPS_ADDR: refused in production: "public" serves`},
		{name: "ops endpoints on a private address are fine", env: map[string]string{"OPS_ADDR": ":9778"}},
		{name: "loopback JWKS over HTTP is fine", env: map[string]string{"JWT_JWKS_URL": "http://127.0.0.1:8080/jwks.json"}},
		{name: "https JWKS is fine", env: map[string]string{"JWT_JWKS_URL": "https://idp.example/jwks.json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"GATEWAY_ENV": "production", "SERVICE_ROUTES": `[{"prefix":"/","target_url":"http://a:1"}]`}
			for k, v := range tc.env {
				env[k] = v
			}
			_, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr == "" {
				return
			}
			// The same in development is a warning, not an error.
			env["GATEWAY_ENV"] = "development"
			c, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
			if tc.name == "demo key" && (err != nil || len(c.Warnings) == 0) {
				t.Errorf("development: err %v, warnings %v", err, c.Warnings)
			}
		})
	}
}

func TestOTLPProtocol(t *testing.T) {
	for _, tc := range []struct {
		value, want string
		bad         bool
	}{
		{value: "", want: "http/protobuf"},
		{value: "grpc", want: "grpc"},
		{value: "http/protobuf", want: "http/protobuf"},
		{value: "thrift", bad: true},
	} {
		env := map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": tc.value}
		c, err := Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
		switch {
		case tc.bad && (err == nil || !strings.Contains(err.Error(), "OTEL_EXPORTER_OTLP_PROTOCOL")):
			t.Errorf("%q: error %v, want one naming OTEL_EXPORTER_OTLP_PROTOCOL", tc.value, err)
		case !tc.bad && (err != nil || c.OTelProtocol != tc.want):
			t.Errorf("%q: %v %v, want %s", tc.value, c, err, tc.want)
		}
	}
}

// TestConfigurationTableIsComplete: docs/configuration.md's table names
// every variable Load reads, and no other (ROUTE_<NAME>_* stand for the
// routes found by name).
func TestConfigurationTableIsComplete(t *testing.T) {
	b, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var documented []string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, "|", 3)[1]
		for _, m := range regexp.MustCompile("`([A-Z][A-Z0-9_<>]+)`").FindAllStringSubmatch(first, -1) {
			if !strings.Contains(m[1], "<") {
				documented = append(documented, m[1])
			}
		}
	}
	slices.Sort(documented)
	documented = slices.Compact(documented)
	want := slices.Sorted(slices.Values(documentedVariables))
	if !slices.Equal(documented, want) {
		t.Errorf("docs/configuration.md documents\n %q\nLoad reads\n %q", documented, want)
	}
}

// Package config is the only place Portcullis reads and validates its
// configuration (docs/configuration.md): environment variables in, a typed
// Config out, every problem reported at once.
package config

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Config is the validated configuration. It is built once by Load and never
// mutated afterwards; a reload builds a new one. Static is fixed for the
// life of the process; Routing is what a CONFIG_FILE reload may change, and
// is read from the configuration in force, never from the boot one.
type Config struct {
	Static
	Routing

	// Warnings are non-fatal notes for the caller to log at boot.
	Warnings []string
	// envTunables are the tunables as the environment set them, before
	// CONFIG_FILE: a reload starts from them.
	envTunables tunables
	// apiKeysSet and apiKeyHashesSet say whether API_KEYS / API_KEY_HASHES
	// were set, for the redacted view.
	apiKeysSet, apiKeyHashesSet bool
	// fileSum is the SHA-256 of the CONFIG_FILE content c was built from
	// (see FileSum).
	fileSum [sha256.Size]byte
}

// Static is the configuration fixed at boot: listeners, security, limits,
// stores, telemetry.
type Static struct {
	// Env is GATEWAY_ENV: "development" (default) or "production".
	Env string
	// ListenAddr is GATEWAY_PORT normalised to host:port (a bare "9777" becomes
	// ":9777"); default ":9777". Port 0 means any free port.
	ListenAddr string
	// OpsAddr is OPS_ADDR normalised like ListenAddr; default
	// "127.0.0.1:9778". Empty means OPS_ADDR=public: the ops endpoints are
	// served on the public listener (refused in production).
	OpsAddr string
	// LogLevel is LOG_LEVEL (debug, info, warn, error); default info.
	LogLevel slog.Level

	// TLSCertFile and TLSKeyFile are TLS_CERT_FILE and TLS_KEY_FILE: a PEM
	// chain and its key; set together, GATEWAY_PORT serves HTTPS. Default
	// empty (plain HTTP).
	TLSCertFile, TLSKeyFile string
	// TLSCertsDir is TLS_CERTS_DIR: a directory of NAME.crt + NAME.key
	// pairs chosen by SNI; not with TLS_CERT_FILE. Default empty.
	TLSCertsDir string
	// TLSMinVersion is TLS_MIN_VERSION: "1.2" (default) or "1.3".
	TLSMinVersion string
	// TLSClientCA is TLS_CLIENT_CA, the PEM roots client certificates
	// must chain to; TLSClientAuth is TLS_CLIENT_AUTH: off (default),
	// request or require.
	TLSClientCA, TLSClientAuth string
	// ACMEDomains is ACME_DOMAINS: names to obtain and renew certificates
	// for automatically (lower case, each once); empty (default) = none.
	// Not with TLS_CERT_FILE or TLS_CERTS_DIR.
	ACMEDomains []string
	// ACMEEmail is ACME_EMAIL, the account's contact; default empty.
	ACMEEmail string
	// ACMECA is ACME_CA, the directory URL; default Let's Encrypt's
	// production directory.
	ACMECA string
	// ACMECARoot is ACME_CA_ROOT, a PEM file of the roots the directory's
	// HTTPS certificate chains to; empty (default) = the system roots.
	ACMECARoot string
	// ACMEStorage is ACME_STORAGE, the directory of accounts, keys and
	// certificates; default "./acme". In CLUSTER_MODE=redis they live in
	// Redis instead.
	ACMEStorage string
	// HTTP2MaxConcurrentStreams is HTTP2_MAX_CONCURRENT_STREAMS, per
	// connection; default 250.
	HTTP2MaxConcurrentStreams int
	// H2C is H2C: cleartext HTTP/2 with prior knowledge on a plain-HTTP
	// GATEWAY_PORT, for platform load balancers; default false.
	H2C bool
	// HTTP3 is HTTP3: also serve HTTP/3 over QUIC on GATEWAY_PORT's port
	// number (UDP) and advertise it with Alt-Svc; needs TLS; default false.
	HTTP3 bool
	// HTTPRedirectAddr is HTTP_REDIRECT_ADDR, normalised like ListenAddr:
	// a plain-HTTP listener that 308-redirects to https; empty (default) =
	// none.
	HTTPRedirectAddr string

	// JWTSecret is JWT_SECRET, the HS256 key; empty (default) = HS256 tokens are refused.
	JWTSecret string
	// JWTIssuer is JWT_ISSUER; when set, "iss" must match.
	JWTIssuer string
	// JWTAudience is JWT_AUDIENCE; when set, "aud" must contain it.
	JWTAudience string
	// JWTJWKSURL is JWT_JWKS_URL, an absolute http(s) URL; empty = no RS/ES tokens.
	JWTJWKSURL string

	// APIKeyDigests holds the lowercase hex SHA-256 digests of API_KEYS (hashed
	// here, the plain keys are not kept) followed by API_KEY_HASHES, deduplicated.
	APIKeyDigests []string
	// APIKeysFile is API_KEYS_FILE (one hash or name:hash per line); not read here.
	APIKeysFile string
	// APIKeysRedis is API_KEYS_REDIS: also look keys up in Redis. Default false.
	APIKeysRedis bool
	// APIKeysDatabaseURL is API_KEYS_DATABASE_URL (PostgreSQL); it may hold a password.
	APIKeysDatabaseURL string

	// AdminToken is ADMIN_TOKEN; empty (default) = admin API off.
	AdminToken string

	// TrustedProxies is TRUSTED_PROXIES, masked prefixes (single IPs become /32
	// or /128); default empty (nobody is trusted; the word "none" says so too).
	TrustedProxies []netip.Prefix
	// IPWhitelist is IP_WHITELIST, parsed like TrustedProxies; default empty.
	IPWhitelist []netip.Prefix
	// IPBlacklist is IP_BLACKLIST, parsed like TrustedProxies; default empty.
	IPBlacklist []netip.Prefix
	// PublicPaths is PUBLIC_PATHS, clean path prefixes without trailing "/";
	// default /health, /metrics, /login, /register, /api/v1/public.
	PublicPaths []string

	// RedisAddr is REDIS_ADDR (host:port); default "localhost:6379".
	RedisAddr string
	// RedisPassword is REDIS_PASSWORD; default empty.
	RedisPassword string
	// RedisDB is REDIS_DB (>= 0); default 0.
	RedisDB int
	// CacheBackend is CACHE_BACKEND: memory (default), redis or auto.
	CacheBackend string
	// CacheMaxBytes is CACHE_MAX_BYTES; default 256 MiB.
	CacheMaxBytes int64
	// CacheMaxObjectBytes is CACHE_MAX_OBJECT_BYTES (<= CacheMaxBytes); default 1 MiB.
	CacheMaxObjectBytes int64
	// ClusterMode is CLUSTER_MODE: off (default) or redis.
	ClusterMode string

	// MaxRequestsPerSecond is MAX_REQUESTS_PER_SECOND, token refill per client
	// IP; default 100.
	MaxRequestsPerSecond float64
	// MaxBurstSize is MAX_BURST_SIZE, bucket size per client IP; default 200.
	MaxBurstSize int
	// DDoSThreshold is DDOS_THRESHOLD, requests per minute before a block; default 1000.
	DDoSThreshold int
	// BlockDuration is BLOCK_DURATION; default 10m.
	BlockDuration time.Duration

	// MaxConnsPerIP is MAX_CONNS_PER_IP; default 256; 0 = off.
	MaxConnsPerIP int
	// MaxConnections is MAX_CONNECTIONS; default 10000.
	MaxConnections int
	// MaxInflight is MAX_INFLIGHT; default 5000.
	MaxInflight int
	// MaxTrackedIPs is MAX_TRACKED_IPS (>= 1024); default 262144.
	MaxTrackedIPs int
	// MaxEjectedPercent is MAX_EJECTED_PERCENT (0..100): the most of a pool
	// that open breakers may take out at once, though one backend may always
	// go; default 50.
	MaxEjectedPercent int
	// TunnelIdleTimeout is TUNNEL_IDLE_TIMEOUT: an upgraded connection with
	// no traffic either way for this long is closed; default 5m.
	TunnelIdleTimeout time.Duration
	// RequestBufferBytes is REQUEST_BUFFER_BYTES: request bodies up to this
	// size are read whole before a backend is chosen; 0 = always stream;
	// default 1 MiB.
	RequestBufferBytes int64
	// HideUpstreamHeaders is HIDE_UPSTREAM_HEADERS, canonical header names
	// removed from upstream answers; default Server, X-Powered-By,
	// X-Aspnet-Version. Set to the empty string, it is empty (keep all).
	HideUpstreamHeaders []string
	// AccessLogRejectRate is ACCESS_LOG_REJECT_RATE: access lines a second
	// per client IP for 403/429 answers before they are only counted and
	// summarised; 0 = log every one; default 10.
	AccessLogRejectRate int

	// HealthCheckInterval is HEALTH_CHECK_INTERVAL; default 10s.
	HealthCheckInterval time.Duration
	// HealthCheckPath is HEALTH_CHECK_PATH; empty (default) = TCP dial probes.
	HealthCheckPath string
	// HealthCheckFalls is HEALTH_CHECK_FALLS; default 2.
	HealthCheckFalls int
	// HealthCheckRises is HEALTH_CHECK_RISES; default 2.
	HealthCheckRises int

	// BodyReadTimeout is BODY_READ_TIMEOUT; default 60s.
	BodyReadTimeout time.Duration
	// UpstreamDialTimeout is UPSTREAM_DIAL_TIMEOUT; default 5s.
	UpstreamDialTimeout time.Duration
	// MaxIdleConns is MAX_IDLE_CONNS per upstream host; default 100.
	MaxIdleConns int
	// IdleConnTimeout is IDLE_CONN_TIMEOUT; default 90s.
	IdleConnTimeout time.Duration
	// CircuitBreakerMax is CIRCUIT_BREAKER_MAX consecutive failures; default 5.
	CircuitBreakerMax int
	// CircuitBreakerTimeout is CIRCUIT_BREAKER_TIMEOUT (open → half-open); default 30s.
	CircuitBreakerTimeout time.Duration
	// RetryMax is RETRY_MAX, attempts per request with the first one included
	// (1 = no retry), 1..10; default 3.
	RetryMax int

	// EnableCaching is ENABLE_CACHING; default true. Route.NoCache is not
	// set when it is false: check both.
	EnableCaching bool
	// CachePrivateHeaders is CACHE_PRIVATE_HEADERS, canonical names of
	// request headers that make a request personal (no shared cache), on
	// top of Authorization, Proxy-Authorization, Cookie and X-Api-Key;
	// default empty.
	CachePrivateHeaders []string
	// CacheClientRevalidate is CACHE_CLIENT_REVALIDATE: a client's
	// Cache-Control no-cache or max-age=0 may refresh a fresh shared entry;
	// default false.
	CacheClientRevalidate bool
	// ShutdownDelay is SHUTDOWN_DELAY (>= 0); default 0s.
	ShutdownDelay time.Duration
	// ShutdownTimeout is SHUTDOWN_TIMEOUT; default 30s.
	ShutdownTimeout time.Duration
	// Dashboard is DASHBOARD: auto (default), on or off.
	Dashboard string
	// LogFile is LOG_FILE; default "gateway.log".
	LogFile string
	// ConfigFile is CONFIG_FILE: a YAML or JSON file read at boot and at
	// every reload (ReloadFile). When set it is the only source of routes
	// (SERVICE_ROUTES and ROUTE_* must be unset), and its tunables override
	// their variables (see FileKeys).
	ConfigFile string
	// EnableCompression is ENABLE_COMPRESSION; default true.
	EnableCompression bool
	// CompressionMinBytes is COMPRESSION_MIN_BYTES; default 1024.
	CompressionMinBytes int
	// OTelEndpoint is OTEL_EXPORTER_OTLP_ENDPOINT, an absolute http(s) URL;
	// empty = tracing off.
	OTelEndpoint string
	// OTelServiceName is OTEL_SERVICE_NAME; default "api-gateway".
	OTelServiceName string
	// OTelProtocol is OTEL_EXPORTER_OTLP_PROTOCOL, the standard OpenTelemetry
	// variable: "http/protobuf" (default) or "grpc".
	OTelProtocol string
}

// Routing is the configuration a CONFIG_FILE reload may change: the routes
// and the defaults routes take when they do not say.
type Routing struct {
	// LoadBalancingAlgo is LOAD_BALANCING_ALGO: round-robin, least-conn (default),
	// ip-hash or weighted. Routes carry their effective algorithm in Route.Algo.
	LoadBalancingAlgo string
	// CORSAllowedOrigins is CORS_ALLOWED_ORIGINS: "*" or lower-cased origins
	// (scheme://host[:port]); default [] (no origin, no CORS headers).
	CORSAllowedOrigins []string
	// MaxBodyBytes is MAX_BODY_BYTES, the default route body limit; default 10485760.
	MaxBodyBytes int64
	// ConnectionTimeout is CONNECTION_TIMEOUT, the default route timeout; default 30s.
	ConnectionTimeout time.Duration
	// CacheTTL is CACHE_TTL, the lifetime given to storable answers that
	// carry no explicit freshness, for routes without cache_ttl_secs;
	// default 0 = such answers are not stored.
	CacheTTL time.Duration
	// FileTunables are the tunables CONFIG_FILE set (its member names, sorted).
	FileTunables []string
	// Routes are CONFIG_FILE's routes, or SERVICE_ROUTES and ROUTE_<NAME>_*
	// routes (or the development defaults), sorted by prefix, prefixes unique.
	Routes []Route
	// RoutesSource says where Routes came from: "CONFIG_FILE",
	// "SERVICE_ROUTES", "ROUTE_*", "SERVICE_ROUTES,ROUTE_*", "defaults", or
	// "" when none are configured (an explicit empty SERVICE_ROUTES in
	// development).
	RoutesSource string
}

// Values of Config.Env.
const (
	EnvDevelopment = "development"
	EnvProduction  = "production"
)

// DefaultOpsAddr is OPS_ADDR's default: the ops endpoints answer on loopback
// only, so nothing about the gateway's insides reaches the public port.
const DefaultOpsAddr = "127.0.0.1:9778"

// OpsPublic is the OPS_ADDR value that serves the ops endpoints on
// GATEWAY_PORT.
const OpsPublic = "public"

// seedJWTSecret is the seed's well-known JWT secret: anyone can mint tokens with it.
const seedJWTSecret = "your-secret-key-change-in-production"

// seedAPIKey is the seed README's demo key.
const seedAPIKey = "demo-api-key-123"

// minSecretBytes is the shortest HS256 secret production accepts (RFC 7518 §3.2:
// the key must be at least as long as the hash output).
const minSecretBytes = 32

// algos are the load-balancing algorithms, for LOAD_BALANCING_ALGO and route "algo".
var algos = []string{"round-robin", "least-conn", "ip-hash", "weighted"}

// Load reads every configuration variable through lookup (os.LookupEnv in
// production, a map in tests); a variable set to the empty string counts as
// unset. environ ("KEY=VALUE" strings, os.Environ()) is used only to discover
// ROUTE_<NAME>_PREFIX/_URL pairs; their values are read through lookup.
// On failure it returns a nil Config and errors.Join of one single-line error
// per problem, each starting with the variable's name.
func Load(lookup func(string) (string, bool), environ []string) (*Config, error) {
	if lookup == nil {
		lookup = os.LookupEnv
	}
	p := &parser{lookup: lookup}
	c := &Config{}

	c.Env = p.enum("GATEWAY_ENV", EnvDevelopment, EnvDevelopment, EnvProduction)
	p.production = c.Env == EnvProduction
	c.ListenAddr = p.addr("GATEWAY_PORT", ":9777")
	c.OpsAddr = p.opsAddr("OPS_ADDR", DefaultOpsAddr)
	c.LogLevel = p.logLevel("LOG_LEVEL", slog.LevelInfo)

	c.TLSCertFile = p.str("TLS_CERT_FILE", "")
	c.TLSKeyFile = p.str("TLS_KEY_FILE", "")
	c.TLSCertsDir = p.str("TLS_CERTS_DIR", "")
	c.TLSMinVersion = p.enum("TLS_MIN_VERSION", "1.2", "1.2", "1.3")
	c.TLSClientCA = p.str("TLS_CLIENT_CA", "")
	c.TLSClientAuth = p.enum("TLS_CLIENT_AUTH", "off", "off", "request", "require")
	c.ACMEDomains = p.domains("ACME_DOMAINS")
	c.ACMEEmail = p.str("ACME_EMAIL", "")
	c.ACMECA = p.httpsURL("ACME_CA", LetsEncryptDirectory)
	c.ACMECARoot = p.str("ACME_CA_ROOT", "")
	c.ACMEStorage = p.str("ACME_STORAGE", "./acme")
	c.HTTP2MaxConcurrentStreams = p.intVar("HTTP2_MAX_CONCURRENT_STREAMS", 250, 1, math.MaxInt32)
	c.H2C = p.boolean("H2C", false)
	c.HTTP3 = p.boolean("HTTP3", false)
	if _, set := p.value("HTTP_REDIRECT_ADDR"); set {
		c.HTTPRedirectAddr = p.addr("HTTP_REDIRECT_ADDR", "")
	}

	c.JWTSecret = p.secret("JWT_SECRET")
	c.JWTIssuer = p.str("JWT_ISSUER", "")
	c.JWTAudience = p.str("JWT_AUDIENCE", "")
	c.JWTJWKSURL = p.httpURL("JWT_JWKS_URL")

	c.APIKeyDigests = p.apiKeys("API_KEYS", "API_KEY_HASHES")
	_, c.apiKeysSet = p.raw("API_KEYS")
	_, c.apiKeyHashesSet = p.raw("API_KEY_HASHES")
	c.APIKeysFile = p.str("API_KEYS_FILE", "")
	c.APIKeysRedis = p.boolean("API_KEYS_REDIS", false)
	c.APIKeysDatabaseURL = p.databaseURL("API_KEYS_DATABASE_URL")
	c.AdminToken = p.secret("ADMIN_TOKEN")

	c.TrustedProxies = p.prefixes("TRUSTED_PROXIES", "", true)
	c.IPWhitelist = p.prefixes("IP_WHITELIST", "", false)
	c.IPBlacklist = p.prefixes("IP_BLACKLIST", "", false)
	c.PublicPaths = p.paths("PUBLIC_PATHS", "/health,/metrics,/login,/register,/api/v1/public")
	c.LoadBalancingAlgo = p.enum("LOAD_BALANCING_ALGO", "least-conn", algos...)

	c.RedisAddr = p.hostPort("REDIS_ADDR", "localhost:6379")
	c.RedisPassword = p.secret("REDIS_PASSWORD")
	c.RedisDB = p.intVar("REDIS_DB", 0, 0, math.MaxInt32)
	c.CacheBackend = p.enum("CACHE_BACKEND", "memory", "memory", "redis", "auto")
	c.CacheMaxBytes = p.size("CACHE_MAX_BYTES", 256<<20, 1)
	c.CacheMaxObjectBytes = p.size("CACHE_MAX_OBJECT_BYTES", 1<<20, 1)
	c.ClusterMode = p.enum("CLUSTER_MODE", "off", "off", "redis")
	c.CORSAllowedOrigins = p.origins("CORS_ALLOWED_ORIGINS", []string{})

	c.MaxRequestsPerSecond = p.positiveFloat("MAX_REQUESTS_PER_SECOND", 100)
	c.MaxBurstSize = p.intVar("MAX_BURST_SIZE", 200, 1, math.MaxInt32)
	c.DDoSThreshold = p.intVar("DDOS_THRESHOLD", 1000, 1, math.MaxInt32)
	c.BlockDuration = p.duration("BLOCK_DURATION", 10*time.Minute, false)

	c.MaxConnsPerIP = p.intVar("MAX_CONNS_PER_IP", 256, 0, math.MaxInt32)
	c.MaxConnections = p.intVar("MAX_CONNECTIONS", 10000, 1, math.MaxInt32)
	c.MaxInflight = p.intVar("MAX_INFLIGHT", 5000, 1, math.MaxInt32)
	c.MaxTrackedIPs = p.intVar("MAX_TRACKED_IPS", 262144, 1024, math.MaxInt32)
	c.MaxEjectedPercent = p.intVar("MAX_EJECTED_PERCENT", 50, 0, 100)
	c.TunnelIdleTimeout = p.duration("TUNNEL_IDLE_TIMEOUT", 5*time.Minute, false)
	c.RequestBufferBytes = p.size("REQUEST_BUFFER_BYTES", 1<<20, 0)
	c.HideUpstreamHeaders = p.headerNames("HIDE_UPSTREAM_HEADERS", "Server,X-Powered-By,X-AspNet-Version", true)
	c.AccessLogRejectRate = p.intVar("ACCESS_LOG_REJECT_RATE", 10, 0, math.MaxInt32)
	c.MaxBodyBytes = p.size("MAX_BODY_BYTES", 10485760, 1)

	c.HealthCheckInterval = p.duration("HEALTH_CHECK_INTERVAL", 10*time.Second, false)
	c.HealthCheckPath = p.requestPath("HEALTH_CHECK_PATH")
	c.HealthCheckFalls = p.intVar("HEALTH_CHECK_FALLS", 2, 1, math.MaxInt32)
	c.HealthCheckRises = p.intVar("HEALTH_CHECK_RISES", 2, 1, math.MaxInt32)

	c.BodyReadTimeout = p.duration("BODY_READ_TIMEOUT", 60*time.Second, false)
	c.ConnectionTimeout = p.duration("CONNECTION_TIMEOUT", 30*time.Second, false)
	c.UpstreamDialTimeout = p.duration("UPSTREAM_DIAL_TIMEOUT", 5*time.Second, false)
	c.MaxIdleConns = p.intVar("MAX_IDLE_CONNS", 100, 0, math.MaxInt32)
	c.IdleConnTimeout = p.duration("IDLE_CONN_TIMEOUT", 90*time.Second, false)
	c.CircuitBreakerMax = p.intVar("CIRCUIT_BREAKER_MAX", 5, 1, math.MaxInt32)
	c.CircuitBreakerTimeout = p.duration("CIRCUIT_BREAKER_TIMEOUT", 30*time.Second, false)
	c.RetryMax = p.intVar("RETRY_MAX", 3, 1, 10)

	c.EnableCaching = p.boolean("ENABLE_CACHING", true)
	c.CacheTTL = p.duration("CACHE_TTL", 0, true)
	c.CachePrivateHeaders = p.headerNames("CACHE_PRIVATE_HEADERS", "", false)
	c.CacheClientRevalidate = p.boolean("CACHE_CLIENT_REVALIDATE", false)
	c.ShutdownDelay = p.duration("SHUTDOWN_DELAY", 0, true)
	c.ShutdownTimeout = p.duration("SHUTDOWN_TIMEOUT", 30*time.Second, false)
	c.Dashboard = p.enum("DASHBOARD", "auto", "auto", "on", "off")
	c.LogFile = p.str("LOG_FILE", "gateway.log")
	c.ConfigFile = p.str("CONFIG_FILE", "")
	c.EnableCompression = p.boolean("ENABLE_COMPRESSION", true)
	c.CompressionMinBytes = int(p.size("COMPRESSION_MIN_BYTES", 1024, 0))
	c.OTelEndpoint = p.httpURL("OTEL_EXPORTER_OTLP_ENDPOINT")
	c.OTelServiceName = p.str("OTEL_SERVICE_NAME", "api-gateway")
	c.OTelProtocol = p.enum("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf", "http/protobuf", "grpc")

	c.checkCrossField(p)
	c.loadRoutes(p, environ)

	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	c.Warnings = p.warnings
	return c, nil
}

// checkCrossField applies the rules that involve more than one variable, and
// the rules GATEWAY_ENV=production adds.
func (c *Config) checkCrossField(p *parser) {
	if c.CacheMaxObjectBytes > c.CacheMaxBytes {
		p.failf("CACHE_MAX_OBJECT_BYTES", "%d exceeds CACHE_MAX_BYTES (%d): expected at most CACHE_MAX_BYTES",
			c.CacheMaxObjectBytes, c.CacheMaxBytes)
	}
	if c.OpsAddr != "" && c.OpsAddr == c.ListenAddr && !hasPortZero(c.OpsAddr) {
		p.failf("OPS_ADDR", "invalid value %s: expected an address other than GATEWAY_PORT's", quote(c.OpsAddr))
	}
	c.checkTLS(p)
	if slices.ContainsFunc(c.PublicPaths, func(s string) bool { return s == "/" }) {
		p.warnf("PUBLIC_PATHS: contains \"/\": no path ever needs auth")
	}

	if c.JWTSecret != "" {
		var weak string
		switch {
		case c.JWTSecret == seedJWTSecret:
			weak = "is the seed's well-known secret"
		case len(c.JWTSecret) < minSecretBytes:
			weak = fmt.Sprintf("is shorter than %d bytes", minSecretBytes)
		}
		if weak != "" {
			if c.Env == EnvProduction {
				p.failf("JWT_SECRET", "refused in production: the value %s (expected a random secret of at least %d bytes)", weak, minSecretBytes)
			} else {
				p.warnf("JWT_SECRET: the value %s; production refuses it", weak)
			}
		}
	}
	if c.JWTJWKSURL != "" && c.Env == EnvProduction && strings.HasPrefix(strings.ToLower(c.JWTJWKSURL), "http://") && !loopbackURL(c.JWTJWKSURL) {
		// Whoever can tamper with a plain-HTTP fetch can serve their own
		// keys and sign any identity.
		p.failf("JWT_JWKS_URL", "refused in production: %s is plain HTTP (expected https://, or a loopback address)", quote(c.JWTJWKSURL))
	}
	if c.AdminToken == "" {
		p.warnf("ADMIN_TOKEN: empty, the admin API is off (403 for everyone)")
	} else if len(c.AdminToken) < minSecretBytes {
		p.warnf("ADMIN_TOKEN: shorter than %d bytes, easy to guess", minSecretBytes)
	}
}

// LetsEncryptDirectory is ACME_CA's default: Let's Encrypt's production
// ACME directory.
const LetsEncryptDirectory = "https://acme-v02.api.letsencrypt.org/directory"

// TLS reports whether GATEWAY_PORT serves HTTPS.
func (c *Static) TLS() bool {
	return c.TLSCertFile != "" || c.TLSCertsDir != "" || len(c.ACMEDomains) > 0
}

// checkTLS applies the rules between the TLS variables. Whether the files
// exist and hold matching certificates and keys is checked when they are
// loaded, at boot.
func (c *Config) checkTLS(p *parser) {
	switch {
	case c.TLSCertFile != "" && c.TLSKeyFile == "":
		p.failf("TLS_KEY_FILE", "not set: TLS_CERT_FILE needs its key (expected the PEM key of %s)", quote(c.TLSCertFile))
	case c.TLSKeyFile != "" && c.TLSCertFile == "":
		p.failf("TLS_CERT_FILE", "not set: TLS_KEY_FILE needs its certificate chain (expected a PEM file)")
	}
	if c.TLSCertsDir != "" && c.TLSCertFile != "" {
		p.failf("TLS_CERTS_DIR", "set together with TLS_CERT_FILE: certificates come from one place (expected one of the two)")
	}
	if len(c.ACMEDomains) > 0 && (c.TLSCertsDir != "" || c.TLSCertFile != "") {
		p.failf("ACME_DOMAINS", "set together with TLS_CERT_FILE or TLS_CERTS_DIR: certificates come from one place (expected one of them)")
	}
	if len(c.ACMEDomains) > 0 && c.TLSClientAuth != "off" {
		p.failf("TLS_CLIENT_AUTH", "%s with ACME_DOMAINS: client certificates need TLS_CERT_FILE or TLS_CERTS_DIR for now", c.TLSClientAuth)
	}
	if c.TLSClientAuth != "off" && c.TLSClientCA == "" {
		p.failf("TLS_CLIENT_CA", "not set: TLS_CLIENT_AUTH=%s needs the roots client certificates chain to (expected a PEM file)", c.TLSClientAuth)
	}
	if c.TLSClientCA != "" && c.TLSClientAuth == "off" {
		p.failf("TLS_CLIENT_AUTH", "off while TLS_CLIENT_CA is set (expected request or require, or unset TLS_CLIENT_CA)")
	}
	if !c.TLS() {
		if c.TLSClientAuth != "off" {
			p.failf("TLS_CLIENT_AUTH", "%s without TLS: client certificates need TLS_CERT_FILE or TLS_CERTS_DIR", c.TLSClientAuth)
		}
		if c.HTTPRedirectAddr != "" {
			p.failf("HTTP_REDIRECT_ADDR", "set without TLS: it redirects to https, which needs TLS_CERT_FILE, TLS_CERTS_DIR or ACME_DOMAINS")
		}
		if c.HTTP3 {
			p.failf("HTTP3", "true without TLS: HTTP/3 runs over QUIC, which is always encrypted (set TLS_CERT_FILE, TLS_CERTS_DIR or ACME_DOMAINS)")
		}
	}
	for _, f := range []struct{ name, path string }{
		{"TLS_CERT_FILE", c.TLSCertFile}, {"TLS_KEY_FILE", c.TLSKeyFile}, {"TLS_CERTS_DIR", c.TLSCertsDir}, {"TLS_CLIENT_CA", c.TLSClientCA},
		{"ACME_CA_ROOT", c.ACMECARoot},
	} {
		if f.path == "" {
			continue
		}
		if fi, err := os.Stat(f.path); err != nil {
			p.failf(f.name, "cannot read %s: %v", quote(f.path), errors.Unwrap(err))
		} else if isDir := fi.IsDir(); isDir != (f.name == "TLS_CERTS_DIR") {
			p.failf(f.name, "%s is %s", quote(f.path), map[bool]string{true: "a directory (expected a PEM file)", false: "a file (expected a directory of NAME.crt and NAME.key pairs)"}[isDir])
		}
	}
	if c.H2C && c.TLS() {
		p.failf("H2C", "true with TLS: HTTPS negotiates HTTP/2 by ALPN; cleartext HTTP/2 is for a plain-HTTP GATEWAY_PORT behind a platform load balancer")
	}
	if a := c.HTTPRedirectAddr; a != "" && !hasPortZero(a) && (a == c.ListenAddr || a == c.OpsAddr) {
		p.failf("HTTP_REDIRECT_ADDR", "invalid value %s: expected an address other than GATEWAY_PORT's and OPS_ADDR's", quote(a))
	}
}

// digest returns the lowercase hex SHA-256 of key, the form API keys are kept in.
func digest(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// hasPortZero reports whether the normalised address asks for any free port.
func hasPortZero(addr string) bool {
	return len(addr) >= 2 && addr[len(addr)-2:] == ":0"
}

// loopbackURL reports whether u's host is a loopback address or localhost.
func loopbackURL(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	h := pu.Hostname()
	if h == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(h)
	return err == nil && a.IsLoopback()
}

package config

import (
	"cmp"
	"encoding/json"
	"net/netip"
	"net/url"
	"regexp"
	"strings"
)

// Redacted stands in for a secret in View.
const Redacted = "[redacted]"

// View is the configuration as GET /admin/config shows it: every variable
// by name with its effective value, the routes as route objects, and where
// they came from. Secrets are replaced by Redacted (empty when unset, so
// an operator still sees whether one is set).
type View struct {
	ConfigFile string `json:"config_file"`
	// FileTunables are the tunables CONFIG_FILE set; their values in
	// Settings come from the file.
	FileTunables []string      `json:"file_tunables"`
	RoutesSource string        `json:"routes_source"`
	Routes       []RouteObject `json:"routes"`
	// Settings maps each configuration variable to its effective value.
	Settings map[string]any `json:"settings"`
}

// RouteObject is a route as a route object (what SERVICE_ROUTES and
// CONFIG_FILE's routes hold) with every effective value filled in, plus
// the ROUTE_<NAME> name when it has one. Its members are those of
// routeFields, in their order, each as the field's show gives it: a new
// route field appears here with no code of its own. target_url and weight
// are shown within targets.
type RouteObject struct {
	members []objectMember
}

type objectMember struct {
	name  string
	value any
}

// TargetObject is one backend of a RouteObject.
type TargetObject struct {
	URL    string `json:"url"`
	Weight int    `json:"weight"`
}

// Object returns r as a route object.
func (r Route) Object() RouteObject {
	var o RouteObject
	if r.Name != "" {
		o.members = append(o.members, objectMember{"name", r.Name})
	}
	for _, f := range routeFields {
		if f.show == nil {
			continue
		}
		if v := f.show(&r); v != nil {
			o.members = append(o.members, objectMember{f.name, v})
		}
	}
	return o
}

// MarshalJSON writes the members in their order (a map would sort them).
func (o RouteObject) MarshalJSON() ([]byte, error) {
	buf := []byte{'{'}
	for i, m := range o.members {
		if i > 0 {
			buf = append(buf, ',')
		}
		name, err := json.Marshal(m.name)
		if err != nil {
			return nil, err
		}
		value, err := json.Marshal(m.value)
		if err != nil {
			return nil, err
		}
		buf = append(append(append(buf, name...), ':'), value...)
	}
	return append(buf, '}'), nil
}

// View returns the configuration with its secrets redacted.
func (c *Config) View() View {
	v := View{
		ConfigFile:   c.ConfigFile,
		FileTunables: append([]string{}, c.FileTunables...),
		RoutesSource: c.RoutesSource,
		Routes:       make([]RouteObject, len(c.Routes)),
	}
	for i, r := range c.Routes {
		v.Routes[i] = r.Object()
	}
	secret := func(set bool) string {
		if set {
			return Redacted
		}
		return ""
	}
	v.Settings = map[string]any{
		"GATEWAY_ENV":                  c.Env,
		"GATEWAY_PORT":                 c.ListenAddr,
		"OPS_ADDR":                     cmp.Or(c.OpsAddr, OpsPublic),
		"LOG_LEVEL":                    strings.ToLower(c.LogLevel.String()),
		"TLS_CERT_FILE":                c.TLSCertFile,
		"TLS_KEY_FILE":                 c.TLSKeyFile,
		"TLS_CERTS_DIR":                c.TLSCertsDir,
		"TLS_MIN_VERSION":              c.TLSMinVersion,
		"TLS_CLIENT_CA":                c.TLSClientCA,
		"TLS_CLIENT_AUTH":              c.TLSClientAuth,
		"ACME_DOMAINS":                 append([]string{}, c.ACMEDomains...),
		"ACME_EMAIL":                   c.ACMEEmail,
		"ACME_CA":                      c.ACMECA,
		"ACME_CA_ROOT":                 c.ACMECARoot,
		"ACME_STORAGE":                 c.ACMEStorage,
		"HTTP2_MAX_CONCURRENT_STREAMS": c.HTTP2MaxConcurrentStreams,
		"H2C":                          c.H2C,
		"HTTP3":                        c.HTTP3,
		"HTTP_REDIRECT_ADDR":           c.HTTPRedirectAddr,
		"JWT_SECRET":                   secret(c.JWTSecret != ""),
		"JWT_ISSUER":                   c.JWTIssuer,
		"JWT_AUDIENCE":                 c.JWTAudience,
		"JWT_JWKS_URL":                 RedactDatabaseURL(c.JWTJWKSURL),
		"API_KEYS":                     secret(c.apiKeysSet),
		"API_KEY_HASHES":               secret(c.apiKeyHashesSet),
		"API_KEYS_FILE":                c.APIKeysFile,
		"API_KEYS_REDIS":               c.APIKeysRedis,
		"API_KEYS_DATABASE_URL":        RedactDatabaseURL(c.APIKeysDatabaseURL),
		"ADMIN_TOKEN":                  secret(c.AdminToken != ""),
		"TRUSTED_PROXIES":              prefixStrings(c.TrustedProxies),
		"IP_WHITELIST":                 prefixStrings(c.IPWhitelist),
		"IP_BLACKLIST":                 prefixStrings(c.IPBlacklist),
		"PUBLIC_PATHS":                 append([]string{}, c.PublicPaths...),
		"LOAD_BALANCING_ALGO":          c.LoadBalancingAlgo,
		"REDIS_ADDR":                   c.RedisAddr,
		"REDIS_PASSWORD":               secret(c.RedisPassword != ""),
		"REDIS_DB":                     c.RedisDB,
		"CACHE_BACKEND":                c.CacheBackend,
		"CACHE_MAX_BYTES":              c.CacheMaxBytes,
		"CACHE_MAX_OBJECT_BYTES":       c.CacheMaxObjectBytes,
		"CLUSTER_MODE":                 c.ClusterMode,
		"CORS_ALLOWED_ORIGINS":         append([]string{}, c.CORSAllowedOrigins...),
		"MAX_REQUESTS_PER_SECOND":      c.MaxRequestsPerSecond,
		"MAX_BURST_SIZE":               c.MaxBurstSize,
		"DDOS_THRESHOLD":               c.DDoSThreshold,
		"BLOCK_DURATION":               c.BlockDuration.String(),
		"MAX_CONNS_PER_IP":             c.MaxConnsPerIP,
		"MAX_CONNECTIONS":              c.MaxConnections,
		"MAX_INFLIGHT":                 c.MaxInflight,
		"MAX_TRACKED_IPS":              c.MaxTrackedIPs,
		"MAX_EJECTED_PERCENT":          c.MaxEjectedPercent,
		"TUNNEL_IDLE_TIMEOUT":          c.TunnelIdleTimeout.String(),
		"REQUEST_BUFFER_BYTES":         c.RequestBufferBytes,
		"HIDE_UPSTREAM_HEADERS":        append([]string{}, c.HideUpstreamHeaders...),
		"ACCESS_LOG_REJECT_RATE":       c.AccessLogRejectRate,
		"MAX_BODY_BYTES":               c.MaxBodyBytes,
		"HEALTH_CHECK_INTERVAL":        c.HealthCheckInterval.String(),
		"HEALTH_CHECK_PATH":            c.HealthCheckPath,
		"HEALTH_CHECK_FALLS":           c.HealthCheckFalls,
		"HEALTH_CHECK_RISES":           c.HealthCheckRises,
		"BODY_READ_TIMEOUT":            c.BodyReadTimeout.String(),
		"CONNECTION_TIMEOUT":           c.ConnectionTimeout.String(),
		"UPSTREAM_DIAL_TIMEOUT":        c.UpstreamDialTimeout.String(),
		"MAX_IDLE_CONNS":               c.MaxIdleConns,
		"IDLE_CONN_TIMEOUT":            c.IdleConnTimeout.String(),
		"CIRCUIT_BREAKER_MAX":          c.CircuitBreakerMax,
		"CIRCUIT_BREAKER_TIMEOUT":      c.CircuitBreakerTimeout.String(),
		"RETRY_MAX":                    c.RetryMax,
		"ENABLE_CACHING":               c.EnableCaching,
		"CACHE_TTL":                    c.CacheTTL.String(),
		"CACHE_PRIVATE_HEADERS":        append([]string{}, c.CachePrivateHeaders...),
		"CACHE_CLIENT_REVALIDATE":      c.CacheClientRevalidate,
		"SHUTDOWN_DELAY":               c.ShutdownDelay.String(),
		"SHUTDOWN_TIMEOUT":             c.ShutdownTimeout.String(),
		"DASHBOARD":                    c.Dashboard,
		"LOG_FILE":                     c.LogFile,
		"CONFIG_FILE":                  c.ConfigFile,
		"ENABLE_COMPRESSION":           c.EnableCompression,
		"COMPRESSION_MIN_BYTES":        c.CompressionMinBytes,
		"OTEL_EXPORTER_OTLP_ENDPOINT":  RedactDatabaseURL(c.OTelEndpoint),
		"OTEL_SERVICE_NAME":            c.OTelServiceName,
		"OTEL_EXPORTER_OTLP_PROTOCOL":  c.OTelProtocol,
	}
	return v
}

func prefixStrings(ps []netip.Prefix) []string {
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.String()
	}
	return out
}

// dsnPassword matches password=… in a libpq key=value DSN (quoted or not)
// and in a URL's query.
var dsnPassword = regexp.MustCompile(`(?i)\b(password|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s&]*)`)

// RedactDatabaseURL hides the password of a postgres:// URL or a key=value
// DSN: in the user info, and in password= / sslpassword= parameters.
func RedactDatabaseURL(s string) string {
	if s == "" {
		return ""
	}
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if _, has := u.User.Password(); has {
			u.User = url.UserPassword(u.User.Username(), "REDACTED")
		}
		out := strings.Replace(u.String(), ":REDACTED@", ":"+Redacted+"@", 1)
		return dsnPassword.ReplaceAllString(out, "${1}${2}"+Redacted)
	}
	return dsnPassword.ReplaceAllString(s, "${1}${2}"+Redacted)
}

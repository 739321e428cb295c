package config

import (
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// writeConfigFile writes content to name in a fresh directory and returns its path.
func writeConfigFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

const fileYAML = `# routes and tunables
connection_timeout: 12s
load_balancing_algo: round-robin
max_body_bytes: 2MiB
cache_ttl: 1m
cors_allowed_origins: ["https://App.Example"]
routes:
  - prefix: /api/a/
    target_url: http://a-1:8080, http://a-2:8080
  - prefix: /api/b
    targets:
      - {url: "http://b:9000", weight: 3}
    timeout_secs: 2.5
    algo: ip-hash
    strip_prefix: false
`

func TestConfigFileBringsRoutesAndTunables(t *testing.T) {
	for _, tc := range []struct {
		name, file, content string
	}{
		{name: "YAML", file: "gateway.yaml", content: fileYAML},
		{name: "JSON", file: "gateway.json", content: `{"connection_timeout":"12s","load_balancing_algo":"round-robin","max_body_bytes":2097152,
			"cache_ttl":"1m","cors_allowed_origins":["https://App.Example"],"routes":[
			{"prefix":"/api/a/","target_url":"http://a-1:8080, http://a-2:8080"},
			{"prefix":"/api/b","targets":[{"url":"http://b:9000","weight":3}],"timeout_secs":2.5,"algo":"ip-hash","strip_prefix":false}]}`},
		{name: "JSON in a .yaml file", file: "gateway.yml", content: `{"connection_timeout":"12s","load_balancing_algo":"round-robin","max_body_bytes":"2MiB",
			"cache_ttl":"1m","cors_allowed_origins":["https://App.Example"],"routes":[
			{"prefix":"/api/a/","target_url":"http://a-1:8080, http://a-2:8080"},
			{"prefix":"/api/b","targets":[{"url":"http://b:9000","weight":3}],"timeout_secs":2.5,"algo":"ip-hash","strip_prefix":false}]}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfigFile(t, tc.file, tc.content)
			c, err := load(map[string]string{"CONFIG_FILE": path, "CONNECTION_TIMEOUT": "40s", "CACHE_TTL": "9m"})
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if c.RoutesSource != "CONFIG_FILE" || len(c.Routes) != 2 {
				t.Fatalf("%d routes from %q", len(c.Routes), c.RoutesSource)
			}
			a, b := c.Routes[0], c.Routes[1]
			// The file's tunables are the routes' defaults and win over the variables.
			if a.Prefix != "/api/a" || len(a.Targets) != 2 || a.Timeout != 12*time.Second || a.Algo != "round-robin" ||
				a.MaxBodyBytes != 2<<20 || a.CacheTTL != time.Minute || !a.StripPrefix {
				t.Errorf("route a = %+v", a)
			}
			if b.Prefix != "/api/b" || b.Targets[0].Weight != 3 || b.Timeout != 2500*time.Millisecond || b.Algo != "ip-hash" || b.StripPrefix {
				t.Errorf("route b = %+v", b)
			}
			if c.ConnectionTimeout != 12*time.Second || c.CacheTTL != time.Minute || c.LoadBalancingAlgo != "round-robin" ||
				c.MaxBodyBytes != 2<<20 || !slices.Equal(c.CORSAllowedOrigins, []string{"https://app.example"}) {
				t.Errorf("tunables: %v %v %v %v %v", c.ConnectionTimeout, c.CacheTTL, c.LoadBalancingAlgo, c.MaxBodyBytes, c.CORSAllowedOrigins)
			}
			if want := []string{"cache_ttl", "connection_timeout", "cors_allowed_origins", "load_balancing_algo", "max_body_bytes"}; !slices.Equal(c.FileTunables, want) {
				t.Errorf("FileTunables = %q", c.FileTunables)
			}
		})
	}
}

// TestConfigFileProblems pins that every problem with the file stops the
// boot with lines that start with CONFIG_FILE, all at once.
func TestConfigFileProblems(t *testing.T) {
	tests := []struct {
		name    string
		file    string // name in a temp dir; "" = a path that does not exist
		content string
		env     map[string]string
		want    []string
	}{
		{name: "missing file", want: []string{"CONFIG_FILE: open "}},
		{name: "empty file", file: "g.yaml", content: "\n  \n", want: []string{"CONFIG_FILE: "}},
		{name: "YAML syntax", file: "g.yaml", content: "routes: [\n", want: []string{"CONFIG_FILE: "}},
		{name: "JSON syntax", file: "g.json", content: `{"routes": [}`, want: []string{"CONFIG_FILE: "}},
		{name: "two YAML documents", file: "g.yaml", content: "routes: []\n---\nroutes: []\n", want: []string{"CONFIG_FILE: "}},
		{name: "duplicate YAML key", file: "g.yaml", content: "routes: []\nroutes: []\n", want: []string{"CONFIG_FILE: "}},
		{name: "not a mapping", file: "g.yaml", content: "- a\n- b\n", want: []string{"CONFIG_FILE: invalid value"}},
		{name: "unknown top-level key", file: "g.yaml", content: "routes: []\nretry_max: 3\n", want: []string{`CONFIG_FILE: unknown field "retry_max"`}},
		{name: "no routes member", file: "g.yaml", content: "cache_ttl: 1m\n", want: []string{"CONFIG_FILE.routes: missing"}},
		{name: "bad route members", file: "g.yaml", content: "routes:\n  - {prefix: a, target_url: 'http://x', colour: red}\n  - {prefix: /b}\n",
			want: []string{`CONFIG_FILE.routes[0]: unknown field "colour"`, `CONFIG_FILE.routes[0].prefix: invalid value "a"`, "CONFIG_FILE.routes[1]: no target"}},
		{name: "duplicate prefix", file: "g.yaml", content: "routes:\n  - {prefix: /a, target_url: 'http://x'}\n  - {prefix: /a/, target_url: 'http://y'}\n",
			want: []string{"CONFIG_FILE.routes[1].prefix: duplicate prefix"}},
		{name: "bad tunables", file: "g.yaml", content: "routes: []\nconnection_timeout: 30\nload_balancing_algo: fastest\nmax_body_bytes: -1\ncache_ttl: ''\ncors_allowed_origins: [ftp://x]\n",
			want: []string{"CONFIG_FILE.connection_timeout: invalid value", "CONFIG_FILE.load_balancing_algo: invalid value", "CONFIG_FILE.max_body_bytes: invalid value",
				"CONFIG_FILE.cache_ttl: empty value", "CONFIG_FILE.cors_allowed_origins: invalid value"}},
		{name: "non-string key", file: "g.yaml", content: "routes: []\n1: x\n", want: []string{"CONFIG_FILE: "}},
		{name: "together with SERVICE_ROUTES", file: "g.yaml", content: "routes: []\n",
			env: map[string]string{"SERVICE_ROUTES": `[{"prefix":"/a","target_url":"http://a"}]`}, want: []string{"CONFIG_FILE: set together with SERVICE_ROUTES"}},
		{name: "together with ROUTE_*", file: "g.yaml", content: "routes: []\n",
			env: map[string]string{"ROUTE_A_PREFIX": "/a", "ROUTE_A_URL": "http://a"}, want: []string{"CONFIG_FILE: set together with ROUTE_*"}},
		{name: "production with no routes", file: "g.yaml", content: "routes: []\n",
			env: map[string]string{"GATEWAY_ENV": "production"}, want: []string{"CONFIG_FILE.routes: empty"}},
		{name: "other variables' problems come too", file: "g.yaml", content: "routes: [{prefix: /a}]\n",
			env: map[string]string{"RETRY_MAX": "0"}, want: []string{"RETRY_MAX: invalid value", "CONFIG_FILE.routes[0]: no target"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "absent.yaml")
			if tt.file != "" {
				path = writeConfigFile(t, tt.file, tt.content)
			}
			env := map[string]string{"CONFIG_FILE": path}
			for k, v := range tt.env {
				env[k] = v
			}
			c, err := load(env)
			wantProblems(t, c, err, tt.want...)
		})
	}
}

func TestEmptyRoutesInDevelopmentWarn(t *testing.T) {
	c, err := load(map[string]string{"CONFIG_FILE": writeConfigFile(t, "g.yaml", "routes: []\n")})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 0 || !slices.ContainsFunc(c.Warnings, func(s string) bool { return strings.HasPrefix(s, "CONFIG_FILE.routes: empty") }) {
		t.Errorf("routes %v, warnings %q", c.Routes, c.Warnings)
	}
}

// TestReloadFile pins what a reload takes from the file and what it keeps:
// new routes and tunables; a tunable dropped from the file falls back to
// its variable; an invalid file leaves the caller's Config as it was.
func TestReloadFile(t *testing.T) {
	path := writeConfigFile(t, "g.yaml", "connection_timeout: 5s\nroutes: [{prefix: /a, target_url: 'http://a'}]\n")
	c, err := load(map[string]string{"CONFIG_FILE": path, "CONNECTION_TIMEOUT": "40s", "JWT_SECRET": "kept-from-the-environment"})
	if err != nil {
		t.Fatal(err)
	}
	if c.Routes[0].Timeout != 5*time.Second {
		t.Fatalf("boot timeout %v", c.Routes[0].Timeout)
	}
	if err := os.WriteFile(path, []byte("routes: [{prefix: /b, target_url: 'http://b'}, {prefix: /c, target_url: 'http://c', timeout_secs: 1}]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	next, err := c.ReloadFile()
	if err != nil {
		t.Fatalf("ReloadFile: %v", err)
	}
	if len(next.Routes) != 2 || next.Routes[0].Prefix != "/b" || next.Routes[0].Timeout != 40*time.Second || next.Routes[1].Timeout != time.Second {
		t.Errorf("reloaded routes %+v", next.Routes)
	}
	if next.ConnectionTimeout != 40*time.Second || len(next.FileTunables) != 0 || next.JWTSecret != "kept-from-the-environment" {
		t.Errorf("reloaded: timeout %v, file tunables %q, secret kept %v", next.ConnectionTimeout, next.FileTunables, next.JWTSecret != "")
	}
	if len(c.Routes) != 1 || c.Routes[0].Prefix != "/a" || c.ConnectionTimeout != 5*time.Second {
		t.Errorf("the old Config changed: %+v", c.Routes)
	}

	os.WriteFile(path, []byte("routes: [{prefix: /b, target_url: 'http://b', timeout_secs: -1}]\n"), 0o600)
	bad, err := next.ReloadFile()
	wantProblems(t, bad, err, "CONFIG_FILE.routes[0].timeout_secs: invalid value")

	os.Remove(path)
	bad, err = next.ReloadFile()
	wantProblems(t, bad, err, "CONFIG_FILE: open ")

	noFile, err := load(map[string]string{"SERVICE_ROUTES": `[{"prefix":"/a","target_url":"http://a"}]`})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := noFile.ReloadFile(); err == nil || !strings.HasPrefix(err.Error(), "CONFIG_FILE: not set") {
		t.Errorf("ReloadFile without CONFIG_FILE: %v", err)
	}
}

// TestViewRedactsSecrets pins that GET /admin/config never shows a secret.
func TestViewRedactsSecrets(t *testing.T) {
	const (
		jwt      = "jwt-secret-0123456789-0123456789-abcdef"
		admin    = "admin-token-0123456789-0123456789-abcdef"
		apiKey   = "plain-api-key-0123456789"
		redisPW  = "redis-pass-0123456789"
		dbPW     = "db-pass-0123456789"
		otherDB  = "dsn-pass-0123456789"
		otelPass = "otel-pass-0123456789"
	)
	path := writeConfigFile(t, "g.yaml", "routes: [{prefix: /a, target_url: 'http://a:81', rate_limit_rps: 5}]\n")
	c, err := load(map[string]string{
		"CONFIG_FILE": path, "JWT_SECRET": jwt, "ADMIN_TOKEN": admin, "API_KEYS": apiKey,
		"REDIS_PASSWORD": redisPW, "API_KEYS_DATABASE_URL": "postgres://gw:" + dbPW + "@db:5432/keys?sslmode=disable&password=" + dbPW,
		"OTEL_EXPORTER_OTLP_ENDPOINT": "https://u:" + otelPass + "@otel:4318",
	})
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(c.View())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{jwt, admin, apiKey, digest(apiKey), redisPW, dbPW, otelPass} {
		if strings.Contains(string(out), s) {
			t.Errorf("the view shows %q:\n%s", s, out)
		}
	}
	v := c.View()
	for _, k := range []string{"JWT_SECRET", "ADMIN_TOKEN", "API_KEYS", "REDIS_PASSWORD"} {
		if v.Settings[k] != Redacted {
			t.Errorf("%s = %v, want %q", k, v.Settings[k], Redacted)
		}
	}
	if v.Settings["API_KEY_HASHES"] != "" || v.Settings["JWT_ISSUER"] != "" {
		t.Errorf("unset secrets should read empty: %v %v", v.Settings["API_KEY_HASHES"], v.Settings["JWT_ISSUER"])
	}
	if got := v.Settings["API_KEYS_DATABASE_URL"]; got != "postgres://gw:[redacted]@db:5432/keys?sslmode=disable&password=[redacted]" {
		t.Errorf("database URL shown as %v", got)
	}
	if got := RedactDatabaseURL("host=db user=gw password='" + otherDB + " x' dbname=keys"); got != "host=db user=gw password=[redacted] dbname=keys" {
		t.Errorf("DSN shown as %q", got)
	}
	if got := RedactDatabaseURL("host=db password=" + otherDB); strings.Contains(got, otherDB) {
		t.Errorf("DSN shown as %q", got)
	}
	if v.RoutesSource != "CONFIG_FILE" || v.ConfigFile != path || len(v.Routes) != 1 {
		t.Fatalf("view: %+v", v)
	}
	var r struct {
		Prefix  string `json:"prefix"`
		Targets []struct {
			URL    string `json:"url"`
			Weight int    `json:"weight"`
		} `json:"targets"`
		TimeoutSecs    float64 `json:"timeout_secs"`
		RateLimitBurst int     `json:"rate_limit_burst"`
		Algo           string  `json:"algo"`
	}
	js, err := json.Marshal(v.Routes[0])
	if err == nil {
		err = json.Unmarshal(js, &r)
	}
	if err != nil {
		t.Fatalf("route object %s: %v", js, err)
	}
	if r.Prefix != "/a" || r.Targets[0].URL != "http://a:81" || r.Targets[0].Weight != 1 || r.TimeoutSecs != 30 || r.RateLimitBurst != 5 || r.Algo != "least-conn" {
		t.Errorf("route object %+v", r)
	}
	// Every configuration variable is shown.
	for _, name := range documentedVariables {
		if name == "SERVICE_ROUTES" {
			continue
		}
		if _, ok := v.Settings[name]; !ok {
			t.Errorf("%s missing from the view", name)
		}
	}
}

// TestRefusedFileNeverEchoesAURLPassword pins that a problem line never
// carries the password of a URL with user info, whatever else is wrong
// with it: the lines go to the log, to POST /admin/reload's answer and to
// GET /admin/config's reload.error.
func TestRefusedFileNeverEchoesAURLPassword(t *testing.T) {
	base, err := load(map[string]string{"CONFIG_FILE": writeConfigFile(t, "g.yaml", "routes: [{prefix: /a, target_url: 'http://a'}]\n")})
	if err != nil {
		t.Fatal(err)
	}
	const pw = "S3cret-pw"
	for _, tc := range []struct{ name, doc string }{
		{name: "target with a bad port", doc: "routes: [{prefix: /a, target_url: 'http://user:" + pw + "@host:abc/'}]"},
		{name: "pool member with a bad port", doc: "routes: [{prefix: /a, targets: [{url: 'http://user:" + pw + "@host:abc/'}]}]"},
		{name: "password with a space", doc: "routes: [{prefix: /a, target_url: 'http://user:" + pw + " x@host/'}]"},
		{name: "password with an @", doc: "routes: [{prefix: /a, target_url: 'http://user:" + pw + "@x@host:abc/'}]"},
		{name: "long URL cut in the message", doc: "routes: [{prefix: /a, target_url: 'http://user:" + pw + strings.Repeat("x", 90) + "@host:abc/'}]"},
		{name: "targets of the wrong type", doc: "routes: [{prefix: /a, targets: 'http://user:" + pw + "@host/'}]"},
		{name: "target_url of the wrong type", doc: "routes: [{prefix: /a, target_url: {x: 'http://user:" + pw + "@host/'}}]"},
		{name: "CORS origin with user info", doc: "cors_allowed_origins: ['https://u:" + pw + "@x']\nroutes: []"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := base.WithFile([]byte(tc.doc))
			if err == nil {
				t.Fatal("accepted")
			}
			if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "S3c") {
				t.Errorf("the password is echoed: %v", err)
			}
		})
	}
}

// TestConfigFileThatIsNotARegularFileIsRefusedAtOnce pins that a FIFO (or a
// device) put where CONFIG_FILE was cannot hang a reload: opening a FIFO
// blocks until a writer comes, and a reload holds the reload lock.
func TestConfigFileThatIsNotARegularFileIsRefusedAtOnce(t *testing.T) {
	path := writeConfigFile(t, "g.yaml", "routes: [{prefix: /a, target_url: 'http://a'}]\n")
	c, err := load(map[string]string{"CONFIG_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	os.Remove(path)
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal("mkfifo:", err)
	}
	done := make(chan error, 1)
	go func() { _, err := c.ReloadFile(); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a FIFO: %v", err)
		}
	case <-time.After(2 * time.Second):
		// Unblock the reader so the test ends.
		if f, err := os.OpenFile(path, os.O_WRONLY, 0); err == nil {
			f.Close()
		}
		t.Fatal("reading a FIFO as CONFIG_FILE hangs")
	}
	if _, err := ReadFile("/dev/zero"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("/dev/zero: %v", err)
	}
}

// TestFileSumIsTheContentLoaded pins that a Config says which CONFIG_FILE
// content it was built from, so a file watcher compares the file with the
// content in force rather than with a second read made after Load (which
// would take an edit made in between for one already applied).
func TestFileSumIsTheContentLoaded(t *testing.T) {
	const first = "routes: [{prefix: /a, target_url: 'http://a'}]\n"
	const second = "routes: [{prefix: /b, target_url: 'http://b'}]\n"
	path := writeConfigFile(t, "g.yaml", first)
	c, err := load(map[string]string{"CONFIG_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(second), 0o600); err != nil {
		t.Fatal(err)
	}
	if c.FileSum() != sha256.Sum256([]byte(first)) {
		t.Error("FileSum is not the hash of the content Load read")
	}
	next, err := c.WithFile([]byte(second))
	if err != nil {
		t.Fatal(err)
	}
	if next.FileSum() != sha256.Sum256([]byte(second)) || c.FileSum() != sha256.Sum256([]byte(first)) {
		t.Error("WithFile's FileSum is not the hash of its content, or it changed the original")
	}
	env, err := load(map[string]string{"SERVICE_ROUTES": `[{"prefix":"/a","target_url":"http://a"}]`})
	if err != nil {
		t.Fatal(err)
	}
	if env.FileSum() != [sha256.Size]byte{} {
		t.Error("a Config without CONFIG_FILE has a file sum")
	}
}

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// composeService is the part of `docker-compose config`'s normalised output
// the test reads.
type composeService struct {
	Image       string            `json:"image"`
	Build       *struct{}         `json:"build"`
	Environment map[string]string `json:"environment"`
	Command     any               `json:"command"`
	Ports       []composePort     `json:"ports"`
	Volumes     []any             `json:"volumes"`
	Networks    map[string]*struct {
		IPv4Address string `json:"ipv4_address"`
	} `json:"networks"`
	Healthcheck *struct {
		Test []string `json:"test"`
	} `json:"healthcheck"`
	StopGracePeriod string `json:"stop_grace_period"`
}

// composePort is a published port. docker-compose config writes it as
// {published, target}, or as "HOST_IP:PUBLISHED:TARGET/PROTO" when it is
// bound to one host address.
type composePort struct {
	HostIP    string `json:"host_ip"`
	Published int    `json:"published"`
	Target    int    `json:"target"`
}

func (p *composePort) UnmarshalJSON(b []byte) error {
	var short string
	if err := json.Unmarshal(b, &short); err != nil {
		type long composePort
		return json.Unmarshal(b, (*long)(p))
	}
	short, _, _ = strings.Cut(short, "/")
	parts := strings.Split(short, ":")
	var err error
	switch len(parts) {
	case 3:
		p.HostIP = parts[0]
		parts = parts[1:]
		fallthrough
	case 2:
		if p.Published, err = strconv.Atoi(parts[0]); err == nil {
			p.Target, err = strconv.Atoi(parts[1])
		}
	default:
		err = fmt.Errorf("port %q: want [HOST_IP:]PUBLISHED:TARGET", short)
	}
	return err
}

// runsGateway reports whether a compose service runs the gateway image.
func (s composeService) runsGateway() bool {
	return s.Build != nil || strings.HasPrefix(s.Image, "portcullis/gateway")
}

// bindMounts returns host path → container path of the service's bind mounts.
func (s composeService) bindMounts() map[string]string {
	m := map[string]string{}
	for _, v := range s.Volumes {
		switch v := v.(type) {
		case string:
			parts := strings.Split(v, ":")
			if len(parts) >= 2 && strings.HasPrefix(parts[0], "/") {
				m[parts[0]] = parts[1]
			}
		case map[string]any:
			if v["type"] == "bind" {
				src, _ := v["source"].(string)
				dst, _ := v["target"].(string)
				m[src] = dst
			}
		}
	}
	return m
}

// TestDockerCompose parses docker-compose.yml with Debian's docker-compose
// (`docker-compose config`: the file, its env_file and interpolation) and
// checks the stack's wiring: the gateway's environment is valid for the
// gateway, nginx is the only trusted proxy, the seed's ports are published,
// the ops listener is reachable by Prometheus but neither published beyond
// the host's loopback nor proxied by nginx, and every file mounted, scraped
// or provisioned exists and agrees.
func TestDockerCompose(t *testing.T) {
	root := deployRepoRoot(t)
	cmd := exec.Command(deployLookPath(t, "docker-compose"), "-f", "docker-compose.yml", "config")
	cmd.Dir = root
	// Compose interpolates from the environment: keep the test's out of it.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("docker-compose config: %v\n%s", err, ee.Stderr)
		}
		t.Fatal(err)
	}
	var stack struct {
		Services map[string]composeService `json:"services"`
		Networks map[string]struct {
			IPAM struct {
				Config []struct {
					Subnet string `json:"subnet"`
				} `json:"config"`
			} `json:"ipam"`
		} `json:"networks"`
	}
	if err := yaml.Unmarshal(out, &stack); err != nil {
		t.Fatalf("parsing docker-compose config output: %v", err)
	}
	svc := stack.Services
	for _, name := range []string{"gateway", "nginx", "redis", "prometheus", "grafana", "jaeger"} {
		if _, ok := svc[name]; !ok {
			t.Fatalf("service %s missing (have %v)", name, deploySorted(svc))
		}
	}
	gw := svc["gateway"]
	vars := deployConfigVars(t)

	t.Run("gateway environment", func(t *testing.T) {
		for name, s := range svc {
			if !s.runsGateway() {
				continue
			}
			for _, k := range deploySorted(s.Environment) {
				if !deployKnownVar(vars, k) {
					t.Errorf("service %s: %s is not a configuration variable of the gateway", name, k)
				}
			}
		}
		// The resolved environment (env_file + overrides) is a valid config.
		env := []string{"PATH=" + os.Getenv("PATH")}
		for k, v := range gw.Environment {
			env = append(env, k+"="+v)
		}
		v := exec.Command(deployGatewayBin(t), "validate")
		v.Dir, v.Env = t.TempDir(), env
		if out, err := v.CombinedOutput(); err != nil {
			t.Errorf("gateway validate with the compose environment: %v\n%s", err, out)
		}
		if gw.Healthcheck == nil || !slices.Equal(gw.Healthcheck.Test, []string{"CMD", "/gateway", "healthcheck"}) {
			t.Errorf("gateway healthcheck %+v, want the binary's own", gw.Healthcheck)
		}
	})

	t.Run("docker stop waits for the drain", func(t *testing.T) {
		// docker stop sends SIGTERM, then SIGKILL after stop_grace_period
		// (10s when unset): it must outlast SHUTDOWN_DELAY + SHUTDOWN_TIMEOUT.
		var need time.Duration
		for _, k := range []string{"SHUTDOWN_DELAY", "SHUTDOWN_TIMEOUT"} {
			d, err := time.ParseDuration(gw.Environment[k])
			if err != nil {
				t.Fatalf("%s %q: %v", k, gw.Environment[k], err)
			}
			need += d
		}
		grace := 10 * time.Second
		if gw.StopGracePeriod != "" {
			var err error
			if grace, err = time.ParseDuration(gw.StopGracePeriod); err != nil {
				t.Fatalf("stop_grace_period %q: %v", gw.StopGracePeriod, err)
			}
		}
		if grace <= need {
			t.Errorf("gateway stop_grace_period %v, want more than SHUTDOWN_DELAY+SHUTDOWN_TIMEOUT = %v", grace, need)
		}
	})

	t.Run("nginx is the one trusted proxy", func(t *testing.T) {
		// The gateway trusts nobody by default: without this it would see
		// every request as coming from nginx.
		var nginxIP, nginxNet string
		for name, n := range svc["nginx"].Networks {
			if n != nil && n.IPv4Address != "" {
				nginxIP, nginxNet = n.IPv4Address, name
			}
		}
		if nginxIP == "" || gw.Environment["TRUSTED_PROXIES"] != nginxIP+"/32" {
			t.Errorf("TRUSTED_PROXIES %q, nginx at %q: want exactly nginx's address", gw.Environment["TRUSTED_PROXIES"], nginxIP)
		}
		// A fixed address needs a pinned subnet that holds it, or Docker
		// refuses it (or picks another subnet on another machine).
		ip, err := netip.ParseAddr(nginxIP)
		if err != nil {
			t.Fatalf("nginx ipv4_address %q: %v", nginxIP, err)
		}
		var subnets []string
		inside := false
		for _, c := range stack.Networks[nginxNet].IPAM.Config {
			subnets = append(subnets, c.Subnet)
			if pfx, err := netip.ParsePrefix(c.Subnet); err == nil && pfx.Contains(ip) {
				inside = true
			}
		}
		if !inside {
			t.Errorf("nginx's %s is not in network %s's pinned subnet %v", nginxIP, nginxNet, subnets)
		}
		if _, ok := svc["gateway"].Networks[nginxNet]; !ok {
			t.Errorf("the gateway is not on nginx's network %s", nginxNet)
		}
	})

	t.Run("nginx proxies the public port only", func(t *testing.T) {
		servers, passes := nginxUpstreams(deployRead(t, "deploy/nginx/nginx.conf"))
		if len(servers) == 0 || len(passes) == 0 {
			t.Fatalf("nginx.conf: upstream servers %v, proxy_pass %v", servers, passes)
		}
		for _, srv := range servers {
			if srv != "gateway:"+gwPort(t, gw) {
				t.Errorf("nginx.conf upstream server %s, want only the gateway's public port gateway:%s", srv, gwPort(t, gw))
			}
		}
		// proxy_pass names an upstream block above, or the public port.
		for _, pp := range passes {
			_, host, _ := strings.Cut(pp, "://")
			host, _, _ = strings.Cut(host, "/")
			if strings.Contains(host, ":") && host != "gateway:"+gwPort(t, gw) {
				t.Errorf("nginx.conf proxy_pass %s: only the gateway's public port", pp)
			}
		}
	})

	t.Run("ops listener: Prometheus on the stack network, the host's loopback, nobody else", func(t *testing.T) {
		host, opsPort, err := net.SplitHostPort(gw.Environment["OPS_ADDR"])
		if err != nil {
			t.Fatalf("OPS_ADDR %q: %v (the image's loopback default would leave Prometheus nothing to scrape)", gw.Environment["OPS_ADDR"], err)
		}
		// Every interface of the container: its loopback (the image's
		// default) is out of Prometheus's reach.
		if host != "" && host != "0.0.0.0" && host != "::" {
			t.Errorf("OPS_ADDR %q: want every interface of the container (:%s), Prometheus scrapes it over the stack network", gw.Environment["OPS_ADDR"], opsPort)
		}
		if opsPort == gwPort(t, gw) {
			t.Errorf("OPS_ADDR and GATEWAY_PORT share port %s", opsPort)
		}
		prom := deployRead(t, "deploy/prometheus/prometheus.yml")
		if !strings.Contains(prom, "'gateway:"+opsPort+"'") {
			t.Errorf("prometheus.yml does not scrape the ops port gateway:%s", opsPort)
		}
		if strings.Contains(prom, "gateway:"+gwPort(t, gw)) {
			t.Errorf("prometheus.yml scrapes the public port gateway:%s, which answers /metrics with a 404", gwPort(t, gw))
		}
		if _, ok := svc["prometheus"].Networks["stack"]; !ok {
			t.Error("prometheus is not on the gateway's network")
		}
		n, _ := strconv.Atoi(opsPort)
		for name, s := range svc {
			for _, p := range s.Ports {
				if p.Target == n && (name != "gateway" || p.HostIP != "127.0.0.1") {
					t.Errorf("service %s publishes %d on host address %q: the ops port is for this host's loopback only", name, p.Target, p.HostIP)
				}
			}
		}
	})

	t.Run("seed ports", func(t *testing.T) {
		want := map[string][]int{"gateway": {9777}, "nginx": {80, 443}, "prometheus": {9090}, "grafana": {3000}, "jaeger": {16686}}
		for name, ports := range want {
			var got []int
			for _, p := range svc[name].Ports {
				got = append(got, p.Published)
			}
			for _, p := range ports {
				if !slices.Contains(got, p) {
					t.Errorf("%s publishes %v, want %d", name, got, p)
				}
			}
		}
		// Only the edge is for other machines: the gateway's ops port
		// serves the admin API (with the public development ADMIN_TOKEN),
		// Grafana has admin/admin.
		for name, s := range svc {
			for _, p := range s.Ports {
				if name != "nginx" && p.HostIP != "127.0.0.1" {
					t.Errorf("%s publishes %d on every host address, want 127.0.0.1", name, p.Published)
				}
			}
		}
	})

	t.Run("mounted files exist and agree", func(t *testing.T) {
		for name, s := range svc {
			for host := range s.bindMounts() {
				if _, err := os.Stat(host); err != nil {
					t.Errorf("service %s mounts %s: %v", name, host, err)
				}
			}
		}
		mounts := svc["prometheus"].bindMounts()
		if mounts[filepath.Join(root, "deploy/prometheus")] != "/etc/prometheus" {
			t.Errorf("prometheus mounts %v", mounts)
		}
		// Grafana: provisioning where Grafana reads it, dashboards where the
		// provider looks.
		var prov struct {
			Providers []struct {
				Options struct {
					Path string `json:"path"`
				} `json:"options"`
			} `json:"providers"`
		}
		if err := yaml.Unmarshal([]byte(deployRead(t, "deploy/grafana/provisioning/dashboards/portcullis.yml")), &prov); err != nil || len(prov.Providers) != 1 {
			t.Fatalf("dashboard provider: %v %+v", err, prov)
		}
		g := svc["grafana"].bindMounts()
		if g[filepath.Join(root, "deploy/grafana/provisioning")] != "/etc/grafana/provisioning" ||
			g[filepath.Join(root, "deploy/grafana/dashboards")] != prov.Providers[0].Options.Path {
			t.Errorf("grafana mounts %v, provider path %q", g, prov.Providers[0].Options.Path)
		}
		if !strings.Contains(deployRead(t, "deploy/grafana/provisioning/datasources/prometheus.yml"), "url: http://prometheus:9090") {
			t.Error("the Grafana datasource is not the prometheus service")
		}
	})

	t.Run("redis password and jaeger OTLP", func(t *testing.T) {
		r := svc["redis"]
		pw := gw.Environment["REDIS_PASSWORD"]
		if pw == "" || r.Environment["REDIS_PASSWORD"] != pw {
			t.Errorf("gateway REDIS_PASSWORD %q, redis has %q", pw, r.Environment["REDIS_PASSWORD"])
		}
		// Run the service's own command, as the container's shell would
		// (config keeps "$$" escaped; only the port and address move), and
		// check that redis wants the password while `ps` does not show it.
		var argv []string
		if err := json.Unmarshal(mustJSON(t, r.Command), &argv); err != nil || len(argv) < 3 || argv[0] != "sh" {
			t.Fatalf("redis command %v: want [sh -c script]", r.Command)
		}
		port := deployFreePort(t)
		script := strings.ReplaceAll(argv[2], "$$", "$")
		if strings.Count(script, "exec redis-server -") != 1 {
			t.Fatalf("redis script %q: want one `exec redis-server -` (config on stdin)", script)
		}
		argv[2] = strings.Replace(script, "exec redis-server -", fmt.Sprintf("exec redis-server - --port %d --bind 127.0.0.1", port), 1)
		c, pid := startRedisCommand(t, argv, []string{"REDIS_PASSWORD=" + pw}, port)
		checkRedisPassword(t, c, pid, pw)
		if h, _, _ := net.SplitHostPort(gw.Environment["REDIS_ADDR"]); svc[h].Image == "" {
			t.Errorf("REDIS_ADDR %q is not a service", gw.Environment["REDIS_ADDR"])
		}
		if svc["jaeger"].Environment["COLLECTOR_OTLP_ENABLED"] != "true" ||
			!strings.HasPrefix(gw.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"], "http://jaeger:4318") {
			t.Errorf("jaeger OTLP %q, gateway endpoint %q", svc["jaeger"].Environment["COLLECTOR_OTLP_ENABLED"], gw.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"])
		}
	})
}

// nginxUpstreams returns the `server` addresses of nginx.conf's upstream
// blocks and every proxy_pass target.
func nginxUpstreams(conf string) (servers, passes []string) {
	depth, upstreamDepth := 0, -1
	for _, line := range strings.Split(conf, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(strings.TrimSuffix(strings.TrimSpace(line), ";"))
		switch {
		case len(f) >= 2 && f[0] == "upstream":
			upstreamDepth = depth
		case len(f) >= 2 && f[0] == "server" && upstreamDepth >= 0:
			servers = append(servers, f[1])
		case len(f) >= 2 && f[0] == "proxy_pass":
			passes = append(passes, f[1])
		}
		depth += strings.Count(line, "{") - strings.Count(line, "}")
		if upstreamDepth >= 0 && depth <= upstreamDepth {
			upstreamDepth = -1
		}
	}
	return servers, passes
}

func gwPort(t *testing.T, gw composeService) string {
	t.Helper()
	_, p, err := net.SplitHostPort(gw.Environment["GATEWAY_PORT"])
	if err != nil {
		t.Fatalf("GATEWAY_PORT %q: %v", gw.Environment["GATEWAY_PORT"], err)
	}
	return p
}

// TestEnvFiles checks .env.development and .env.production the way the
// gateway reads them (as .env in its working directory): every name is a
// configuration variable, development is valid, and production is refused
// until its placeholders are replaced.
func TestEnvFiles(t *testing.T) {
	vars := deployConfigVars(t)
	validate := func(t *testing.T, file string, extra ...string) (int, string) {
		t.Helper()
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, ".env"), []byte(deployRead(t, file)), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(deployGatewayBin(t), "validate")
		cmd.Dir, cmd.Env = dir, append([]string{"PATH=" + os.Getenv("PATH")}, extra...)
		return exitCode(t, cmd)
	}
	files := map[string]map[string]string{}
	for _, f := range []string{".env.development", ".env.production"} {
		files[f] = map[string]string{}
		for _, line := range strings.Split(deployRead(t, f), "\n") {
			k, v, ok := strings.Cut(line, "=")
			if !ok || strings.HasPrefix(strings.TrimSpace(line), "#") {
				continue
			}
			files[f][k] = v
			if !deployKnownVar(vars, k) {
				t.Errorf("%s: %s is not a configuration variable", f, k)
			}
			// Docker Compose v1 reads env files literally: no quotes, no
			// trailing comments, or the value would carry them.
			if strings.HasPrefix(v, `"`) || strings.HasPrefix(v, "'") || strings.Contains(v, " #") {
				t.Errorf("%s: %s: quoted value or trailing comment", f, k)
			}
		}
	}
	// Both say where the ops endpoints and the trusted proxy are rather
	// than lean on defaults: the ops listener on this host's loopback
	// (nginx on the same host never reaches it), the nginx edge that
	// connects from loopback trusted.
	for f, env := range files {
		host, _, err := net.SplitHostPort(env["OPS_ADDR"])
		if ip, perr := netip.ParseAddr(host); err != nil || perr != nil || !ip.IsLoopback() {
			t.Errorf("%s: OPS_ADDR %q, want an explicit loopback address", f, env["OPS_ADDR"])
		}
		tp := env["TRUSTED_PROXIES"]
		if !slices.Contains(strings.Split(tp, ","), "127.0.0.1/32") {
			t.Errorf("%s: TRUSTED_PROXIES %q, want the loopback address nginx connects from", f, tp)
		}
	}
	if host, _, _ := net.SplitHostPort(files[".env.production"]["GATEWAY_PORT"]); host != "127.0.0.1" {
		t.Errorf(".env.production: GATEWAY_PORT %q, want loopback behind nginx on the same host", files[".env.production"]["GATEWAY_PORT"])
	}
	if code, out := validate(t, ".env.development"); code != 0 {
		t.Errorf(".env.development: exit %d\n%s", code, out)
	}
	code, out := validate(t, ".env.production")
	if code != 2 || !strings.Contains(out, "config: JWT_SECRET: refused in production") {
		t.Errorf(".env.production as shipped: exit %d, want 2 naming JWT_SECRET\n%s", code, out)
	}
	// Filled in, the same file is valid: the placeholder was the only problem.
	if code, out := validate(t, ".env.production", "JWT_SECRET=0123456789abcdef0123456789abcdef-filled-in"); code != 0 {
		t.Errorf(".env.production with a real JWT_SECRET: exit %d\n%s", code, out)
	}
	// The ops endpoints cannot be put back on the public port in production.
	code, out = validate(t, ".env.production", "JWT_SECRET=0123456789abcdef0123456789abcdef-filled-in", "OPS_ADDR=public")
	if code != 2 || !strings.Contains(out, "OPS_ADDR: refused in production") {
		t.Errorf(".env.production with OPS_ADDR=public: exit %d, want 2 naming OPS_ADDR\n%s", code, out)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

package e2e

// The deployment variants where the gateway terminates TLS itself:
// deploy/compose.tls.yaml (an override of docker-compose.yml) here, the
// deploy/k8s-tls overlay in deploy_k8s_tls_test.go, and what both rely on:
// the real gateway serving a mounted certificate directory, redirecting to
// the port it listens on, and its non-root user binding 443 and 80.

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"sigs.k8s.io/yaml"
)

// tlsTestHost is the name the test certificates are for, and the Host the
// test's clients send.
const tlsTestHost = "api.example.test"

// tlsPair is a self-signed certificate for tlsTestHost and its key, in PEM.
type tlsPair struct {
	cert, key []byte
	leaf      *x509.Certificate
}

func newTLSPair(t testing.TB, serial int64) tlsPair {
	t.Helper()
	return selfSigned(t, tlsTestHost, serial, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
}

// selfSigned is a self-signed certificate for host, valid from notBefore
// to notAfter, and its key.
func selfSigned(t testing.TB, host string, serial int64, notBefore, notAfter time.Time) tlsPair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: host},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		DNSNames:     []string{host},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return tlsPair{
		cert: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		key:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}),
		leaf: leaf,
	}
}

// pool trusts p's certificate only.
func (p tlsPair) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.leaf)
	return pool
}

// writeTLSPair writes p into dir as NAME.crt + NAME.key, each by a rename
// over the old file, as docs/tls.md advises for a rotation.
func writeTLSPair(t testing.TB, dir, name string, p tlsPair) {
	t.Helper()
	for ext, b := range map[string][]byte{".crt": p.cert, ".key": p.key} {
		tmp := filepath.Join(dir, ".tmp-"+name+ext)
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name+ext)); err != nil {
			t.Fatal(err)
		}
	}
}

// tlsServed is the certificate the gateway at addr serves for tlsTestHost
// (not verified: the caller compares it).
func tlsServed(t testing.TB, addr string) *x509.Certificate {
	t.Helper()
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: tlsTestHost, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("TLS handshake with %s: %v", addr, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0]
}

// tlsWaitServed waits until the gateway at addr serves want, as it must
// after a rotation (docs/tls.md: about 100 ms).
func tlsWaitServed(t testing.TB, addr string, want tlsPair) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := tlsServed(t, addr)
		if got.Equal(want.leaf) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still serves serial %v, want the rotated %v", addr, got.SerialNumber, want.leaf.SerialNumber)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsListening returns the attributes of the gateway's "gateway listening"
// line: addr, http3_addr, redirect_addr, ops_addr, tls.
func tlsListening(t testing.TB, g *deployGateway) map[string]any {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(g.out.String()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "gateway listening" {
			return m
		}
	}
	t.Fatal("no \"gateway listening\" line")
	return nil
}

// portOf is the port of a host:port address.
func portOf(t testing.TB, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("address %q: %v", addr, err)
	}
	return n
}

// tlsGatewayEnv rewrites a deployment's gateway environment for a run on
// this machine: every listener on a free loopback port (the deployment's
// numbers are checked against its published ports separately), the
// certificates from certsDir, and the addresses of the deployment's own
// network (Redis, the trace collector) gone or unreachable.
func tlsGatewayEnv(env map[string]string, certsDir string, extra ...string) []string {
	var out []string
	for k, v := range env {
		switch k {
		case "GATEWAY_PORT", "OPS_ADDR", "HTTP_REDIRECT_ADDR", "TLS_CERTS_DIR", "REDIS_ADDR", "OTEL_EXPORTER_OTLP_ENDPOINT":
			continue
		}
		out = append(out, k+"="+v)
	}
	out = append(out, "GATEWAY_PORT=127.0.0.1:0", "OPS_ADDR=127.0.0.1:0", "TLS_CERTS_DIR="+certsDir,
		"REDIS_ADDR=127.0.0.1:1") // no Redis: the gateway falls back to local state
	if env["HTTP_REDIRECT_ADDR"] != "" {
		out = append(out, "HTTP_REDIRECT_ADDR=127.0.0.1:0")
	}
	return append(out, extra...)
}

// tlsCheckGateway checks what a client of a TLS-terminating gateway gets:
// HTTPS with want's certificate, verified for tlsTestHost; HSTS; HTTP/3 on
// the TCP port's number, advertised as such; the redirect listener's 308 to
// https on the port the gateway listens on; the ops endpoints on the ops
// listener only. It returns the listening line's attributes.
func tlsCheckGateway(t *testing.T, g *deployGateway, want tlsPair, http3 bool) map[string]any {
	t.Helper()
	l := tlsListening(t, g)
	if l["tls"] != true {
		t.Fatalf("gateway listening %v: want tls true", l)
	}
	tcpPort := portOf(t, g.Addr)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: want.pool(), ServerName: tlsTestHost},
	}}
	resp, err := c.Get("https://" + g.Addr + "/health")
	if err != nil {
		t.Fatalf("HTTPS with the mounted certificate, verified for %s: %v", tlsTestHost, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.TLS == nil || !resp.TLS.PeerCertificates[0].Equal(want.leaf) {
		t.Errorf("GET https://%s/health: %d, want 200 with the mounted certificate", g.Addr, resp.StatusCode)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(h, "max-age=") {
		t.Errorf("HTTPS answer without HSTS (%q)", h)
	}

	// HTTP/3: UDP on the TCP port's number, and Alt-Svc names that number,
	// so the published UDP port must be the container's.
	altSvc := resp.Header.Get("Alt-Svc")
	if http3 {
		h3, _ := l["http3_addr"].(string)
		if h3 == "" || portOf(t, h3) != tcpPort {
			t.Errorf("http3_addr %q, want UDP on the TCP port %d", h3, tcpPort)
		} else if pc, err := net.ListenPacket("udp", h3); err == nil {
			pc.Close()
			t.Errorf("UDP %s is free: nothing serves HTTP/3 there", h3)
		}
		if want := fmt.Sprintf(`h3=":%d"; ma=86400`, tcpPort); altSvc != want {
			t.Errorf("Alt-Svc %q, want %q", altSvc, want)
		}
	} else if altSvc != "" {
		t.Errorf("Alt-Svc %q without HTTP3", altSvc)
	}

	// The redirect names the port the gateway listens on (none for 443).
	if ra, _ := l["redirect_addr"].(string); ra != "" {
		nc := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		req, err := http.NewRequest(http.MethodPost, "http://"+ra+"/api/echo/x?y=1", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tlsTestHost
		resp, err := nc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		wantLoc := fmt.Sprintf("https://%s:%d/api/echo/x?y=1", tlsTestHost, tcpPort)
		if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != wantLoc {
			t.Errorf("POST http://%s/api/echo/x?y=1: %d to %q, want 308 to %q", ra, resp.StatusCode, resp.Header.Get("Location"), wantLoc)
		}
	}

	// The ops endpoints stay off the public listener, TLS or not.
	for _, p := range deployOpsPaths {
		resp, err := c.Get("https://" + g.Addr + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("public listener (HTTPS) %s: %d, want 404 (an ops endpoint)", p, resp.StatusCode)
		}
	}
	if code, _ := deployGet(t, "http://"+g.OpsAddr+"/metrics"); code != http.StatusOK {
		t.Errorf("ops listener /metrics: %d", code)
	}
	return l
}

// tlsDocumentedVars returns the variables docs/configuration.md documents
// (each in a table row of its own, `NAME` in the first column).
func tlsDocumentedVars(t testing.TB) map[string]bool {
	t.Helper()
	vars := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([A-Z][A-Z0-9_]*)`").FindAllStringSubmatch(deployRead(t, "docs/configuration.md"), -1) {
		vars[m[1]] = true
	}
	if !vars["GATEWAY_PORT"] || !vars["TLS_CERTS_DIR"] {
		t.Fatalf("could not read the variables of docs/configuration.md (found %d)", len(vars))
	}
	return vars
}

// tlsComposePort is a published port with its protocol, as
// `docker-compose config` writes it: {published, target, protocol} or
// "HOST_IP:PUBLISHED:TARGET/PROTO".
type tlsComposePort struct {
	HostIP    string `json:"host_ip"`
	Published int    `json:"published"`
	Target    int    `json:"target"`
	Protocol  string `json:"protocol"`
}

func (p *tlsComposePort) UnmarshalJSON(b []byte) error {
	var cp composePort
	if err := json.Unmarshal(b, &cp); err != nil {
		return err
	}
	p.HostIP, p.Published, p.Target, p.Protocol = cp.HostIP, cp.Published, cp.Target, "tcp"
	var short string
	if json.Unmarshal(b, &short) == nil {
		if _, proto, ok := strings.Cut(short, "/"); ok {
			p.Protocol = proto
		}
		return nil
	}
	var long struct {
		Protocol string `json:"protocol"`
	}
	if err := json.Unmarshal(b, &long); err != nil {
		return err
	}
	if long.Protocol != "" {
		p.Protocol = long.Protocol
	}
	return nil
}

// tlsComposeService is what the TLS test reads of a service in
// `docker-compose config`'s output.
type tlsComposeService struct {
	Image       string            `json:"image"`
	Build       *struct{}         `json:"build"`
	Environment map[string]string `json:"environment"`
	Ports       []tlsComposePort  `json:"ports"`
	Volumes     []any             `json:"volumes"`
	Sysctls     map[string]string `json:"sysctls"`
	Profiles    []string          `json:"profiles"`
}

// composeConfig runs `docker-compose -f ... config` in the repository with
// only env (plus PATH and HOME) to interpolate from.
func composeConfig(t *testing.T, env []string, files ...string) ([]byte, error) {
	t.Helper()
	args := []string{}
	for _, f := range files {
		args = append(args, "-f", f)
	}
	cmd := exec.Command(deployLookPath(t, "docker-compose"), append(args, "config")...)
	cmd.Dir = deployRepoRoot(t)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}, env...)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return out, fmt.Errorf("%v: %s", err, ee.Stderr)
	}
	return out, err
}

// imageUser is the Dockerfile's USER, the user every container of the
// image runs as.
func imageUser(t testing.TB) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindStringSubmatch(deployRead(t, "Dockerfile"))
	if m == nil {
		t.Fatal("Dockerfile has no USER")
	}
	return m[1]
}

// TestDockerComposeTLS checks deploy/compose.tls.yaml merged over
// docker-compose.yml by docker-compose itself: the gateway publishes 443
// (TCP and UDP) and 80 on the ports it listens on, its non-root user may
// bind them, the certificate directory is a read-only bind mount, nginx no
// longer takes the host's ports, and the resolved environment, run by the
// real gateway against a directory laid out like the mount, serves HTTPS,
// HTTP/3's port, the redirect and a rotated certificate.
func TestDockerComposeTLS(t *testing.T) {
	const override = "deploy/compose.tls.yaml"
	hostCerts := t.TempDir()
	if _, err := composeConfig(t, nil, "docker-compose.yml", override); err == nil || !strings.Contains(err.Error(), "TLS_CERTS_HOST_DIR") {
		t.Errorf("config without TLS_CERTS_HOST_DIR: %v, want a refusal naming it", err)
	}
	out, err := composeConfig(t, []string{"TLS_CERTS_HOST_DIR=" + hostCerts}, "docker-compose.yml", override)
	if err != nil {
		t.Fatalf("docker-compose config: %v", err)
	}
	var stack struct {
		Services map[string]tlsComposeService `json:"services"`
	}
	if err := yaml.Unmarshal(out, &stack); err != nil {
		t.Fatalf("parsing docker-compose config output: %v", err)
	}
	svc := stack.Services
	gw, ok := svc["gateway"]
	if !ok || (gw.Build == nil && !strings.HasPrefix(gw.Image, "portcullis/gateway")) {
		t.Fatalf("no gateway service running the gateway image (have %v)", deploySorted(svc))
	}
	env := gw.Environment
	publicPort, redirectPort := portOf(t, env["GATEWAY_PORT"]), portOf(t, env["HTTP_REDIRECT_ADDR"])

	t.Run("environment", func(t *testing.T) {
		vars, documented := deployConfigVars(t), tlsDocumentedVars(t)
		for _, k := range deploySorted(env) {
			if !deployKnownVar(vars, k) {
				t.Errorf("%s is not a configuration variable of the gateway", k)
			}
		}
		// What the override sets, and the commented ACME alternative,
		// is in docs/configuration.md.
		var ov struct {
			Services map[string]struct {
				Environment map[string]string `json:"environment"`
			} `json:"services"`
		}
		raw := deployRead(t, override)
		if err := yaml.Unmarshal([]byte(raw), &ov); err != nil {
			t.Fatal(err)
		}
		names := deploySorted(ov.Services["gateway"].Environment)
		acme := regexp.MustCompile(`(?m)^\s*#\s*([A-Z][A-Z0-9_]*):\s`).FindAllStringSubmatch(raw, -1)
		for _, m := range acme {
			names = append(names, m[1])
		}
		if len(acme) == 0 || !slices.Contains(names, "ACME_DOMAINS") || !slices.Contains(names, "ACME_STORAGE") {
			t.Errorf("no commented ACME_DOMAINS/ACME_STORAGE alternative in %s", override)
		}
		for _, k := range names {
			if !documented[k] || !deployKnownVar(vars, k) {
				t.Errorf("%s: %s is not a variable documented in docs/configuration.md", override, k)
			}
		}
		if env["TLS_CERTS_DIR"] == "" || env["HTTP3"] != "true" {
			t.Errorf("TLS_CERTS_DIR %q HTTP3 %q: want the certificate directory and HTTP/3", env["TLS_CERTS_DIR"], env["HTTP3"])
		}
		// Clients connect straight to the gateway: a trusted address would
		// be one more container that may choose its client address.
		if tp := env["TRUSTED_PROXIES"]; tp != "" && !strings.EqualFold(tp, "none") {
			t.Errorf("TRUSTED_PROXIES %q with no proxy in front, want none", tp)
		}
	})

	t.Run("published ports are the ports the gateway listens on", func(t *testing.T) {
		// The redirect's Location and Alt-Svc name GATEWAY_PORT's number:
		// a host port other than the container's would send clients to a
		// port nothing publishes.
		want := []tlsComposePort{
			{Published: 443, Target: publicPort, Protocol: "tcp"},
			{Published: 443, Target: publicPort, Protocol: "udp"},
			{Published: 80, Target: redirectPort, Protocol: "tcp"},
		}
		for _, w := range want {
			if !slices.Contains(gw.Ports, w) {
				t.Errorf("gateway ports %+v: want %d/%s published on every host address to container port %d", gw.Ports, w.Published, w.Protocol, w.Target)
			}
			if w.Published != w.Target {
				t.Errorf("host port %d/%s → container port %d: the gateway would redirect and advertise %d", w.Published, w.Protocol, w.Target, w.Target)
			}
		}
		// The ops port stays on the host's loopback.
		ops := portOf(t, env["OPS_ADDR"])
		for _, p := range gw.Ports {
			if p.Target == ops && p.HostIP != "127.0.0.1" {
				t.Errorf("ops port %d published on %q, want 127.0.0.1 only", ops, p.HostIP)
			}
		}
		// Nothing else that starts by default takes the host's 80 or 443.
		for name, s := range svc {
			if name == "gateway" || len(s.Profiles) > 0 {
				continue
			}
			for _, p := range s.Ports {
				if p.Published == 80 || p.Published == 443 {
					t.Errorf("service %s (no profile) also publishes %d", name, p.Published)
				}
			}
		}
		if len(svc["nginx"].Profiles) == 0 {
			t.Error("nginx starts by default and takes the host's 80 and 443")
		}
	})

	t.Run("the image's user may bind them", func(t *testing.T) {
		if u := imageUser(t); u == "0" || strings.HasPrefix(u, "0:") || u == "root" {
			t.Fatalf("image USER %s: the sysctl is for a non-root user", u)
		}
		v, err := strconv.Atoi(gw.Sysctls["net.ipv4.ip_unprivileged_port_start"])
		if err != nil || v > min(publicPort, redirectPort) {
			t.Errorf("sysctl net.ipv4.ip_unprivileged_port_start %q: want at most %d so uid %s binds the ports (%v)",
				gw.Sysctls["net.ipv4.ip_unprivileged_port_start"], min(publicPort, redirectPort), imageUser(t), err)
		}
	})

	t.Run("the certificate directory is a read-only bind mount", func(t *testing.T) {
		found := false
		for _, v := range gw.Volumes {
			var src, dst string
			ro := false
			switch v := v.(type) {
			case string: // SOURCE:TARGET[:MODE]
				parts := strings.Split(v, ":")
				if len(parts) < 2 {
					continue
				}
				src, dst = parts[0], parts[1]
				ro = len(parts) == 3 && slices.Contains(strings.Split(parts[2], ","), "ro")
			case map[string]any:
				src, _ = v["source"].(string)
				dst, _ = v["target"].(string)
				ro = v["type"] == "bind" && v["read_only"] == true
			}
			if dst != env["TLS_CERTS_DIR"] {
				continue
			}
			found = true
			if src != hostCerts || !ro {
				t.Errorf("TLS_CERTS_DIR %s mounted from %q (read-only %v), want TLS_CERTS_HOST_DIR %s read-only", dst, src, ro, hostCerts)
			}
		}
		if !found {
			t.Errorf("gateway volumes %v: nothing mounted at TLS_CERTS_DIR %s", gw.Volumes, env["TLS_CERTS_DIR"])
		}
	})

	t.Run("the gateway serves the mounted directory", func(t *testing.T) {
		first, second := newTLSPair(t, 1), newTLSPair(t, 2)
		writeTLSPair(t, hostCerts, "gateway", first)
		g := deployStartGateway(t, tlsGatewayEnv(env, hostCerts)...)
		tlsCheckGateway(t, g, first, env["HTTP3"] == "true")
		// The image's HEALTHCHECK still answers (it probes OPS_ADDR).
		hc := exec.Command(deployGatewayBin(t), "healthcheck")
		hc.Dir, hc.Env = t.TempDir(), []string{"PATH=" + os.Getenv("PATH"), "OPS_ADDR=" + g.OpsAddr}
		if code, out := exitCode(t, hc); code != 0 {
			t.Errorf("gateway healthcheck: exit %d\n%s", code, out)
		}
		// A new pair renamed over the old one on the host is served
		// without a restart.
		writeTLSPair(t, hostCerts, "gateway", second)
		tlsWaitServed(t, g.Addr, second)
	})
}

// TestTLSPortsNonRoot runs the gateway without the capability to bind
// privileged ports, in a network namespace of its own, with each
// deployment's GATEWAY_PORT and HTTP_REDIRECT_ADDR (443 and 80) and its
// net.ipv4.ip_unprivileged_port_start, as a container or pod gets it: it
// binds them. With the kernel's default (1024) it cannot, which is why the
// deployments set it. As root it runs as the image's user (uid 65532);
// otherwise as the caller, root only inside a user namespace of its own,
// with every capability dropped.
func TestTLSPortsNonRoot(t *testing.T) {
	asRoot := os.Geteuid() == 0
	// inNamespace is the command prefix that gives the gateway a network
	// namespace (and, without root, the user namespace that owns it).
	inNamespace := []string{"--net"}
	if !asRoot {
		inNamespace = []string{"--user", "--map-root-user", "--net"}
	}
	unshare, setpriv := deployLookPath(t, "unshare"), deployLookPath(t, "setpriv")
	if out, err := exec.Command(unshare, append(inNamespace, "true")...).CombinedOutput(); err != nil {
		t.Fatalf("this kernel does not let %s make a network namespace (unshare %v): %v %s", map[bool]string{true: "root", false: "an unprivileged user"}[asRoot], inNamespace, err, out)
	}
	uid, _, _ := strings.Cut(imageUser(t), ":")
	if _, err := strconv.Atoi(uid); err != nil {
		t.Fatalf("image USER %q: want a numeric uid", imageUser(t))
	}

	// The binary and the certificates where uid 65532 can read them.
	dir, err := os.MkdirTemp("", "portcullis-nonroot-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gateway")
	b, err := os.ReadFile(deployGatewayBin(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	certs := filepath.Join(dir, "certs")
	if err := os.Mkdir(certs, 0o755); err != nil {
		t.Fatal(err)
	}
	writeTLSPair(t, certs, "gateway", newTLSPair(t, 1))
	n, _ := strconv.Atoi(uid)
	for _, f := range []string{"gateway.crt", "gateway.key"} {
		// As docs/deployment.md says: the key belongs to the image's user.
		if !asRoot {
			break // the caller's files, read as the caller
		}
		if err := os.Chown(filepath.Join(certs, f), n, n); err != nil {
			t.Fatal(err)
		}
	}
	// Who the gateway runs as: the image's user, or (without root) the
	// caller with no capabilities left.
	drop := []string{"--inh-caps=-all", "--bounding-set=-all"}
	if asRoot {
		drop = append([]string{"--reuid=" + uid, "--regid=" + uid, "--clear-groups"}, drop...)
	}

	// Each deployment's listeners and sysctl.
	out, err := composeConfig(t, []string{"TLS_CERTS_HOST_DIR=" + certs}, "docker-compose.yml", "deploy/compose.tls.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var stack struct {
		Services map[string]tlsComposeService `json:"services"`
	}
	if err := yaml.Unmarshal(out, &stack); err != nil {
		t.Fatal(err)
	}
	compose := stack.Services["gateway"]
	overlay := k8sTLSOverlay(t)
	variants := []struct {
		name                 string
		publicAddr, redirect string
		sysctl               string
	}{
		{name: "compose", publicAddr: compose.Environment["GATEWAY_PORT"], redirect: compose.Environment["HTTP_REDIRECT_ADDR"],
			sysctl: compose.Sysctls["net.ipv4.ip_unprivileged_port_start"]},
		{name: "kubernetes", publicAddr: overlay.env["GATEWAY_PORT"], redirect: overlay.env["HTTP_REDIRECT_ADDR"],
			sysctl: overlay.sysctls["net.ipv4.ip_unprivileged_port_start"]},
	}
	for _, v := range variants {
		t.Run(v.name, func(t *testing.T) {
			if v.sysctl == "" || portOf(t, v.publicAddr) >= 1024 {
				t.Fatalf("GATEWAY_PORT %q, sysctl %q: want a port below 1024 and the sysctl", v.publicAddr, v.sysctl)
			}
			// run starts the gateway as uid 65532 in a new network
			// namespace and returns its "gateway listening" line (then
			// stops it), or nil with its exit status if it never got there.
			run := func(sysctl string) (map[string]any, int, string) {
				script := `exec "$@"`
				if sysctl != "" {
					script = `echo "$PORT_START" > /proc/sys/net/ipv4/ip_unprivileged_port_start && ` + script
				}
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				// unshare and sh exec: the process is the gateway's.
				args := append(append(append([]string{}, inNamespace...), "sh", "-c", script, "sh", setpriv), drop...)
				cmd := exec.CommandContext(ctx, unshare, append(args, "--", bin)...)
				cmd.Dir = dir
				cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "PORT_START=" + sysctl, "DASHBOARD=off",
					"GATEWAY_PORT=" + v.publicAddr, "HTTP_REDIRECT_ADDR=" + v.redirect, "HTTP3=true",
					"OPS_ADDR=127.0.0.1:9778", "TLS_CERTS_DIR=" + certs}
				var out deploySyncBuf
				cmd.Stderr = &out
				stdout, err := cmd.StdoutPipe()
				if err != nil {
					t.Fatal(err)
				}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				var listening map[string]any
				sc := bufio.NewScanner(stdout)
				sc.Buffer(make([]byte, 1<<20), 1<<20)
				for listening == nil && sc.Scan() {
					out.Write(append(sc.Bytes(), '\n'))
					var m map[string]any
					if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == "gateway listening" {
						listening = m
						cmd.Process.Kill()
					}
				}
				io.Copy(io.Discard, stdout)
				err = cmd.Wait()
				var ee *exec.ExitError
				if listening == nil && !errors.As(err, &ee) {
					t.Fatalf("gateway in a network namespace: %v\n%s", err, out.String())
				}
				return listening, cmd.ProcessState.ExitCode(), out.String()
			}
			listening, code, out := run(v.sysctl)
			if listening == nil {
				t.Fatalf("without capabilities, with ip_unprivileged_port_start=%s: exit %d, want it up and listening\n%s", v.sysctl, code, out)
			}
			for attr, want := range map[string]string{"addr": v.publicAddr, "http3_addr": v.publicAddr, "redirect_addr": v.redirect} {
				got, _ := listening[attr].(string)
				if got == "" || portOf(t, got) != portOf(t, want) {
					t.Errorf("%s %q, want port %d", attr, got, portOf(t, want))
				}
			}
			// The contrast: the kernel's default keeps it off 443.
			if listening, code, out := run(""); listening != nil || !strings.Contains(out, "permission denied") {
				t.Errorf("without the sysctl: exit %d, want a refusal to bind (permission denied)\n%s", code, out)
			}
		})
	}
}

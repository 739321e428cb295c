package e2e

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// nginxTestCert writes a self-signed certificate for 127.0.0.1/localhost and
// returns the pool that trusts it.
func nginxTestCert(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// nginxEdit is one textual change the test makes to the shipped config:
// only ports, addresses and file paths, never a directive under test. Each
// old text must occur exactly n times, so a change to the shipped file that
// the test does not know about fails loudly instead of going untested.
type nginxEdit struct {
	old, new string
	n        int
}

// nginxEdge runs the shipped deploy/nginx/nginx.conf with loopback ports.
type nginxEdge struct {
	httpsURL, httpURL string
	pool              *x509.CertPool
	errLog            string
}

func startNginxEdge(t *testing.T, gatewayAddr string) *nginxEdge {
	t.Helper()
	nginx := deployLookPath(t, "nginx")
	// Worker processes drop root privileges, so the files they read live
	// in a world-readable directory (t.TempDir's parent is private).
	dir, err := os.MkdirTemp("", "portcullis-nginx-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, sub := range []string{"conf", "logs", "tmp"} {
		if err := os.Mkdir(filepath.Join(dir, sub), 0o777); err != nil {
			t.Fatal(err)
		}
		os.Chmod(filepath.Join(dir, sub), 0o777)
	}
	certFile, keyFile, pool := nginxTestCert(t, filepath.Join(dir, "conf"))
	mime, err := os.ReadFile("/etc/nginx/mime.types")
	if err != nil {
		t.Fatalf("nginx's mime.types: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "conf", "mime.types"), mime, 0o644); err != nil {
		t.Fatal(err)
	}
	// The static pages, copied so the unprivileged workers can read them.
	html := filepath.Join(dir, "html")
	if out, err := exec.Command("cp", "-r", filepath.Join(deployRepoRoot(t), "deploy/nginx/html"), html).CombinedOutput(); err != nil {
		t.Fatalf("copying html: %v %s", err, out)
	}
	exec.Command("chmod", "-R", "a+rX", html).Run()

	httpPort, httpsPort := deployFreePort(t), deployFreePort(t)
	tmp := filepath.Join(dir, "tmp")
	errLog := filepath.Join(dir, "logs", "error.log")
	conf := deployRead(t, "deploy/nginx/nginx.conf")
	edits := []nginxEdit{
		{"listen 80;", fmt.Sprintf("listen 127.0.0.1:%d;", httpPort), 1},
		{"listen [::]:80;", "", 1},
		{"listen 443 ssl http2;", fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", httpsPort), 1},
		{"listen [::]:443 ssl http2;", "", 1},
		{"server gateway:9777;", "server " + gatewayAddr + ";", 1},
		{"/etc/nginx/certs/tls.crt;", certFile + ";", 1},
		{"/etc/nginx/certs/tls.key;", keyFile + ";", 1},
		{"root /usr/share/nginx/html;", "root " + html + ";", 2},
		{"pid /var/run/nginx.pid;", "pid " + filepath.Join(dir, "nginx.pid") + ";", 1},
		{"error_log /var/log/nginx/error.log warn;", "error_log " + errLog + " warn;", 1},
		{"access_log /var/log/nginx/access.log edge;", "access_log " + filepath.Join(dir, "logs", "access.log") + " edge;", 1},
		// Debian's nginx has absolute temp paths compiled in.
		{"http {\n", "http {\n" + strings.NewReplacer("T", tmp).Replace(
			"    client_body_temp_path T/body;\n    proxy_temp_path T/proxy;\n    fastcgi_temp_path T/fastcgi;\n"+
				"    uwsgi_temp_path T/uwsgi;\n    scgi_temp_path T/scgi;\n"), 1},
	}
	for _, e := range edits {
		if got := strings.Count(conf, e.old); got != e.n {
			t.Fatalf("deploy/nginx/nginx.conf: %q occurs %d times, the test expects %d", e.old, got, e.n)
		}
		conf = strings.ReplaceAll(conf, e.old, e.new)
	}
	confFile := filepath.Join(dir, "conf", "nginx.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-c", confFile, "-p", dir, "-e", errLog}
	if out, err := exec.Command(nginx, append(args, "-t")...).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(nginx, append(args, "-g", "daemon off;")...)
	var out deploySyncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt) // fast shutdown of master and workers
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(errLog)
			t.Logf("nginx output:\n%s\nerror.log:\n%s", out.String(), log)
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", httpsPort))
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("nginx exited: %s", out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx not listening: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &nginxEdge{
		httpsURL: fmt.Sprintf("https://127.0.0.1:%d", httpsPort),
		httpURL:  fmt.Sprintf("http://127.0.0.1:%d", httpPort),
		pool:     pool, errLog: errLog,
	}
}

// clientFrom returns an HTTPS client whose connections come from local
// address ip (any of 127.0.0.0/8 works on Linux), so the "real client"
// differs from nginx's own 127.0.0.1.
func (e *nginxEdge) clientFrom(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			TLSClientConfig:     &tls.Config{RootCAs: e.pool},
			DisableCompression:  true,
			MaxIdleConnsPerHost: 64,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// echoUpstream answers every request with the addressing headers it
// received, and echoes the bytes of WebSocket connections back.
func echoUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			key := r.Header.Get("Sec-WebSocket-Key")
			h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
			conn, brw, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
				base64.StdEncoding.EncodeToString(h[:]))
			brw.Flush()
			buf := make([]byte, 512)
			for {
				n, err := brw.Read(buf)
				if err != nil {
					return
				}
				conn.Write(buf[:n])
			}
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"xff": r.Header.Get("X-Forwarded-For"), "xri": r.Header.Get("X-Real-IP"),
			"proto": r.Header.Get("X-Forwarded-Proto"), "path": r.URL.Path,
			"forwarded": r.Header.Get("Forwarded"), "xfport": r.Header.Get("X-Forwarded-Port"),
			"xfprefix": r.Header.Get("X-Forwarded-Prefix"),
		})
	}))
	t.Cleanup(srv.Close)
	return srv
}

// envFileValue returns KEY's value in a repository env file.
func envFileValue(t *testing.T, file, key string) string {
	t.Helper()
	for _, line := range strings.Split(deployRead(t, file), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			return v
		}
	}
	t.Fatalf("%s sets no %s", file, key)
	return ""
}

// TestNginxEdge runs the shipped nginx config (ports, upstream address and
// file paths moved to the test's) in front of the real gateway, which
// trusts nginx's 127.0.0.1 as .env.production (gateway and nginx on one
// host) says, and clients on 127.0.0.2 and 127.0.0.3.
func TestNginxEdge(t *testing.T) {
	up := echoUpstream(t)
	trusted := envFileValue(t, ".env.production", "TRUSTED_PROXIES")
	gw := deployStartGateway(t,
		fmt.Sprintf(`SERVICE_ROUTES=[{"prefix":"/echo","target_url":%q}]`, up.URL),
		"TRUSTED_PROXIES="+trusted,
		// The gateway's own per-IP limits out of the way: this test is
		// about nginx's coarse limit.
		"MAX_REQUESTS_PER_SECOND=1000000", "MAX_BURST_SIZE=1000000", "DDOS_THRESHOLD=100000000",
		"LOG_LEVEL=info")
	edge := startNginxEdge(t, gw.Addr)
	alice, bob := edge.clientFrom("127.0.0.2"), edge.clientFrom("127.0.0.3")

	t.Run("real client address reaches gateway and upstream; spoofed headers lose", func(t *testing.T) {
		req, _ := http.NewRequest("GET", edge.httpsURL+"/echo/who?n=1", nil)
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		req.Header.Set("X-Real-IP", "6.6.6.6")
		// The gateway drops these from untrusted clients only; nginx is
		// trusted, so it must not relay the client's own.
		req.Header.Set("Forwarded", "for=6.6.6.6;proto=https")
		req.Header.Set("X-Forwarded-Port", "6666")
		req.Header.Set("X-Forwarded-Prefix", "/admin")
		resp, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d, decode %v", resp.StatusCode, err)
		}
		// The gateway believes nginx (trusted) and forwards client, then proxy.
		if got["xff"] != "127.0.0.2, 127.0.0.1" || got["xri"] != "127.0.0.2" {
			t.Errorf("upstream saw X-Forwarded-For %q, X-Real-IP %q; want \"127.0.0.2, 127.0.0.1\" and 127.0.0.2", got["xff"], got["xri"])
		}
		if got["proto"] != "https" {
			t.Errorf("X-Forwarded-Proto %q, want https", got["proto"])
		}
		for _, k := range []string{"forwarded", "xfport", "xfprefix"} {
			if got[k] != "" {
				t.Errorf("upstream saw the client's own %s %q through the trusted edge", k, got[k])
			}
		}
		if resp.Header.Get("X-Request-ID") == "" {
			t.Error("no X-Request-ID: the answer did not come through the gateway")
		}
		// The gateway's access log keys the request on the real client.
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(gw.out.String(), `"client_ip":"127.0.0.2"`) {
			if time.Now().After(deadline) {
				t.Fatalf("gateway never logged client_ip 127.0.0.2")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("a gateway left at the defaults sees nginx as every client", func(t *testing.T) {
		// Why the edge's gateway must list nginx in TRUSTED_PROXIES: by
		// default it trusts nobody, so nginx's X-Forwarded-For is ignored
		// and nginx's address is the client for logs, limits and lists.
		plain := deployStartGateway(t, fmt.Sprintf(`SERVICE_ROUTES=[{"prefix":"/echo","target_url":%q}]`, up.URL))
		plainEdge := startNginxEdge(t, plain.Addr)
		resp, err := plainEdge.clientFrom("127.0.0.2").Get(plainEdge.httpsURL + "/echo/who")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != 200 {
			t.Fatalf("status %d, decode %v", resp.StatusCode, err)
		}
		if got["xri"] != "127.0.0.1" || got["xff"] != "127.0.0.1" {
			t.Errorf("untrusting gateway sent upstream X-Forwarded-For %q, X-Real-IP %q; want nginx's 127.0.0.1 only", got["xff"], got["xri"])
		}
		deadline := time.Now().Add(3 * time.Second)
		for !strings.Contains(plain.out.String(), `"client_ip":"127.0.0.1"`) {
			if time.Now().After(deadline) {
				t.Fatal("the untrusting gateway never logged client_ip 127.0.0.1 (nginx)")
			}
			time.Sleep(20 * time.Millisecond)
		}
		if strings.Contains(plain.out.String(), `"client_ip":"127.0.0.2"`) {
			t.Error("the untrusting gateway believed nginx's X-Forwarded-For")
		}
	})

	t.Run("websocket upgrade passes through", func(t *testing.T) {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}, Timeout: 5 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", strings.TrimPrefix(edge.httpsURL, "https://"),
			&tls.Config{RootCAs: edge.pool, NextProtos: []string{"http/1.1"}})
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		key := base64.StdEncoding.EncodeToString([]byte("portcullis-nginx"))
		fmt.Fprintf(conn, "GET /echo/ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", key)
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			t.Fatalf("status %d, want 101", resp.StatusCode)
		}
		// A masked text frame "hello"; the upstream echoes the raw bytes.
		frame := []byte{0x81, 0x85, 1, 2, 3, 4}
		for i, c := range []byte("hello") {
			frame = append(frame, c^[]byte{1, 2, 3, 4}[i%4])
		}
		if _, err := conn.Write(frame); err != nil {
			t.Fatal(err)
		}
		echo := make([]byte, len(frame))
		if _, err := io.ReadFull(br, echo); err != nil || !bytes.Equal(echo, frame) {
			t.Fatalf("echo %x, %v; want %x", echo, err, frame)
		}
	})

	t.Run("static pages: gzip, 404 page, redirect to https", func(t *testing.T) {
		req, _ := http.NewRequest("GET", edge.httpsURL+"/", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		resp, err := alice.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("landing page Content-Encoding %q, want gzip", resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(zr)
		if !strings.Contains(string(page), "<title>Portcullis API gateway</title>") {
			t.Errorf("landing page: %.200s", page)
		}

		code, body := getWith(t, alice, edge.httpsURL+"/assets/missing.css")
		if code != 404 || !strings.Contains(body, "404 — not found") {
			t.Errorf("static miss: %d %.200s", code, body)
		}
		// The gateway's own JSON errors pass through untouched.
		code, body = getWith(t, alice, edge.httpsURL+"/no-such-route")
		if code != 404 || !strings.Contains(body, `"error"`) {
			t.Errorf("gateway 404 replaced by nginx: %d %.200s", code, body)
		}

		// Behind the edge, the gateway serves its ops endpoints on the
		// ops listener, which nginx's config never names, and not on the
		// public port nginx proxies to.
		deployCheckOpsSplit(t, gw)

		plain := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err = plain.Get(edge.httpURL + "/echo/x?y=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 301 || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
			t.Errorf("plain HTTP: %d Location %q, want a 301 to https", resp.StatusCode, resp.Header.Get("Location"))
		}
	})

	t.Run("ops and admin endpoints are refused at the edge", func(t *testing.T) {
		// Defence in depth (the gateway's public port does not serve
		// them, but one run with OPS_ADDR=public would): every path nginx
		// normalises to /admin or below, or to an ops endpoint, gets
		// nginx's 404 and never reaches the gateway (whose answers carry
		// X-Request-ID).
		for _, path := range []string{
			"/metrics", "/metrics/", "/stats", "/stats/", "/monitor", "/monitor/", "/monitor/app.js",
			"/api/system-metrics", "/api/system-metrics/",
			"/admin", "/admin/", "/admin/blocked", "/admin/config", "/admin/config/", "/admin/reload",
			"/admin/new-thing", "/admin/new-thing/deeper?x=1", // endpoints the gateway may add later
			"/admin/../admin/config", "/echo/../admin/config", "/admin/./config", "/echo/x/../../admin/whitelist",
			"//metrics", "//admin//config", "/%6Detrics", "/%61dmin/config", "/admin%2Fconfig", "/admin%2fnew-thing",
			"/%2e/admin/config", "/echo/%2e%2e/admin/config", "/ADMIN/config", "/Metrics",
		} {
			resp, err := alice.Get(edge.httpsURL + path)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 404 || resp.Header.Get("X-Request-ID") != "" || !strings.Contains(string(b), "404 — not found") {
				t.Errorf("%s through the edge: %d X-Request-ID %q %.200s", path, resp.StatusCode, resp.Header.Get("X-Request-ID"), b)
			}
		}
		// The block is /admin and below, not every path containing it.
		for _, path := range []string{"/echo/admin", "/echo/admin/config", "/echo/metrics", "/echo/x/%2e%2e/admin"} {
			resp, err := alice.Get(edge.httpsURL + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || resp.Header.Get("X-Request-ID") == "" {
				t.Errorf("%s: %d, want the upstream's 200 through the gateway", path, resp.StatusCode)
			}
		}
		for _, path := range []string{"/administrator", "/adminx/config", "/statsd"} {
			resp, err := alice.Get(edge.httpsURL + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.Header.Get("X-Request-ID") == "" {
				t.Errorf("%s: %d from nginx, want the gateway's answer (only /admin and below is refused)", path, resp.StatusCode)
			}
		}
	})

	t.Run("security headers on nginx's own pages, once on proxied answers", func(t *testing.T) {
		for _, path := range []string{"/", "/assets/style.css", "/assets/missing.css", "/admin/config", "/metrics"} {
			resp, err := alice.Get(edge.httpsURL + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			checkHeaders(t, path, resp.Header, edgeStaticHeaders)
		}
		// The gateway sets its own (secheaders): nginx adds no second copy.
		for _, path := range []string{"/echo/x", "/no-such-route"} {
			resp, err := alice.Get(edge.httpsURL + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			checkHeaders(t, path, resp.Header, gatewayHeaders)
		}
	})

	t.Run("coarse rate limit keys on the real client", func(t *testing.T) {
		// Flood from 127.0.0.2, each request claiming a different address
		// in X-Forwarded-For: the claims must not spread the limit.
		var limited, sent atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var once sync.Once
		for w := range 24 {
			wg.Go(func() {
				for i := 0; i < 400; i++ {
					select {
					case <-stop:
						return
					default:
					}
					req, _ := http.NewRequest("GET", edge.httpsURL+"/livez", nil)
					req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.1", w, i%250))
					resp, err := alice.Do(req)
					if err != nil {
						t.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					sent.Add(1)
					// nginx's own 429: no X-Request-ID, the gateway never saw it.
					if resp.StatusCode == 429 && resp.Header.Get("X-Request-ID") == "" {
						if limited.Add(1) >= 20 {
							once.Do(func() { close(stop) })
						}
					}
				}
			})
		}
		wg.Wait()
		if limited.Load() == 0 {
			t.Fatalf("%d requests from one client, none limited by nginx", sent.Load())
		}
		// Another client (claiming to be the limited one) still passes.
		req, _ := http.NewRequest("GET", edge.httpsURL+"/echo/bob", nil)
		req.Header.Set("X-Forwarded-For", "127.0.0.2")
		resp, err := bob.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode != 200 || got["xri"] != "127.0.0.3" {
			t.Errorf("127.0.0.3 after 127.0.0.2 was limited: %d, upstream saw %v", resp.StatusCode, got)
		}
		t.Logf("%d requests from 127.0.0.2, %d limited by nginx", sent.Load(), limited.Load())
	})

	t.Run("gateway down: nginx's 50x page", func(t *testing.T) {
		gw.cmd.Process.Kill()
		<-gw.exited
		resp, err := bob.Get(edge.httpsURL + "/echo/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 502 || !strings.Contains(string(b), "Service temporarily unavailable") {
			t.Errorf("gateway down: %d %.200s", resp.StatusCode, b)
		}
		checkHeaders(t, "50x page", resp.Header, edgeStaticHeaders)
	})
}

func getWith(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// edgeStaticHeaders are the security headers of nginx's own answers; the
// CSP lets the static pages load their stylesheet and nothing else.
var edgeStaticHeaders = map[string]string{
	"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"Content-Security-Policy":   "default-src 'none'; style-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
	"Referrer-Policy":           "no-referrer",
}

// gatewayHeaders are the same headers as the gateway's secheaders sets them.
var gatewayHeaders = map[string]string{
	"Strict-Transport-Security": "max-age=31536000; includeSubDomains",
	"X-Content-Type-Options":    "nosniff",
	"X-Frame-Options":           "DENY",
	"Content-Security-Policy":   "default-src 'none'; frame-ancestors 'none'",
	"Referrer-Policy":           "no-referrer",
}

// checkHeaders asserts each header is present exactly once with its value.
func checkHeaders(t *testing.T, what string, h http.Header, want map[string]string) {
	t.Helper()
	for _, k := range deploySorted(want) {
		if got := h.Values(k); len(got) != 1 || got[0] != want[k] {
			t.Errorf("%s: %s = %q, want exactly [%q]", what, k, got, want[k])
		}
	}
}

package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// tlsSetup is a test CA and a directory of certificates it signed.
type tlsSetup struct {
	ca  *testutil.CA
	dir string
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	return &tlsSetup{ca: testutil.NewCA(t, "Portcullis Test CA"), dir: t.TempDir()}
}

// write puts name.crt and name.key for a certificate with common name cn
// and the DNS names into the directory, each file replaced whole.
func (s *tlsSetup) write(t *testing.T, name, cn string, dns ...string) (crt, key string) {
	t.Helper()
	c, k := s.ca.Leaf(t, testutil.LeafSpec{CN: cn, DNS: dns})
	crt, key = filepath.Join(s.dir, name+".crt"), filepath.Join(s.dir, name+".key")
	for path, data := range map[string][]byte{crt: c, key: k} {
		if err := os.WriteFile(path+".tmp", data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	return crt, key
}

// client speaks HTTPS to the gateway as serverName, trusting the test CA;
// h2 offers HTTP/2 by ALPN, else HTTP/1.1 only.
func (s *tlsSetup) client(serverName string, h2 bool, certs ...tls.Certificate) *http.Client {
	cfg := &tls.Config{RootCAs: s.ca.Pool(), ServerName: serverName, Certificates: certs}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: h2}
	if !h2 {
		cfg.NextProtos = []string{"http/1.1"}
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// presented is the common name of the certificate the gateway shows for
// serverName. It does not verify the chain: a name no certificate covers
// gets the default one, which is the point of asking.
func (s *tlsSetup) presented(t *testing.T, addr, serverName string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{ServerName: serverName, InsecureSkipVerify: true})
	if err != nil {
		t.Fatalf("handshake as %q: %v", serverName, err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// echoHeaders is a backend that answers with the request headers the test
// asks about, one "Name: value" line each.
func echoHeaders(t *testing.T, names ...string) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		for _, n := range names {
			io.WriteString(w, n+": "+strings.Join(r.Header.Values(n), ",")+"\n")
		}
	})
}

func fetch(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// The gateway terminates TLS itself: HTTP/2 and HTTP/1.1 by ALPN, the
// certificate chosen by SNI (exact, wildcard, then the default), HSTS on
// HTTPS answers, X-Forwarded-Proto https upstream, and old protocol
// versions refused.
func TestTLSServesHTTPSAndHTTP2BySNI(t *testing.T) {
	s := newTLSSetup(t)
	s.write(t, "a-default", "default", "default.portcullis.test")
	s.write(t, "api", "api", "api.portcullis.test")
	s.write(t, "wild", "wild", "*.apps.portcullis.test")
	up := echoHeaders(t, "X-Forwarded-Proto")
	p := startGateway(t, "TLS_CERTS_DIR="+s.dir, `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)
	base := "https://" + p.addr

	for _, tc := range []struct {
		name  string
		h2    bool
		proto int
	}{{"HTTP/2 by ALPN", true, 2}, {"HTTP/1.1", false, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := fetch(t, s.client("api.portcullis.test", tc.h2), base+"/x")
			if resp.StatusCode != 200 || resp.ProtoMajor != tc.proto {
				t.Fatalf("%s %d, want HTTP/%d 200", resp.Proto, resp.StatusCode, tc.proto)
			}
			if !strings.Contains(body, "X-Forwarded-Proto: https\n") {
				t.Errorf("upstream saw %q, want X-Forwarded-Proto: https", body)
			}
			if got := resp.Header.Get("Strict-Transport-Security"); !strings.HasPrefix(got, "max-age=") {
				t.Errorf("HSTS on an HTTPS answer = %q", got)
			}
		})
	}
	for name, want := range map[string]string{
		"api.portcullis.test":      "api",
		"API.Portcullis.Test":      "api",
		"x.apps.portcullis.test":   "wild",
		"a.b.apps.portcullis.test": "default",
		"unknown.example":          "default",
	} {
		if got := s.presented(t, p.addr, name); got != want {
			t.Errorf("SNI %q got certificate %q, want %q", name, got, want)
		}
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: "api.portcullis.test", MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %x accepted", v)
		}
	}
	_, metrics := get(t, p.opsURL("/metrics"))
	if !strings.Contains(metrics, "tls_certificate_expiry_timestamp_seconds{name=\"api.portcullis.test\"}") ||
		sumMetric(metrics, "tls_sni_unmatched_total", "") < 2 || sumMetric(metrics, "tls_handshakes_total", `version="1.3"`) < 5 {
		t.Errorf("TLS metrics missing or wrong:\n%s", grepLines(metrics, "tls_"))
	}

	// HTTP/1.0 over TLS: the listener cannot watch the plain-text bytes,
	// so the answer closes the connection and nothing a client left
	// behind is read as a next request.
	c, err := tls.Dial("tcp", p.addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: "api.portcullis.test", NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /x HTTP/1.0\r\nHost: api.portcullis.test\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"+
		"0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: api.portcullis.test\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	out, err := io.ReadAll(c)
	if err != nil || strings.Count(string(out), "HTTP/1.") != 1 {
		t.Errorf("HTTP/1.0 over TLS: %v, answers:\n%s", err, out)
	}
}

// Plain HTTP answers carry no HSTS: a browser ignores it there, and a
// gateway without TLS has no HTTPS to pin clients to.
func TestPlainHTTPAnswersHaveNoHSTS(t *testing.T) {
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startGateway(t, `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)
	resp, _ := do(t, http.MethodGet, p.url("/x"), "X-Forwarded-Proto", "https")
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "" || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("%d, HSTS %q, nosniff %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"), resp.Header.Get("X-Content-Type-Options"))
	}
}

// A certificate replaced on disk is served to the next handshake without
// a restart, while connections already open keep working; SIGHUP reloads
// too; a broken replacement keeps the one in force.
func TestTLSCertificateRotatesWithoutDroppingConnections(t *testing.T) {
	s := newTLSSetup(t)
	crt, key := s.write(t, "gw", "v1", "gw.portcullis.test")
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p := startGateway(t, "TLS_CERT_FILE="+crt, "TLS_KEY_FILE="+key, `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)
	base := "https://" + p.addr

	kept := s.client("gw.portcullis.test", true)
	if resp, _ := fetch(t, kept, base+"/x"); resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].Subject.CommonName != "v1" {
		t.Fatalf("first request: %d", resp.StatusCode)
	}
	// Load through the rotation: new connections (a handshake each) and
	// kept-alive ones, none of which may fail. Either certificate is fine,
	// since the client trusts the CA; a half-written pair never may be
	// served.
	var failed, done atomic.Int64
	stop := make(chan struct{})
	var load sync.WaitGroup
	for i := range 4 {
		load.Go(func() {
			c := s.client("gw.portcullis.test", i%2 == 0)
			if i%2 == 1 {
				c.Transport.(*http.Transport).DisableKeepAlives = true
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get(base + "/x")
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					failed.Add(1)
				}
				done.Add(1)
			}
		})
	}
	s.write(t, "gw", "v2", "gw.portcullis.test")
	deadline := time.Now().Add(5 * time.Second)
	for s.presented(t, p.addr, "gw.portcullis.test") != "v2" {
		if time.Now().After(deadline) {
			t.Fatalf("the replaced certificate is not served\n%s", p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // load on the new certificate too
	close(stop)
	load.Wait()
	if failed.Load() != 0 || done.Load() < 20 {
		t.Errorf("%d of %d requests failed during the rotation", failed.Load(), done.Load())
	}
	// The HTTP/2 connection opened before the swap is still the one used.
	resp, _ := fetch(t, kept, base+"/x")
	if resp.StatusCode != 200 || resp.TLS.PeerCertificates[0].Subject.CommonName != "v1" {
		t.Errorf("the connection from before the rotation: %d, certificate %q", resp.StatusCode, resp.TLS.PeerCertificates[0].Subject.CommonName)
	}

	// A broken key: refused, v2 stays, and it is counted.
	if err := os.WriteFile(key, []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	p.waitLog(t, 5*time.Second, "TLS certificates reload failed")
	if got := s.presented(t, p.addr, "gw.portcullis.test"); got != "v2" {
		t.Errorf("after a broken replacement the gateway serves %q, want v2 kept", got)
	}
	// SIGHUP reads the files again: a valid pair written meanwhile wins.
	before := countLog(p, "TLS certificates reloaded")
	s.write(t, "gw", "v3", "gw.portcullis.test")
	p.cmd.Process.Signal(syscall.SIGHUP)
	deadline = time.Now().Add(5 * time.Second)
	for countLog(p, "TLS certificates reloaded") < before+2 { // the watch's reload and the signal's
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload the certificates\n%s", p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := s.presented(t, p.addr, "gw.portcullis.test"); got != "v3" {
		t.Errorf("after SIGHUP the gateway serves %q, want v3", got)
	}
	_, metrics := get(t, p.opsURL("/metrics"))
	if sumMetric(metrics, "tls_certificate_reloads_total", `result="failure"`) < 1 || sumMetric(metrics, "tls_certificate_reloads_total", `result="success"`) < 2 {
		t.Errorf("reload counters:\n%s", grepLines(metrics, "tls_certificate_reloads_total"))
	}
}

// HTTP_REDIRECT_ADDR answers plain HTTP with a 308 to the same URL on the
// TLS port; a Host that is not a host name gets 400, never a Location the
// client wrote.
func TestHTTPRedirectToHTTPS(t *testing.T) {
	s := newTLSSetup(t)
	crt, key := s.write(t, "gw", "gw", "gw.portcullis.test")
	p := startGateway(t, "TLS_CERT_FILE="+crt, "TLS_KEY_FILE="+key, "HTTP_REDIRECT_ADDR=127.0.0.1:0")
	redirect := logField(t, p, "gateway listening", "redirect_addr")
	_, port, _ := net.SplitHostPort(p.addr)

	noFollow := &http.Client{Timeout: 5 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodPost, "http://"+redirect+"/api/orders?id=7&x=%2F", strings.NewReader("{}"))
	req.Host = "gw.portcullis.test"
	resp, err := noFollow.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	want := "https://gw.portcullis.test:" + port + "/api/orders?id=7&x=%2F"
	if resp.StatusCode != http.StatusPermanentRedirect || resp.Header.Get("Location") != want {
		t.Errorf("%d Location %q, want 308 %q", resp.StatusCode, resp.Header.Get("Location"), want)
	}
	out, _ := raw(t, redirect, "GET / HTTP/1.1\r\nHost: evil.example/@x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 400") || strings.Contains(out, "Location") {
		t.Errorf("a Host with a path: %s", firstLine(out))
	}
}

// TLS_CLIENT_AUTH=require: no certificate, no request; the verified
// subject goes upstream as X-Client-Cert-Subject, and a client's own copy
// of that header never does.
func TestClientCertificatesRequiredAndForwarded(t *testing.T) {
	s := newTLSSetup(t)
	crt, key := s.write(t, "gw", "gw", "gw.portcullis.test")
	clients := testutil.NewCA(t, "Client CA")
	caFile := filepath.Join(t.TempDir(), "clients.pem")
	if err := os.WriteFile(caFile, clients.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	up := echoHeaders(t, "X-Client-Cert-Subject")
	for _, mode := range []string{"require", "request"} {
		t.Run(mode, func(t *testing.T) {
			p := startGateway(t, "TLS_CERT_FILE="+crt, "TLS_KEY_FILE="+key, "TLS_CLIENT_CA="+caFile, "TLS_CLIENT_AUTH="+mode,
				`SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)
			base := "https://" + p.addr
			alice := s.client("gw.portcullis.test", true, clients.ClientCert(t, "alice"))
			_, body := fetch(t, alice, base+"/x", "X-Client-Cert-Subject", "CN=admin")
			if body != "X-Client-Cert-Subject: CN=alice,O=Example\n" {
				t.Errorf("with alice's certificate the backend saw %q", body)
			}
			anon := s.client("gw.portcullis.test", true)
			req, _ := http.NewRequest(http.MethodGet, base+"/x", nil)
			req.Header.Set("X-Client-Cert-Subject", "CN=admin")
			resp, err := anon.Do(req)
			if mode == "require" {
				if err == nil {
					resp.Body.Close()
					t.Errorf("no client certificate, yet %d", resp.StatusCode)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			if string(b) != "X-Client-Cert-Subject: \n" {
				t.Errorf("without a certificate the backend saw %q (a client's own header must not pass)", b)
			}
		})
	}
}

// A certificate file that is missing stops the boot with exit status 2
// and a line naming the variable, like any other invalid setting.
func TestTLSMissingCertificateStopsBoot(t *testing.T) {
	code, _, stderr := runOnce(t, t.TempDir(), []string{"TLS_CERT_FILE=/nonexistent/gw.crt", "TLS_KEY_FILE=/nonexistent/gw.key"})
	if code != 2 || !strings.Contains(stderr, "TLS_CERT_FILE: cannot read") || !strings.Contains(stderr, "TLS_KEY_FILE: cannot read") {
		t.Errorf("exit %d, stderr:\n%s", code, stderr)
	}
}

// logField returns a field of the first log line with msg.
func logField(t *testing.T, p *proc, msg, field string) string {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(p.logs()))
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, `"msg":"`+msg+`"`) {
			var m map[string]any
			if err := json.Unmarshal([]byte(line), &m); err == nil {
				if v, ok := m[field].(string); ok {
					return v
				}
			}
		}
	}
	t.Fatalf("no %q with %s in the log:\n%s", msg, field, p.logs())
	return ""
}

// grepLines returns the lines of s that contain sub, for failure messages.
func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// One refused or cancelled HTTP/2 request ends that stream only: the
// client's connection, and its other streams, carry on. A stream the client
// reset while its body was being read is logged as the client leaving
// (499), not as a malformed body.
func TestHTTP2RefusalKeepsTheConnection(t *testing.T) {
	s := newTLSSetup(t)
	s.write(t, "gw", "gw", "gw.portcullis.test")
	up := backend(t, func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "ok")
	})
	p := startGateway(t, "TLS_CERTS_DIR="+s.dir, `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`","max_body_bytes":100}]`)
	base := "https://" + p.addr
	c := s.client("gw.portcullis.test", true)

	reused := func(t *testing.T, method string, body io.Reader, size int64) (*http.Response, bool) {
		t.Helper()
		var again bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) { again = i.Reused }})
		req, _ := http.NewRequestWithContext(ctx, method, base+"/x", body)
		req.ContentLength = size
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, again
	}
	if resp, _ := reused(t, http.MethodGet, nil, 0); resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("first request: %s %d", resp.Proto, resp.StatusCode)
	}
	// Refusals the gateway answers itself, each followed by a request that
	// must travel on the same connection.
	for _, tc := range []struct {
		name, method string
		size         int64
		want         int
	}{
		{"TRACE", http.MethodTrace, 0, http.StatusMethodNotAllowed},
		{"declared too large", http.MethodPost, 1000, http.StatusRequestEntityTooLarge},
	} {
		var body io.Reader
		if tc.size > 0 {
			body = strings.NewReader(strings.Repeat("x", int(tc.size)))
		}
		if resp, _ := reused(t, tc.method, body, tc.size); resp.StatusCode != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.want)
		}
		if resp, again := reused(t, http.MethodGet, nil, 0); resp.StatusCode != 200 || !again {
			t.Errorf("after %s the next request got a new connection (reused %v, %d)", tc.name, again, resp.StatusCode)
		}
	}

	// A POST whose client cancels it half-way through its body.
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/upload", pr)
	req.ContentLength = 10
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	pw.Write([]byte("12345"))
	time.Sleep(200 * time.Millisecond)
	cancel()
	<-done
	pw.Close()
	if resp, again := reused(t, http.MethodGet, nil, 0); resp.StatusCode != 200 || !again {
		t.Errorf("after a cancelled upload the next request got a new connection (reused %v, %d)", again, resp.StatusCode)
	}
	line := p.waitLog(t, 5*time.Second, `"path":"/upload"`)
	if !strings.Contains(line, `"status":499`) {
		t.Errorf("the cancelled upload is logged as %s, want 499 (client gone)", line)
	}
}

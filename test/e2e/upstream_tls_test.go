package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// mtlsBackend is an HTTPS backend whose certificate (for
// backend.internal) comes from its own CA and which requires a client
// certificate from clients; it answers with the protocol and the client's
// common name, and counts its health probes.
type mtlsBackend struct {
	addr, caFile string
	probes       atomic.Int64
}

func newMTLSBackend(t *testing.T, clientCA *testutil.CA) *mtlsBackend {
	t.Helper()
	ca := testutil.NewCA(t, "Backend CA")
	certPEM, keyPEM := ca.Leaf(t, testutil.LeafSpec{CN: "backend", DNS: []string{"backend.internal"}})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	b := &mtlsBackend{caFile: filepath.Join(t.TempDir(), "backend-ca.pem")}
	if err := os.WriteFile(b.caFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/healthz" {
				b.probes.Add(1)
			}
			fmt.Fprintf(w, "%s %s", r.Proto, r.TLS.PeerCertificates[0].Subject.CommonName)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clientCA.Pool(), NextProtos: []string{"h2", "http/1.1"}},
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	b.addr = ln.Addr().String()
	return b
}

// writeClientPair writes a client certificate for the gateway, signed by
// ca, and returns its files.
func writeClientPair(t *testing.T, ca *testutil.CA, cn string) (crt, key string) {
	t.Helper()
	c, k := ca.Leaf(t, testutil.LeafSpec{CN: cn, Client: true})
	dir := t.TempDir()
	crt, key = filepath.Join(dir, "gw.crt"), filepath.Join(dir, "gw.key")
	for path, data := range map[string][]byte{crt: c, key: k} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return crt, key
}

// A route's upstream_tls verifies its https backends against a private CA
// under a chosen name and shows them a client certificate (mutual TLS);
// upstream_http2 negotiates HTTP/2; health checks reach the backend over
// the same TLS settings. Without the client certificate, or trusting the
// wrong CA, the backend is unreachable: 502, never a silent downgrade.
func TestUpstreamMutualTLSAndHTTP2(t *testing.T) {
	gwCA := testutil.NewCA(t, "Gateway client CA")
	crt, key := writeClientPair(t, gwCA, "portcullis")
	// One backend per route: routes that share a backend must speak to it
	// the same way.
	backends := map[string]*mtlsBackend{}
	var routes []string
	for _, r := range []struct {
		prefix, tls string
		h2          bool
	}{
		{"/h2", `{"ca_file":%q,"cert_file":%q,"key_file":%q,"server_name":"backend.internal"}`, true},
		{"/h1", `{"ca_file":%q,"cert_file":%q,"key_file":%q,"server_name":"backend.internal"}`, false},
		{"/nocert", `{"ca_file":%q,"server_name":"backend.internal"}`, false},
		{"/wrongname", `{"ca_file":%q,"cert_file":%q,"key_file":%q}`, false},
	} {
		b := newMTLSBackend(t, gwCA)
		backends[r.prefix] = b
		args := []any{b.caFile, crt, key}[:strings.Count(r.tls, "%q")]
		routes = append(routes, fmt.Sprintf(`{"prefix":%q,"target_url":"https://%s","upstream_tls":%s,"upstream_http2":%v}`,
			r.prefix, b.addr, fmt.Sprintf(r.tls, args...), r.h2))
	}
	p := startGateway(t, "HEALTH_CHECK_PATH=/healthz", "HEALTH_CHECK_INTERVAL=100ms", "RETRY_MAX=1",
		`SERVICE_ROUTES=[`+strings.Join(routes, ",")+`]`)
	// The probes of HEALTH_CHECK_PATH get through the mutual TLS, and the
	// backends are up before the first request.
	deadline := time.Now().Add(5 * time.Second)
	for backends["/h2"].probes.Load() < 2 || backends["/h1"].probes.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no health probe reached the backends over their routes' TLS settings\n%s", p.logs())
		}
		time.Sleep(20 * time.Millisecond)
	}

	for path, want := range map[string]string{"/h2/x": "HTTP/2.0 portcullis", "/h1/x": "HTTP/1.1 portcullis"} {
		if code, body := get(t, p.url(path)); code != 200 || body != want {
			t.Errorf("%s: %d %q, want 200 %q", path, code, body, want)
		}
	}
	for _, path := range []string{"/nocert/x", "/wrongname/x"} {
		if code, _ := get(t, p.url(path)); code != http.StatusBadGateway && code != http.StatusServiceUnavailable {
			t.Errorf("%s: %d, want the backend unreachable (502/503)", path, code)
		}
	}
}

// insecure_skip_verify is refused in production and warned about in
// development.
func TestUpstreamInsecureSkipVerify(t *testing.T) {
	routes := `SERVICE_ROUTES=[{"prefix":"/","target_url":"https://127.0.0.1:1","upstream_tls":{"insecure_skip_verify":true}}]`
	code, _, stderr := runOnce(t, t.TempDir(), []string{"GATEWAY_ENV=production", "JWT_SECRET=" + strings.Repeat("k", 40), routes}, "validate")
	if code != 2 || !strings.Contains(stderr, "upstream_tls.insecure_skip_verify: refused in production") {
		t.Errorf("production: exit %d\n%s", code, stderr)
	}
	p := startGateway(t, routes)
	if !strings.Contains(p.logs(), "insecure_skip_verify: true: the backends' certificates are not verified") {
		t.Errorf("no warning in development:\n%s", p.logs())
	}
}

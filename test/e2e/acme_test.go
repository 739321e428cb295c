package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testsvc"
)

// freePort returns a loopback port nothing listens on now: the CA must be
// told the gateway's ports before the gateway starts.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// With ACME_DOMAINS the gateway obtains its certificate from a real ACME
// server (Pebble) on its own, answering the CA's challenge on its own
// listeners, and serves it: a client that trusts only the CA's issuing
// root verifies the chain and gets its answer over HTTP/2.
func TestACMEObtainsAndServesACertificate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		redirect bool // HTTP_REDIRECT_ADDR set: HTTP-01 on offer too
	}{{"TLS-ALPN-01 only", false}, {"with the redirect listener", true}} {
		t.Run(tc.name, func(t *testing.T) {
			tlsPort, httpPort := freePort(t), freePort(t)
			ca := testsvc.Pebble(t, testsvc.PebbleOptions{HTTPPort: httpPort, TLSPort: tlsPort})
			up := backend(t, func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, "hello over "+r.Header.Get("X-Forwarded-Proto"))
			})
			env := []string{
				"GATEWAY_PORT=127.0.0.1:" + strconv.Itoa(tlsPort),
				"ACME_DOMAINS=gw.portcullis.test", "ACME_EMAIL=ops@portcullis.test",
				"ACME_CA=" + ca.DirectoryURL, "ACME_CA_ROOT=" + ca.CARootFile, "ACME_STORAGE=" + t.TempDir(),
				`SERVICE_ROUTES=[{"prefix":"/","target_url":"` + up + `"}]`,
			}
			if tc.redirect {
				env = append(env, "HTTP_REDIRECT_ADDR=127.0.0.1:"+strconv.Itoa(httpPort))
			}
			p := startGateway(t, env...)

			roots := ca.IssuingRootPool(t)
			cfg := &tls.Config{RootCAs: roots, ServerName: "gw.portcullis.test"}
			var err error
			for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
				var c *tls.Conn
				if c, err = tls.Dial("tcp", p.addr, cfg); err == nil {
					c.Close()
					break
				}
			}
			if err != nil {
				t.Fatalf("no certificate the CA's root verifies within 30 s: %v\n%s", err, p.logs())
			}
			c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true}}
			resp, body := fetch(t, c, "https://"+p.addr+"/x")
			if resp.StatusCode != 200 || resp.ProtoMajor != 2 || body != "hello over https" {
				t.Errorf("%s %d %q", resp.Proto, resp.StatusCode, body)
			}
			if n := len(ca.Issued()); n != 1 {
				t.Errorf("the CA issued %d certificates, want 1", n)
			}
			_, metrics := get(t, p.opsURL("/metrics"))
			if sumMetric(metrics, "acme_certificates_obtained_total", "") != 1 {
				t.Errorf("acme metrics:\n%s", grepLines(metrics, "acme_"))
			}
			if !strings.Contains(p.logs(), `"component":"acme"`) {
				t.Errorf("no acme log line:\n%s", p.logs())
			}
		})
	}
}

package e2e

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// HTTP3=true serves HTTP/3 over QUIC on the TLS port's number, advertised
// with Alt-Svc on the TCP answers; quic-go's own HTTP/3 client gets the
// same answers and the same request rules as HTTP/1.1 and HTTP/2 clients.
func TestHTTP3ServedAndAdvertised(t *testing.T) {
	s := newTLSSetup(t)
	s.write(t, "gw", "gw", "gw.portcullis.test")
	up := echoHeaders(t, "X-Forwarded-Proto", "X-User-Id")
	p := startGateway(t, "TLS_CERTS_DIR="+s.dir, "HTTP3=true", `SERVICE_ROUTES=[{"prefix":"/","target_url":"`+up+`"}]`)
	_, port, _ := net.SplitHostPort(p.addr)

	resp, _ := fetch(t, s.client("gw.portcullis.test", true), "https://"+p.addr+"/x")
	if got, want := resp.Header.Get("Alt-Svc"), `h3=":`+port+`"; ma=86400`; got != want {
		t.Errorf("Alt-Svc over HTTP/2 = %q, want %q", got, want)
	}

	h3 := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: s.ca.Pool(), ServerName: "gw.portcullis.test"}}
	defer h3.Close()
	c := &http.Client{Transport: h3, Timeout: 10 * time.Second}
	resp, body := fetch(t, c, "https://"+p.addr+"/x", "X-User-Id", "admin")
	if resp.StatusCode != 200 || resp.ProtoMajor != 3 {
		t.Fatalf("%s %d", resp.Proto, resp.StatusCode)
	}
	if body != "X-Forwarded-Proto: https\nX-User-Id: \n" {
		t.Errorf("the backend saw %q over HTTP/3 (a client's X-User-Id must never pass)", body)
	}
	if !strings.HasPrefix(resp.Header.Get("Strict-Transport-Security"), "max-age=") || resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("security headers over HTTP/3: %v", resp.Header)
	}
	// A refusal is the same over every protocol.
	req, _ := http.NewRequest(http.MethodTrace, "https://"+p.addr+"/x", nil)
	if r, err := c.Do(req); err != nil || r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("TRACE over HTTP/3: %v %v", r, err)
	} else {
		io.Copy(io.Discard, r.Body)
		r.Body.Close()
	}
	if !strings.Contains(p.logs(), `"http3_addr":"`) {
		t.Errorf("the listening line does not name the HTTP/3 address:\n%s", p.logs())
	}
}

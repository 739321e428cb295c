package tlscert

import (
	"crypto/tls"
	"path/filepath"
	"testing"

	"github.com/portcullis/portcullis/internal/testutil"
)

func TestClientAuth(t *testing.T) {
	tests := []struct {
		name    string
		mode    string
		cert    string // "": none, "client": from TLS_CLIENT_CA, "stranger": from another CA
		wantErr bool
		want    string // ClientSubject the server saw
	}{
		{name: "require refuses no certificate", mode: "require", wantErr: true},
		{name: "require accepts the client CA's certificate", mode: "require", cert: "client", want: "CN=alice,O=Example"},
		{name: "require refuses another CA's certificate", mode: "require", cert: "stranger", wantErr: true},
		{name: "request accepts no certificate", mode: "request", want: ""},
		{name: "request verifies a certificate given", mode: "request", cert: "client", want: "CN=alice,O=Example"},
		{name: "request refuses another CA's certificate", mode: "request", cert: "stranger", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			clientCA := testutil.NewCA(t, "Client CA")
			caFile := filepath.Join(t.TempDir(), "clients.PEM")
			writeFile(t, caFile, clientCA.PEM)
			o := f.options()
			o.ClientCAFile, o.ClientAuth = caFile, tt.mode
			addr := serve(t, f.store(t, o).TLSConfig())

			cfg := f.client("a.example.test")
			switch tt.cert {
			case "client":
				cfg.Certificates = []tls.Certificate{clientCA.ClientCert(t, "alice")}
			case "stranger":
				// Sent even though the server names other CAs, which
				// Go's client would honour by sending nothing.
				stranger := testutil.NewCA(t, "Stranger CA").ClientCert(t, "alice")
				cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &stranger, nil }
			}
			c, err := dial(t, addr, cfg)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("connection accepted, subject %q", c.subject)
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.subject != tt.want {
				t.Errorf("ClientSubject = %q, want %q", c.subject, tt.want)
			}
		})
	}
}

// TestClientCAReload pins why TLSConfig hands each handshake a copy with the
// CA pool in force: a replaced TLS_CLIENT_CA applies to the next handshake.
func TestClientCAReload(t *testing.T) {
	f := newFixture(t)
	oldCA, newCA := testutil.NewCA(t, "Old client CA"), testutil.NewCA(t, "New client CA")
	caFile := filepath.Join(t.TempDir(), "clients.PEM")
	writeFile(t, caFile, oldCA.PEM)
	o := f.options()
	o.ClientCAFile, o.ClientAuth = caFile, "require"
	s := f.store(t, o)
	addr := serve(t, s.TLSConfig())

	// The certificate is sent whatever CAs the server names, so a refusal
	// is the server's verification, not the client's choice.
	withCert := func(c tls.Certificate) *tls.Config {
		cfg := f.client("a.example.test")
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &c, nil }
		return cfg
	}
	before, err := dial(t, addr, withCert(oldCA.ClientCert(t, "old")))
	if err != nil {
		t.Fatal(err)
	}

	writeFile(t, caFile, newCA.PEM)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := dial(t, addr, withCert(oldCA.ClientCert(t, "old"))); err == nil {
		t.Error("a certificate of the replaced CA is still accepted")
	}
	c, err := dial(t, addr, withCert(newCA.ClientCert(t, "new")))
	if err != nil {
		t.Fatalf("a certificate of the new CA is refused: %v", err)
	}
	if c.subject != "CN=new,O=Example" {
		t.Errorf("ClientSubject = %q", c.subject)
	}
	before.echo(t)
}

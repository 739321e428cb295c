package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/testutil"
)

// fixture is a TLS_CERTS_DIR with three pairs signed by one test CA:
// 00-default (IP 127.0.0.1, first by name), a (a.example.test) and wild
// (*.wild.example.test).
type fixture struct {
	ca   *testutil.CA
	dir  string
	reg  *prometheus.Registry
	logs *testutil.SyncBuffer
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	f := &fixture{ca: testutil.NewCA(t, "Portcullis Test CA"), dir: t.TempDir(), reg: prometheus.NewRegistry(), logs: &testutil.SyncBuffer{}}
	f.write(t, "00-default", testutil.LeafSpec{CN: "default", IPs: []net.IP{net.IPv4(127, 0, 0, 1)}})
	f.write(t, "a", testutil.LeafSpec{CN: "a", DNS: []string{"a.example.test"}})
	f.write(t, "wild", testutil.LeafSpec{CN: "wild", DNS: []string{"*.wild.example.test"}})
	return f
}

func (f *fixture) write(t *testing.T, name string, s testutil.LeafSpec) {
	t.Helper()
	c, k := f.ca.Leaf(t, s)
	writePair(t, f.dir, name, c, k)
}

func (f *fixture) options() Options {
	return Options{
		Dir:        f.dir,
		Log:        slog.New(slog.NewJSONHandler(f.logs, nil)),
		Registerer: f.reg,
	}
}

func (f *fixture) store(t *testing.T, o Options) *Store {
	t.Helper()
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// client returns a client configuration that trusts the test CA.
func (f *fixture) client(serverName string) *tls.Config {
	return &tls.Config{RootCAs: f.ca.Pool(), ServerName: serverName}
}

func TestHandshakeChoosesCertificateBySNI(t *testing.T) {
	tests := []struct {
		name       string
		serverName string
		insecure   bool // the default certificate does not name serverName
		want       string
		unmatched  float64
	}{
		{name: "exact", serverName: "a.example.test", want: "a"},
		{name: "exact, other case", serverName: "A.Example.TEST", want: "a"},
		{name: "wildcard", serverName: "x.wild.example.test", want: "wild"},
		{name: "no SNI for an IP address", serverName: "127.0.0.1", want: "default"},
		{name: "unknown name", serverName: "nope.example.test", insecure: true, want: "default", unmatched: 1},
		{name: "wildcard covers one label only", serverName: "a.b.wild.example.test", insecure: true, want: "default", unmatched: 1},
		{name: "wildcard does not cover its parent", serverName: "wild.example.test", insecure: true, want: "default", unmatched: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			addr := serve(t, f.store(t, f.options()).TLSConfig())
			cfg := f.client(tt.serverName)
			cfg.InsecureSkipVerify = tt.insecure
			c, err := dial(t, addr, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if got := c.presented(); got != tt.want {
				t.Errorf("server presented %q, want %q", got, tt.want)
			}
			if got := testutil.MetricValue(t, f.reg, "tls_sni_unmatched_total"); got != tt.unmatched {
				t.Errorf("tls_sni_unmatched_total = %v, want %v", got, tt.unmatched)
			}
		})
	}
}

// TestGetCertificate covers SNI values Go's client never sends (IP
// literals, a trailing dot), which other clients may.
func TestGetCertificate(t *testing.T) {
	f := newFixture(t)
	s := f.store(t, f.options())
	tests := []struct {
		serverName string
		want       string
		unmatched  float64
	}{
		{serverName: "", want: "default"},
		{serverName: "a.example.test.", want: "a"},
		{serverName: "X.Wild.Example.Test.", want: "wild"},
		{serverName: "127.0.0.1", want: "default"},
		{serverName: "::1", want: "default"},
		{serverName: ".wild.example.test", want: "default", unmatched: 1},
		{serverName: "example.test", want: "default", unmatched: 1},
	}
	before := 0.0
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			c, err := s.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.serverName})
			if err != nil {
				t.Fatal(err)
			}
			if got := c.Leaf.Subject.CommonName; got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			now := testutil.MetricValue(t, f.reg, "tls_sni_unmatched_total")
			if now-before != tt.unmatched {
				t.Errorf("tls_sni_unmatched_total grew by %v, want %v", now-before, tt.unmatched)
			}
			before = now
		})
	}
}

func TestSingleFileIsTheDefault(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	o.Dir = ""
	o.CertFile, o.KeyFile = filepath.Join(f.dir, "a.crt"), filepath.Join(f.dir, "a.key")
	addr := serve(t, f.store(t, o).TLSConfig())
	for _, name := range []string{"a.example.test", "other.example.test"} {
		cfg := f.client(name)
		cfg.InsecureSkipVerify = name != "a.example.test"
		c, err := dial(t, addr, cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := c.presented(); got != "a" {
			t.Errorf("%s: server presented %q, want a", name, got)
		}
	}
}

func TestNewRefuses(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture, o *Options)
		want  string
	}{
		{
			name: "both sources",
			setup: func(t *testing.T, f *fixture, o *Options) {
				o.CertFile, o.KeyFile = filepath.Join(f.dir, "a.crt"), filepath.Join(f.dir, "a.key")
			},
			want: "TLS_CERTS_DIR and TLS_CERT_FILE/TLS_KEY_FILE are both set",
		},
		{
			name:  "neither source",
			setup: func(t *testing.T, f *fixture, o *Options) { o.Dir = "" },
			want:  "no certificate: set TLS_CERT_FILE and TLS_KEY_FILE, or TLS_CERTS_DIR",
		},
		{
			name: "certificate without key",
			setup: func(t *testing.T, f *fixture, o *Options) {
				o.Dir, o.CertFile = "", filepath.Join(f.dir, "a.crt")
			},
			want: "TLS_CERT_FILE is set without TLS_KEY_FILE",
		},
		{
			name: "key not matching its certificate",
			setup: func(t *testing.T, f *fixture, o *Options) {
				_, k := f.ca.Leaf(t, testutil.LeafSpec{CN: "other", DNS: []string{"a.example.test"}})
				writeFile(t, filepath.Join(f.dir, "a.key"), k)
			},
			want: "TLS_CERTS_DIR: a.crt + a.key: tls: private key does not match public key",
		},
		{
			name: "certificate without its key",
			setup: func(t *testing.T, f *fixture, o *Options) {
				os.Remove(filepath.Join(f.dir, "a.key"))
			},
			want: "TLS_CERTS_DIR: a.crt: no matching a.key",
		},
		{
			name: "key without its certificate",
			setup: func(t *testing.T, f *fixture, o *Options) {
				os.Remove(filepath.Join(f.dir, "wild.crt"))
			},
			want: "TLS_CERTS_DIR: wild.key: no matching wild.crt",
		},
		{
			name:  "no pair",
			setup: func(t *testing.T, f *fixture, o *Options) { o.Dir = t.TempDir() },
			want:  "TLS_CERTS_DIR: no NAME.crt + NAME.key pair in",
		},
		{
			name: "missing file",
			setup: func(t *testing.T, f *fixture, o *Options) {
				o.Dir, o.CertFile, o.KeyFile = "", filepath.Join(f.dir, "none.crt"), filepath.Join(f.dir, "a.key")
			},
			want: "TLS_CERT_FILE/TLS_KEY_FILE: open /", // the path follows
		},
		{
			name: "not PEM",
			setup: func(t *testing.T, f *fixture, o *Options) {
				writeFile(t, filepath.Join(f.dir, "wild.crt"), []byte("not a certificate"))
			},
			want: "TLS_CERTS_DIR: wild.crt + wild.key: tls: failed to find any PEM data in certificate input",
		},
		{
			name:  "TLS 1.1",
			setup: func(t *testing.T, f *fixture, o *Options) { o.MinVersion = "1.1" },
			want:  `TLS_MIN_VERSION: want 1.2 or 1.3, got "1.1"`,
		},
		{
			name: "client CA without a mode",
			setup: func(t *testing.T, f *fixture, o *Options) {
				o.ClientCAFile = filepath.Join(f.dir, "a.crt")
			},
			want: "TLS_CLIENT_CA is set but TLS_CLIENT_AUTH is off",
		},
		{
			name:  "mode without a client CA",
			setup: func(t *testing.T, f *fixture, o *Options) { o.ClientAuth = "require" },
			want:  "TLS_CLIENT_AUTH=require needs TLS_CLIENT_CA",
		},
		{
			name:  "unknown mode",
			setup: func(t *testing.T, f *fixture, o *Options) { o.ClientAuth = "optional" },
			want:  `TLS_CLIENT_AUTH: want off, request or require, got "optional"`,
		},
		{
			name: "client CA file without a certificate",
			setup: func(t *testing.T, f *fixture, o *Options) {
				o.ClientCAFile, o.ClientAuth = filepath.Join(f.dir, "a.key"), "request"
			},
			want: "TLS_CLIENT_CA: no PEM certificate in",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			tt.setup(t, f, &o)
			_, err := New(o)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNewReportsEveryProblem(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, f *fixture, o *Options)
		want  []string
	}{
		{
			name:  "options",
			setup: func(t *testing.T, f *fixture, o *Options) { o.MinVersion, o.ClientAuth = "1.0", "require" },
			want:  []string{"TLS_MIN_VERSION", "TLS_CLIENT_AUTH=require needs TLS_CLIENT_CA"},
		},
		{
			name: "files",
			setup: func(t *testing.T, f *fixture, o *Options) {
				os.Remove(filepath.Join(f.dir, "a.key"))
				writeFile(t, filepath.Join(f.dir, "wild.crt"), []byte("not a certificate"))
			},
			want: []string{"a.crt: no matching a.key", "wild.crt + wild.key"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			tt.setup(t, f, &o)
			_, err := New(o)
			for _, want := range tt.want {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("New: %v, want it to mention %q", err, want)
				}
			}
		})
	}
}

func TestExpiredCertificateIsServedAndLogged(t *testing.T) {
	f := newFixture(t)
	o := f.options()
	clock := testutil.NewClock(time.Now().Add(48 * time.Hour)) // past every leaf's NotAfter
	o.Now = clock.Now
	s := f.store(t, o)
	if got := f.logs.CountMsg("TLS certificate expired; serving it until it is replaced"); got != 3 {
		t.Errorf("%d expiry warnings, want 3; logs:\n%s", got, f.logs)
	}
	if !strings.Contains(f.logs.String(), `"name":"a.example.test"`) || !strings.Contains(f.logs.String(), `"component":"tls"`) {
		t.Errorf("the warning names neither the certificate nor the component:\n%s", f.logs)
	}
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.test"})
	if c == nil || c.Leaf.Subject.CommonName != "a" {
		t.Fatalf("expired certificate not served: %v", c)
	}
	want := float64(c.Leaf.NotAfter.Unix())
	if got := testutil.SeriesValue(t, f.reg, "tls_certificate_expiry_timestamp_seconds", map[string]string{"name": "a.example.test"}); got != want {
		t.Errorf("expiry gauge = %v, want %v", got, want)
	}
	if got := testutil.SeriesValue(t, f.reg, "tls_certificate_expiry_timestamp_seconds", map[string]string{"name": "00-default.crt"}); got == 0 {
		t.Error("a certificate without DNS names has no expiry series under its file name")
	}
}

// TestCertificates: the dashboard, the monitor and /stats list what the
// expiry gauge carries: one entry per name (the longest-valid of two
// certificates sharing it), sorted by name, following reloads.
func TestCertificates(t *testing.T) {
	f := newFixture(t)
	day := 24 * time.Hour
	soon, later := time.Now().Add(10*day), time.Now().Add(90*day)
	f.write(t, "b-old", testutil.LeafSpec{CN: "b-old", DNS: []string{"b.example.test", "c.example.test"}, NotAfter: soon})
	f.write(t, "b-renewed", testutil.LeafSpec{CN: "b-renewed", DNS: []string{"b.example.test"}, NotAfter: later})
	s := f.store(t, f.options())

	leafOf := func(name string) time.Time {
		t.Helper()
		c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
		return c.Leaf.NotAfter
	}
	def, _ := s.GetCertificate(&tls.ClientHelloInfo{})
	want := []overview.Certificate{
		{Name: "*.wild.example.test", NotAfter: leafOf("x.wild.example.test")},
		{Name: "00-default.crt", NotAfter: def.Leaf.NotAfter},
		{Name: "a.example.test", NotAfter: leafOf("a.example.test")},
		{Name: "b.example.test", NotAfter: later.Truncate(time.Second)},
	}
	if got := s.Certificates(); !slices.EqualFunc(got, want, sameCert) {
		t.Errorf("Certificates() = %v, want %v", got, want)
	}

	os.Remove(filepath.Join(f.dir, "b-renewed.crt"))
	os.Remove(filepath.Join(f.dir, "b-renewed.key"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	want[3].NotAfter = soon.Truncate(time.Second)
	if got := s.Certificates(); !slices.EqualFunc(got, want, sameCert) {
		t.Errorf("after the renewed pair is removed, Certificates() = %v, want %v", got, want)
	}
}

func sameCert(a, b overview.Certificate) bool {
	return a.Name == b.Name && a.NotAfter.Equal(b.NotAfter)
}

func TestVersionsAndSuites(t *testing.T) {
	tests := []struct {
		name                 string
		minVersion           string
		clientMin, clientMax uint16   // 0: Go's defaults
		suites               []uint16 // the client's TLS 1.2 suites; nil: Go's defaults
		wantVersion          uint16   // 0: the handshake must fail
	}{
		{name: "1.3 refuses a 1.2 client", minVersion: "1.3", clientMax: tls.VersionTLS12},
		{name: "1.3 serves 1.3", minVersion: "1.3", wantVersion: tls.VersionTLS13},
		{name: "default refuses TLS 1.1", clientMin: tls.VersionTLS10, clientMax: tls.VersionTLS11},
		{name: "1.2 prefers 1.3", minVersion: "1.2", wantVersion: tls.VersionTLS13},
		{name: "1.2 serves 1.2", minVersion: "1.2", clientMax: tls.VersionTLS12, wantVersion: tls.VersionTLS12},
		{
			name:      "CBC suites refused",
			clientMax: tls.VersionTLS12,
			suites:    []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256},
		},
		{
			name:        "ChaCha20-Poly1305 served",
			clientMax:   tls.VersionTLS12,
			suites:      []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256},
			wantVersion: tls.VersionTLS12,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			o := f.options()
			o.MinVersion = tt.minVersion
			addr := serve(t, f.store(t, o).TLSConfig())
			cfg := f.client("a.example.test")
			cfg.MinVersion, cfg.MaxVersion, cfg.CipherSuites = tt.clientMin, tt.clientMax, tt.suites
			cfg.NextProtos = []string{"h2", "http/1.1"}
			c, err := dial(t, addr, cfg)
			if tt.wantVersion == 0 {
				if err == nil {
					st := c.ConnectionState()
					t.Fatalf("handshake succeeded with version %x, suite %s", st.Version, tls.CipherSuiteName(st.CipherSuite))
				}
				t.Logf("refused: %v", err)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			st := c.ConnectionState()
			if st.Version != tt.wantVersion {
				t.Errorf("version %x, want %x", st.Version, tt.wantVersion)
			}
			if st.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN %q, want h2", st.NegotiatedProtocol)
			}
		})
	}
}

func TestTLSConfigOffersOnlyForwardSecretAEADSuites(t *testing.T) {
	f := newFixture(t)
	cfg := f.store(t, f.options()).TLSConfig()
	insecure := tls.InsecureCipherSuites()
	for _, id := range cfg.CipherSuites {
		name := tls.CipherSuiteName(id)
		aead := strings.Contains(name, "_GCM_") || strings.Contains(name, "CHACHA20_POLY1305")
		if !strings.HasPrefix(name, "TLS_ECDHE_") || !aead || slices.ContainsFunc(insecure, func(s *tls.CipherSuite) bool { return s.ID == id }) {
			t.Errorf("suite %s offered", name)
		}
	}
	if cfg.CurvePreferences != nil {
		t.Errorf("CurvePreferences = %v: the toolchain's defaults (post-quantum first) should apply", cfg.CurvePreferences)
	}
	if !slices.Equal(cfg.NextProtos, []string{"h2", "http/1.1"}) {
		t.Errorf("NextProtos = %v", cfg.NextProtos)
	}
	if cfg.ClientAuth != tls.NoClientCert || cfg.GetConfigForClient != nil {
		t.Error("client authentication is on without TLS_CLIENT_AUTH")
	}
}

func TestClientSubjectWithoutVerifiedChain(t *testing.T) {
	tests := []struct {
		name  string
		state *tls.ConnectionState
	}{
		{name: "no TLS", state: nil},
		{name: "no client certificate", state: &tls.ConnectionState{}},
		{name: "certificate sent but not verified", state: &tls.ConnectionState{PeerCertificates: []*x509.Certificate{{}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ClientSubject(tt.state); got != "" {
				t.Errorf("ClientSubject = %q, want empty", got)
			}
		})
	}
}

package acme

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

// issueTimeout bounds one issuance against Pebble (which validates at once):
// it takes well under a second; the margin is for a loaded -race run.
const issueTimeout = 60 * time.Second

// listen binds an ephemeral loopback port, as the gateway binds its
// listeners before it starts managing certificates.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func portOf(ln net.Listener) int { return ln.Addr().(*net.TCPAddr).Port }

// serveTLS serves "ok" over HTTPS on ln with the Manager's TLS configuration.
func serveTLS(t *testing.T, ln net.Listener, m *Manager) {
	t.Helper()
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			io.WriteString(w, "ok")
		}),
		TLSConfig: m.TLSConfig(),
		ErrorLog:  discardLog,
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
}

// serveHTTP serves h in plain HTTP on ln.
func serveHTTP(t *testing.T, ln net.Listener, h http.Handler) {
	t.Helper()
	srv := &http.Server{Handler: h, ErrorLog: discardLog}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
}

// discardLog silences the handshake errors of clients that probe before a
// certificate exists.
var discardLog = slog.NewLogLogger(slog.DiscardHandler, slog.LevelError)

// waitForCert dials addr as a browser would (SNI name, verifying the chain
// against roots) until the handshake succeeds, and returns the leaf.
func waitForCert(t *testing.T, addr, name string, roots *x509.CertPool, logs *testutil.SyncBuffer) *x509.Certificate {
	t.Helper()
	deadline := time.Now().Add(issueTimeout)
	var lastErr error
	for time.Now().Before(deadline) {
		d := &net.Dialer{Timeout: 2 * time.Second}
		conn, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{
			ServerName: name,
			RootCAs:    roots,
			NextProtos: []string{"h2", "http/1.1"},
		})
		if err == nil {
			st := conn.ConnectionState()
			conn.Close()
			if st.NegotiatedProtocol != "h2" {
				t.Errorf("ALPN chose %q, want h2", st.NegotiatedProtocol)
			}
			if len(st.VerifiedChains) == 0 {
				t.Fatal("handshake succeeded without a verified chain")
			}
			return st.PeerCertificates[0]
		}
		lastErr = err
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("no verified certificate for %s on %s within %v: %v\nlog:\n%s", name, addr, issueTimeout, lastErr, tail(logs.String()))
	return nil
}

func tail(s string) string {
	if len(s) > 6000 {
		return "…" + s[len(s)-6000:]
	}
	return s
}

func serialHex(c *x509.Certificate) string { return hex.EncodeToString(c.SerialNumber.Bytes()) }

// newTestManager is New with a debug JSON log into logs and a registry of
// its own, failing the test on an error.
func newTestManager(t *testing.T, ctx context.Context, o Options) (*Manager, *testutil.SyncBuffer, *prometheus.Registry) {
	t.Helper()
	logs := &testutil.SyncBuffer{}
	reg := prometheus.NewRegistry()
	o.Log = telemetry.NewLogger(logs, slog.LevelDebug)
	o.Registerer = reg
	m, err := New(ctx, o)
	if err != nil {
		t.Fatal(err)
	}
	return m, logs, reg
}

func TestObtainsWithTLSALPN01(t *testing.T) {
	t.Parallel()
	const domain = "alpn.portcullis.test"
	ctx := t.Context()
	ln := listen(t)
	pebble := testsvc.Pebble(t, testsvc.PebbleOptions{TLSPort: portOf(ln)})
	storage := t.TempDir()
	m, logs, reg := newTestManager(t, ctx, Options{
		Domains:              []string{domain},
		Email:                "ops@portcullis.test",
		CA:                   pebble.DirectoryURL,
		CARoot:               pebble.CARootFile,
		Storage:              storage,
		TLSPort:              portOf(ln),
		ListenHost:           "127.0.0.1",
		DisableHTTPChallenge: true,
	})
	serveTLS(t, ln, m)
	start := time.Now()
	if err := m.Manage(ctx); err != nil {
		t.Fatal(err)
	}
	leaf := waitForCert(t, ln.Addr().String(), domain, pebble.IssuingRootPool(t), logs)
	t.Logf("certificate obtained %v after Manage", time.Since(start).Round(time.Millisecond))

	if len(leaf.DNSNames) != 1 || leaf.DNSNames[0] != domain {
		t.Errorf("certificate names %v, want [%s]", leaf.DNSNames, domain)
	}
	if got := pebble.Issued(); len(got) != 1 || got[0] != serialHex(leaf) {
		t.Errorf("Pebble issued %v, want exactly the served %s", got, serialHex(leaf))
	}
	// The validation came through the listener's TLS handshake, and
	// certmagic's line about it came through the slog adapter.
	if !strings.Contains(logs.String(), `"msg":"served key authentication certificate"`) ||
		!strings.Contains(logs.String(), `"challenge":"tls-alpn-01"`) {
		t.Errorf("no TLS-ALPN-01 answer in the log:\n%s", tail(logs.String()))
	}
	assertObtained(t, reg, logs, domain, leaf)
	// Key and certificate are in the storage directory, the key private.
	keys, _ := filepath.Glob(filepath.Join(storage, "certificates", "*", domain, domain+".key"))
	if len(keys) != 1 {
		t.Fatalf("no key for %s under %s", domain, storage)
	}
	if fi, err := os.Stat(keys[0]); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("key file %s: %v, mode %v; want no access for group and others", keys[0], err, fi.Mode())
	}

	// A renewal (forced here; the maintenance loop does it when a third of
	// the lifetime is left) is counted apart from new certificates.
	if err := m.cfg.RenewCertSync(ctx, domain, true); err != nil {
		t.Fatal(err)
	}
	if got := testutil.MetricValue(t, reg, "acme_certificates_renewed_total"); got != 1 {
		t.Errorf("acme_certificates_renewed_total = %v after a renewal, want 1", got)
	}
	if got := testutil.MetricValue(t, reg, "acme_certificates_obtained_total"); got != 1 {
		t.Errorf("acme_certificates_obtained_total = %v after a renewal, want still 1", got)
	}
	if n := logs.CountMsg("certificate renewed"); n != 1 {
		t.Errorf(`%d "certificate renewed" lines, want 1`, n)
	}
	if got := pebble.Issued(); len(got) != 2 {
		t.Errorf("Pebble issued %v, want the first certificate and its renewal", got)
	}
}

func TestObtainsWithHTTP01(t *testing.T) {
	t.Parallel()
	const domain = "http.portcullis.test"
	ctx := t.Context()
	httpLn, tlsLn := listen(t), listen(t)
	pebble := testsvc.Pebble(t, testsvc.PebbleOptions{HTTPPort: portOf(httpLn)})
	m, logs, reg := newTestManager(t, ctx, Options{
		Domains:                 []string{domain},
		CA:                      pebble.DirectoryURL,
		CARoot:                  pebble.CARootFile,
		Storage:                 t.TempDir(),
		HTTPPort:                portOf(httpLn),
		TLSPort:                 portOf(tlsLn),
		ListenHost:              "127.0.0.1",
		DisableTLSALPNChallenge: true,
	})
	var passed atomic.Int64
	serveHTTP(t, httpLn, m.HTTPChallenge(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		passed.Add(1)
		w.WriteHeader(http.StatusTeapot)
	})))
	serveTLS(t, tlsLn, m)
	if err := m.Manage(ctx); err != nil {
		t.Fatal(err)
	}
	leaf := waitForCert(t, tlsLn.Addr().String(), domain, pebble.IssuingRootPool(t), logs)

	if got := pebble.Issued(); len(got) != 1 || got[0] != serialHex(leaf) {
		t.Errorf("Pebble issued %v, want exactly the served %s", got, serialHex(leaf))
	}
	if !strings.Contains(logs.String(), `"challenge":"http-01"`) {
		t.Errorf("no HTTP-01 answer in the log:\n%s", tail(logs.String()))
	}
	if n := passed.Load(); n != 0 {
		t.Errorf("%d validation requests reached the next handler", n)
	}
	assertObtained(t, reg, logs, domain, leaf)
	if got := m.Certificates(); len(got) != 1 || got[0].Name != domain || !got[0].NotAfter.Equal(leaf.NotAfter) {
		t.Errorf("Certificates() = %v, want %s until %v", got, domain, leaf.NotAfter)
	}
}

// assertObtained checks the metrics and our own log line of one new
// certificate for domain.
func assertObtained(t *testing.T, reg *prometheus.Registry, logs *testutil.SyncBuffer, domain string, leaf *x509.Certificate) {
	t.Helper()
	// The obtained event follows the save that made the certificate
	// servable by a moment.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.MetricValue(t, reg, "acme_certificates_obtained_total") == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	for name, want := range map[string]float64{
		"acme_certificates_obtained_total": 1,
		"acme_certificates_renewed_total":  0,
		"acme_certificate_failures_total":  0,
	} {
		if got := testutil.MetricValue(t, reg, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	got := testutil.SeriesValue(t, reg, "acme_certificate_expiry_timestamp_seconds", map[string]string{"domain": domain})
	if int64(got) != leaf.NotAfter.Unix() {
		t.Errorf("acme_certificate_expiry_timestamp_seconds{domain=%q} = %v, want %d", domain, got, leaf.NotAfter.Unix())
	}
	if n := logs.CountMsg("certificate obtained"); n != 1 {
		t.Errorf(`%d "certificate obtained" lines, want 1`, n)
	}
	if !strings.Contains(logs.String(), `"component":"acme"`) {
		t.Error(`log lines lack "component":"acme"`)
	}
}

// roundRobin hands each connection accepted on front to the next of backs,
// as a load balancer in front of replicas does; it stops with front.
func roundRobin(front net.Listener, backs ...string) {
	var n atomic.Uint64
	go func() {
		for {
			c, err := front.Accept()
			if err != nil {
				return
			}
			back := backs[(n.Add(1)-1)%uint64(len(backs))]
			go func() {
				defer c.Close()
				b, err := net.Dial("tcp", back)
				if err != nil {
					return
				}
				defer b.Close()
				go func() { io.Copy(b, c); b.Close() }()
				io.Copy(c, b)
			}()
		}
	}()
}

func TestReplicasShareOneCertificateThroughRedis(t *testing.T) {
	t.Parallel()
	const domain = "gw.portcullis.test"
	ctx := t.Context()
	addr, _ := testsvc.Redis(t)
	front := listen(t) // the TLS port the CA validates on, before both replicas
	pebble := testsvc.Pebble(t, testsvc.PebbleOptions{TLSPort: portOf(front)})

	// One replica in this process, one in a process of its own.
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	local, localLogs, reg := newTestManager(t, ctx, Options{
		Domains:              []string{domain},
		CA:                   pebble.DirectoryURL,
		CARoot:               pebble.CARootFile,
		Redis:                rdb,
		KeyPrefix:            "test:acme:",
		TLSPort:              portOf(front),
		ListenHost:           "127.0.0.1",
		DisableHTTPChallenge: true,
	})
	localLn := listen(t)
	serveTLS(t, localLn, local)
	remote := startReplica(t, replicaConfig{
		Domain:    domain,
		CA:        pebble.DirectoryURL,
		CARoot:    pebble.CARootFile,
		Redis:     addr,
		KeyPrefix: "test:acme:",
		TLSPort:   portOf(front),
	})
	// Pebble validates from three vantage points at once, and every one
	// must succeed: alternating them over the replicas makes the one that
	// did not order answer at least one.
	roundRobin(front, localLn.Addr().String(), remote.addr)

	// Both replicas boot at once.
	remote.start()
	if err := local.Manage(ctx); err != nil {
		t.Fatal(err)
	}

	roots := pebble.IssuingRootPool(t)
	localLeaf := waitForCert(t, localLn.Addr().String(), domain, roots, localLogs)
	remoteLeaf := waitForCert(t, remote.addr, domain, roots, remote.logs)
	if serialHex(localLeaf) != serialHex(remoteLeaf) {
		t.Fatalf("replicas serve different certificates: %s and %s", serialHex(localLeaf), serialHex(remoteLeaf))
	}
	if got := pebble.Issued(); len(got) != 1 || got[0] != serialHex(localLeaf) {
		t.Errorf("Pebble issued %v, want exactly the shared %s", got, serialHex(localLeaf))
	}
	if f := testutil.MetricValue(t, reg, "acme_certificate_failures_total"); f != 0 {
		t.Errorf("acme_certificate_failures_total = %v, want 0", f)
	}
	// Exactly one replica ordered; the other waited on the lock, loaded
	// what the first stored, and answered a validation of the first's
	// challenge from Redis.
	localOrdered := testutil.MetricValue(t, reg, "acme_certificates_obtained_total") == 1
	remoteOrdered := remote.logs.CountMsg("certificate obtained") == 1
	if localOrdered == remoteOrdered {
		t.Fatalf("ordered: this process %v, the other %v; want exactly one\nremote log:\n%s", localOrdered, remoteOrdered, tail(remote.logs.String()))
	}
	waiter := remote.logs
	if remoteOrdered {
		waiter = localLogs
	}
	if waiter.CountMsg("certificate already exists in storage") != 1 || waiter.CountMsg("certificate obtained") != 0 {
		t.Errorf("the replica that did not order did not load the stored certificate:\n%s", tail(waiter.String()))
	}
	if !strings.Contains(waiter.String(), `"challenge":"tls-alpn-01"`) || !strings.Contains(waiter.String(), `"distributed":true`) {
		t.Errorf("the replica that did not order answered no validation from Redis:\n%s", tail(waiter.String()))
	}

	// Everything lives in Redis under the prefix; no lock is left.
	keys, err := rdb.Keys(ctx, "*").Result()
	if err != nil {
		t.Fatal(err)
	}
	var certs int
	for _, k := range keys {
		if !strings.HasPrefix(k, "test:acme:") {
			t.Errorf("key %q outside the prefix", k)
		}
		if strings.HasPrefix(k, "test:acme:lock:") {
			t.Errorf("lock %q still held", k)
		}
		if strings.HasSuffix(k, "/"+domain+".crt") {
			certs++
		}
	}
	if certs != 1 {
		t.Errorf("%d stored certificates for %s in Redis, want 1 (keys %v)", certs, domain, keys)
	}
}

func TestUntrustedCAFailsAndIsCounted(t *testing.T) {
	t.Parallel()
	ln := listen(t)
	pebble := testsvc.Pebble(t, testsvc.PebbleOptions{TLSPort: portOf(ln)})
	// ACME_CA_ROOT is the only trust: a root the directory's certificate
	// does not chain to (here Pebble's issuing root) must fail the order.
	wrongRoot := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(wrongRoot, pebble.IssuingRoot(t), 0o600); err != nil {
		t.Fatal(err)
	}
	m, logs, reg := newTestManager(t, t.Context(), Options{
		Domains:              []string{"untrusted.portcullis.test"},
		CA:                   pebble.DirectoryURL,
		CARoot:               wrongRoot,
		Storage:              t.TempDir(),
		TLSPort:              portOf(ln),
		ListenHost:           "127.0.0.1",
		DisableHTTPChallenge: true,
	})
	serveTLS(t, ln, m)
	if err := m.Manage(t.Context()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(issueTimeout)
	for testutil.MetricValue(t, reg, "acme_certificate_failures_total") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no failure counted:\n%s", tail(logs.String()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	if logs.CountMsg("certificate attempt failed") == 0 || !strings.Contains(logs.String(), "certificate signed by unknown authority") {
		t.Errorf("the failure is not logged with its cause:\n%s", tail(logs.String()))
	}
	if got := testutil.MetricValue(t, reg, "acme_certificates_obtained_total"); got != 0 {
		t.Errorf("acme_certificates_obtained_total = %v, want 0", got)
	}
	if got := pebble.Issued(); len(got) != 0 {
		t.Errorf("Pebble issued %v", got)
	}
}

func TestNewRefusesBadOptionsNamingTheVariable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	aFile := filepath.Join(dir, "file")
	if err := os.WriteFile(aFile, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	ok := Options{Domains: []string{"gw.portcullis.test"}, Storage: dir}
	tests := []struct {
		name   string
		change func(*Options)
		want   []string
	}{
		{name: "no domains", change: func(o *Options) { o.Domains = nil }, want: []string{"ACME_DOMAINS"}},
		{name: "wildcard", change: func(o *Options) { o.Domains = []string{"*.portcullis.test"} }, want: []string{"ACME_DOMAINS", "DNS-01"}},
		{name: "IP address", change: func(o *Options) { o.Domains = []string{"192.0.2.1"} }, want: []string{"ACME_DOMAINS", "IP address"}},
		{name: "space", change: func(o *Options) { o.Domains = []string{"gw portcullis.test"} }, want: []string{"ACME_DOMAINS"}},
		{name: "empty label", change: func(o *Options) { o.Domains = []string{"gw..test"} }, want: []string{"ACME_DOMAINS"}},
		{name: "hyphen at a label's end", change: func(o *Options) { o.Domains = []string{"gw-.test"} }, want: []string{"ACME_DOMAINS"}},
		{name: "non-ASCII", change: func(o *Options) { o.Domains = []string{"bücher.test"} }, want: []string{"ACME_DOMAINS", "xn--"}},
		{name: "plain http CA", change: func(o *Options) { o.CA = "http://ca.portcullis.test/dir" }, want: []string{"ACME_CA"}},
		{name: "CA not a URL", change: func(o *Options) { o.CA = "ca.portcullis.test" }, want: []string{"ACME_CA"}},
		{name: "CA root missing", change: func(o *Options) { o.CARoot = filepath.Join(dir, "missing.pem") }, want: []string{"ACME_CA_ROOT"}},
		{name: "CA root not PEM", change: func(o *Options) { o.CARoot = notPEM }, want: []string{"ACME_CA_ROOT", "no PEM certificate"}},
		{name: "email", change: func(o *Options) { o.Email = "ops at portcullis" }, want: []string{"ACME_EMAIL"}},
		{name: "storage is a file", change: func(o *Options) { o.Storage = aFile }, want: []string{"ACME_STORAGE"}},
		{name: "no challenge", change: func(o *Options) { o.DisableHTTPChallenge, o.DisableTLSALPNChallenge = true, true }, want: []string{"no challenge"}},
		{name: "port", change: func(o *Options) { o.TLSPort = 70000 }, want: []string{"TLS port"}},
		{
			name: "every problem at once",
			change: func(o *Options) {
				o.Domains, o.CA, o.CARoot, o.Email = []string{"*.x.test"}, "http://x", notPEM, "x"
			},
			want: []string{"ACME_DOMAINS", "ACME_CA:", "ACME_CA_ROOT", "ACME_EMAIL"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := ok
			tt.change(&o)
			_, err := New(t.Context(), o)
			if err == nil {
				t.Fatal("New accepted the options")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestNewNormalisesDomainsAndDefaults(t *testing.T) {
	t.Parallel()
	storage := filepath.Join(t.TempDir(), "acme", "nested")
	m, err := New(t.Context(), Options{
		Domains: []string{" GW.Portcullis.test. ", "gw.portcullis.test", "api.portcullis.test"},
		Storage: storage,
	})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"gw.portcullis.test", "api.portcullis.test"}; strings.Join(m.domains, ",") != strings.Join(want, ",") {
		t.Errorf("domains %v, want %v", m.domains, want)
	}
	if m.issuer.CA != "https://acme-v02.api.letsencrypt.org/directory" {
		t.Errorf("default CA %q, want Let's Encrypt's production directory", m.issuer.CA)
	}
	if fi, err := os.Stat(storage); err != nil || !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("storage %s not created 0700: %v %v", storage, fi, err)
	}
	c := m.TLSConfig()
	if strings.Join(c.NextProtos, ",") != "h2,http/1.1,acme-tls/1" || c.MinVersion != tls.VersionTLS12 || c.GetCertificate == nil {
		t.Errorf("TLSConfig: NextProtos %v, MinVersion %x, GetCertificate set %v", c.NextProtos, c.MinVersion, c.GetCertificate != nil)
	}
}

// TestCertificatesListsCachedDomains: the operator views list the domains
// that have a certificate, with the latest expiry, sorted; a domain still
// waiting for one is left out.
func TestCertificatesListsCachedDomains(t *testing.T) {
	t.Parallel()
	m, err := New(t.Context(), Options{Domains: []string{"b.portcullis.test", "a.portcullis.test", "c.portcullis.test"}, Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Certificates(); len(got) != 0 {
		t.Errorf("before any certificate: %v", got)
	}
	ca := testutil.NewCA(t, "Test CA")
	day := 24 * time.Hour
	add := func(name string, notAfter time.Time) {
		t.Helper()
		c, k := ca.Leaf(t, testutil.LeafSpec{CN: name, DNS: []string{name}, NotAfter: notAfter})
		if _, err := m.cfg.CacheUnmanagedCertificatePEMBytes(t.Context(), c, k, nil); err != nil {
			t.Fatal(err)
		}
	}
	aOld, aNew, b := time.Now().Add(5*day), time.Now().Add(60*day), time.Now().Add(30*day)
	add("b.portcullis.test", b)
	add("a.portcullis.test", aOld)
	add("a.portcullis.test", aNew) // a renewal next to the old one
	add("other.test", b)           // not an ACME domain
	got := m.Certificates()
	want := []overview.Certificate{
		{Name: "a.portcullis.test", NotAfter: aNew.Truncate(time.Second)},
		{Name: "b.portcullis.test", NotAfter: b.Truncate(time.Second)},
	}
	if len(got) != len(want) {
		t.Fatalf("Certificates() = %v, want %v", got, want)
	}
	for i := range want {
		if got[i].Name != want[i].Name || !got[i].NotAfter.Equal(want[i].NotAfter) {
			t.Errorf("Certificates()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}

func TestHTTPChallengeOwnsItsPath(t *testing.T) {
	t.Parallel()
	m, err := New(t.Context(), Options{Domains: []string{"gw.portcullis.test"}, Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	var reached []string
	var mu sync.Mutex
	h := m.HTTPChallenge(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		reached = append(reached, r.URL.Path)
		mu.Unlock()
		w.WriteHeader(http.StatusPermanentRedirect)
	}))
	ln := listen(t)
	serveHTTP(t, ln, h)
	tests := []struct {
		host, path string
		want       int
	}{
		{host: "gw.portcullis.test", path: "/", want: http.StatusPermanentRedirect},
		{host: "other.test", path: "/.well-known/other", want: http.StatusPermanentRedirect},
		{host: "gw.portcullis.test", path: "/.well-known/acme-challenge/unknown-token", want: http.StatusNotFound},
		{host: "GW.portcullis.test.:80", path: "/.well-known/acme-challenge/unknown-token", want: http.StatusNotFound},
		{host: "other.test", path: "/.well-known/acme-challenge/unknown-token", want: http.StatusNotFound},
		{host: "gw.portcullis.test", path: "/.well-known/acme-challenge/", want: http.StatusNotFound},
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tt := range tests {
		req, err := http.NewRequest(http.MethodGet, "http://"+ln.Addr().String()+tt.path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Host = tt.host
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("GET %s (Host %s): %d, want %d", tt.path, tt.host, resp.StatusCode, tt.want)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(reached, ",") != "/,/.well-known/other" {
		t.Errorf("next saw %v, want only the two non-challenge paths", reached)
	}
}

func TestTLSALPNChallengeOnlyForManagedNames(t *testing.T) {
	t.Parallel()
	m, err := New(t.Context(), Options{Domains: []string{"gw.portcullis.test"}, Storage: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t)
	serveTLS(t, ln, m)
	for _, name := range []string{"other.test", "gw.portcullis.test"} {
		conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{
			ServerName:         name,
			NextProtos:         []string{"acme-tls/1"},
			InsecureSkipVerify: true, // only whether a certificate comes matters
		})
		if err == nil {
			conn.Close()
			t.Errorf("a challenge handshake for %s with no challenge succeeded", name)
		}
	}
	if m.manages("other.test") || !m.manages("GW.Portcullis.Test.") || !m.manages("gw.portcullis.test:443") {
		t.Error("manages() does not normalise names")
	}
}

func TestManagerStopsWithItsContext(t *testing.T) {
	t.Parallel()
	logs := &testutil.SyncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	_, err := New(ctx, Options{
		Domains: []string{"gw.portcullis.test"},
		Storage: t.TempDir(),
		Log:     telemetry.NewLogger(logs, slog.LevelDebug),
	})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	deadline := time.Now().Add(5 * time.Second)
	for logs.CountMsg("stopped background certificate maintenance") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("maintenance did not stop with the context:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
	"github.com/prometheus/client_golang/prometheus"
)

// manyCerts returns a store whose snapshot holds n certificates, host-I
// and *.wild-I under example.test, all over one key and one DER: the lookup
// reads only the names.
func manyCerts(tb testing.TB, n int) *Store {
	tb.Helper()
	c := testutil.NewCA(tb, "Bench CA")
	certPEM, keyPEM := c.Leaf(tb, testutil.LeafSpec{CN: "bench", DNS: []string{"bench.example.test"}})
	base, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		tb.Fatal(err)
	}
	s := &Store{
		log:       slog.New(slog.DiscardHandler),
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "tls_sni_unmatched_total"}),
	}
	snap := &snapshot{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for i := range n {
		cert := base
		cert.Leaf = &x509.Certificate{
			DNSNames: []string{fmt.Sprintf("host-%d.example.test", i), fmt.Sprintf("*.wild-%d.example.test", i)},
			NotAfter: time.Now().Add(time.Hour),
		}
		snap.add(&cert, fmt.Sprintf("c%04d.crt", i))
	}
	s.snap.Store(snap)
	return s
}

var benchHellos = map[string]*tls.ClientHelloInfo{
	"exact":     {ServerName: "host-500.example.test"},
	"wildcard":  {ServerName: "api.wild-500.example.test"},
	"mixedcase": {ServerName: "Host-500.Example.Test"},
	"unmatched": {ServerName: "nope.example.test"},
	"none":      {},
}

func BenchmarkGetCertificate(b *testing.B) {
	s := manyCerts(b, 1000)
	for _, name := range []string{"exact", "wildcard", "mixedcase", "unmatched", "none"} {
		hello := benchHellos[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if c, _ := s.GetCertificate(hello); c == nil {
					b.Fatal("no certificate")
				}
			}
		})
	}
}

// TestGetCertificateDoesNotAllocate pins the handshake path's lookup to map
// reads: lower-case names, the usual case, cost no allocation.
func TestGetCertificateDoesNotAllocate(t *testing.T) {
	s := manyCerts(t, 1000)
	for _, name := range []string{"exact", "wildcard", "none"} {
		hello := benchHellos[name]
		if n := testing.AllocsPerRun(100, func() { _, _ = s.GetCertificate(hello) }); n != 0 {
			t.Errorf("%s: %v allocations per lookup, want 0", name, n)
		}
	}
}

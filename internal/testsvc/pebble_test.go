package testsvc

import (
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/url"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

func TestPebbleServesADirectoryOnLoopback(t *testing.T) {
	t.Parallel()
	p := Pebble(t, PebbleOptions{})
	u, err := url.Parse(p.DirectoryURL)
	if err != nil || u.Scheme != "https" || u.Hostname() != "127.0.0.1" || u.Path != "/dir" {
		t.Fatalf("DirectoryURL = %q, want https://127.0.0.1:PORT/dir", p.DirectoryURL)
	}
	if m, _ := url.Parse(p.ManagementURL); m == nil || m.Hostname() != "127.0.0.1" {
		t.Fatalf("ManagementURL = %q, want a 127.0.0.1 address", p.ManagementURL)
	}
	// The directory is reached over HTTPS verified against CARootPEM alone.
	resp, err := p.client.Get(p.DirectoryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var dir map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&dir); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"newNonce", "newAccount", "newOrder"} {
		if _, ok := dir[k].(string); !ok {
			t.Errorf("directory has no %s: %v", k, dir)
		}
	}
	if b, err := os.ReadFile(p.CARootFile); err != nil || string(b) != string(p.CARootPEM) {
		t.Errorf("CARootFile %s does not hold CARootPEM (%v)", p.CARootFile, err)
	}
	if got := p.Issued(); len(got) != 0 {
		t.Errorf("Issued() = %v before any order", got)
	}
}

func TestPebbleIssuingRootIsFreshPerServer(t *testing.T) {
	t.Parallel()
	a, b := Pebble(t, PebbleOptions{}), Pebble(t, PebbleOptions{})
	if a.DirectoryURL == b.DirectoryURL {
		t.Fatalf("two Pebbles share %s", a.DirectoryURL)
	}
	ra, rb := parseRoot(t, a.IssuingRoot(t)), parseRoot(t, b.IssuingRoot(t))
	if !ra.IsCA || ra.Equal(rb) {
		t.Fatalf("issuing roots: CA=%v, equal=%v; want two distinct CA certificates", ra.IsCA, ra.Equal(rb))
	}
	// The directory's HTTPS root is Pebble's fixed test root, not the issuer.
	if parseRoot(t, a.CARootPEM).Equal(ra) {
		t.Fatal("CARootPEM is the issuing root")
	}
	_ = a.IssuingRootPool(t)
}

func TestPebbleDNSResolvesEveryNameToLoopback(t *testing.T) {
	t.Parallel()
	_, dnsBin, _ := pebbleFiles(t)
	addr, stop, err := startChallTestSrv(dnsBin)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	if host, _, _ := net.SplitHostPort(addr); host != "127.0.0.1" {
		t.Fatalf("DNS address %s is not on 127.0.0.1", addr)
	}
	if err := resolvesToLoopback(addr); err != nil {
		t.Fatal(err)
	}
	stop()
	stop() // twice is fine
	if err := resolvesToLoopback(addr); err == nil {
		t.Fatal("DNS answered after stop")
	}
}

// fatalRecorder stands in for a test: Fatalf records the message and ends
// the goroutine, as testing.T's does.
type fatalRecorder struct {
	testing.TB
	mu  sync.Mutex
	msg string
}

func (r *fatalRecorder) Helper() {}

func (r *fatalRecorder) Fatalf(format string, args ...any) {
	r.mu.Lock()
	r.msg = fmt.Sprintf(format, args...)
	r.mu.Unlock()
	runtime.Goexit()
}

func TestPebbleMissingBinaryFailsWithTheFix(t *testing.T) {
	// Not parallel: t.Setenv.
	t.Setenv("PORTCULLIS_PEBBLE", t.TempDir())
	r := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Pebble(r, PebbleOptions{})
	}()
	<-done
	if !strings.Contains(r.msg, "make test-deps") || !strings.Contains(r.msg, "build-pebble.sh") {
		t.Fatalf("failure message %q does not say to run make test-deps", r.msg)
	}
}

func parseRoot(t *testing.T, b []byte) *x509.Certificate {
	t.Helper()
	block, _ := pem.Decode(b)
	if block == nil {
		t.Fatalf("no PEM block in %q", b)
	}
	c, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

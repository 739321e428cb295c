package testsvc

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// pebbleVersion is the Pebble that scripts/build-pebble.sh builds and
// caches (pinned in tools/go.mod).
const pebbleVersion = "v2.10.3"

// pebbleDir is where scripts/build-pebble.sh caches Pebble, its DNS server
// and its test certificates; $PORTCULLIS_PEBBLE names another such directory.
func pebbleDir() string {
	if p := os.Getenv("PORTCULLIS_PEBBLE"); p != "" {
		return p
	}
	return filepath.Join(toolsCache(), "pebble-"+pebbleVersion)
}

// PebbleOptions says where the code under test answers challenges. Pebble
// resolves every name to 127.0.0.1 and validates there.
type PebbleOptions struct {
	// HTTPPort is the port Pebble sends HTTP-01 requests to, TLSPort the one
	// it makes TLS-ALPN-01 handshakes with: the ports of the listeners under
	// test (bind them first, on 127.0.0.1:0, and pass their ports). Zero
	// means a port nothing listens on, so that challenge fails.
	HTTPPort, TLSPort int
}

// PebbleServer is a running private Pebble.
type PebbleServer struct {
	// DirectoryURL is the ACME directory, https://127.0.0.1:PORT/dir (ACME_CA).
	DirectoryURL string
	// CARootFile is a PEM file of the root that the directory's own HTTPS
	// certificate chains to (ACME_CA_ROOT); CARootPEM is its content.
	CARootFile string
	CARootPEM  []byte
	// ManagementURL is Pebble's management interface (same HTTPS root).
	ManagementURL string

	client *http.Client
	out    *testutil.SyncBuffer
}

// issuedLine is Pebble's log line for each certificate it issues; the
// serial is the hex of the serial number's big-endian bytes.
var issuedLine = regexp.MustCompile(`Issued certificate serial ([0-9a-f]+) for order`)

// Pebble starts a private Pebble ACME server and a pebble-challtestsrv DNS
// server that answers every A query with 127.0.0.1 (and AAAA with nothing),
// all on ephemeral 127.0.0.1 ports, and stops both in t.Cleanup. Pebble
// validates at once (PEBBLE_VA_NOSLEEP=1), never rejects a good nonce
// (PEBBLE_WFE_NONCEREJECT=0) and asks clients for no Retry-After pause, so
// an issuance takes well under a second. Its issuing root is generated at
// each start: fetch it with IssuingRoot. The binaries come from
// scripts/build-pebble.sh; when they are missing the test fails (it never
// skips) and says to run make test-deps.
func Pebble(t testing.TB, o PebbleOptions) *PebbleServer {
	t.Helper()
	bin, dnsBin, certs := pebbleFiles(t)
	rootFile := filepath.Join(certs, "pebble.minica.pem")
	rootPEM, err := os.ReadFile(rootFile)
	if err != nil {
		fatalf(t, "pebble: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(rootPEM) {
		fatalf(t, "pebble: no certificate in %s", rootFile)
	}
	client := &http.Client{
		Timeout: 5 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig: &tls.Config{RootCAs: pool},
		},
	}
	t.Cleanup(client.CloseIdleConnections)
	for _, p := range []*int{&o.HTTPPort, &o.TLSPort} {
		if *p == 0 {
			if *p, err = freePort(); err != nil {
				fatalf(t, "pebble: %v", err)
			}
		}
	}

	tmp := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		dnsAddr, stopDNS, err := startChallTestSrv(dnsBin)
		if err != nil {
			lastErr = err
			continue
		}
		p, stop, err := startPebble(bin, certs, tmp, dnsAddr, o, client)
		if err != nil {
			stopDNS()
			lastErr = err
			continue
		}
		t.Cleanup(stopDNS)
		t.Cleanup(stop)
		p.CARootFile, p.CARootPEM = rootFile, rootPEM
		return p
	}
	fatalf(t, "starting Pebble: %v", lastErr)
	return nil
}

// pebbleFiles returns the paths of Pebble, pebble-challtestsrv and the
// certificates directory, failing the test when any is missing.
func pebbleFiles(t testing.TB) (bin, dnsBin, certs string) {
	t.Helper()
	dir := pebbleDir()
	bin, dnsBin = filepath.Join(dir, "pebble"), filepath.Join(dir, "pebble-challtestsrv")
	certs = filepath.Join(dir, "certs")
	for _, f := range []string{bin, dnsBin, filepath.Join(certs, "pebble.minica.pem"), filepath.Join(certs, "localhost", "key.pem")} {
		if _, err := os.Stat(f); err != nil {
			fatalf(t, "Pebble %s not built: %s is missing; run `make test-deps` (it runs scripts/build-pebble.sh)", pebbleVersion, f)
		}
	}
	return bin, dnsBin, certs
}

// IssuingRoot returns the PEM of the root that the certificates this Pebble
// issues chain to (its management interface's /roots/0).
func (p *PebbleServer) IssuingRoot(t testing.TB) []byte {
	t.Helper()
	resp, err := p.client.Get(p.ManagementURL + "/roots/0")
	if err != nil {
		fatalf(t, "pebble: fetching the issuing root: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		fatalf(t, "pebble: fetching the issuing root: status %d, %v", resp.StatusCode, err)
	}
	return b
}

// IssuingRootPool is IssuingRoot as a pool, for tls.Config.RootCAs.
func (p *PebbleServer) IssuingRootPool(t testing.TB) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(p.IssuingRoot(t)) {
		fatalf(t, "pebble: no certificate in the issuing root")
	}
	return pool
}

// Issued returns the serial numbers (lowercase hex of the serial's bytes,
// as hex.EncodeToString(cert.SerialNumber.Bytes())) of every certificate
// this Pebble has issued, in order.
func (p *PebbleServer) Issued() []string {
	var out []string
	for _, m := range issuedLine.FindAllStringSubmatch(p.out.String(), -1) {
		out = append(out, m[1])
	}
	return out
}

// pebbleConfig is Pebble's configuration file.
type pebbleConfig struct {
	Pebble struct {
		ListenAddress           string `json:"listenAddress"`
		ManagementListenAddress string `json:"managementListenAddress"`
		Certificate             string `json:"certificate"`
		PrivateKey              string `json:"privateKey"`
		HTTPPort                int    `json:"httpPort"`
		TLSPort                 int    `json:"tlsPort"`
		OCSPResponderURL        string `json:"ocspResponderURL"`
		KeyAlgorithm            string `json:"keyAlgorithm"`
		RetryAfter              struct {
			Authz int `json:"authz"`
			Order int `json:"order"`
		} `json:"retryAfter"`
	} `json:"pebble"`
}

// startPebble makes one attempt on fresh ports; a lost race for a port shows
// as an early exit and the caller retries.
func startPebble(bin, certs, tmp, dnsAddr string, o PebbleOptions, client *http.Client) (*PebbleServer, func(), error) {
	apiPort, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	mgmtPort, err := freePort()
	if err != nil {
		return nil, nil, err
	}
	var c pebbleConfig
	c.Pebble.ListenAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))
	c.Pebble.ManagementListenAddress = net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort))
	c.Pebble.Certificate = filepath.Join(certs, "localhost", "cert.pem")
	c.Pebble.PrivateKey = filepath.Join(certs, "localhost", "key.pem")
	c.Pebble.HTTPPort, c.Pebble.TLSPort = o.HTTPPort, o.TLSPort
	// ECDSA keys make the start quick (no RSA root to generate).
	c.Pebble.KeyAlgorithm = "ecdsa"
	cfgJSON, err := json.Marshal(c)
	if err != nil {
		return nil, nil, err
	}
	cfgFile := filepath.Join(tmp, "pebble-"+strconv.Itoa(apiPort)+".json")
	if err := os.WriteFile(cfgFile, cfgJSON, 0o600); err != nil {
		return nil, nil, err
	}

	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "-config", cfgFile, "-dnsserver", dnsAddr)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(),
		"PEBBLE_VA_NOSLEEP=1",
		"PEBBLE_WFE_NONCEREJECT=0",
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	stop, exited, err := startChild(cmd)
	if err != nil {
		return nil, nil, err
	}
	p := &PebbleServer{
		DirectoryURL:  "https://" + c.Pebble.ListenAddress + "/dir",
		ManagementURL: "https://" + c.Pebble.ManagementListenAddress,
		client:        client,
		out:           out,
	}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return nil, nil, fmt.Errorf("pebble exited at start: %s", tail(out.String(), 2000))
		default:
		}
		if httpOK(client, p.DirectoryURL) == nil && httpOK(client, p.ManagementURL+"/roots/0") == nil {
			return p, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return nil, nil, fmt.Errorf("pebble did not answer on %s within %v: %s", p.DirectoryURL, startTimeout, tail(out.String(), 2000))
}

// startChallTestSrv starts pebble-challtestsrv as a DNS server only (its
// challenge servers off: the code under test answers challenges) and waits
// until it resolves a name; it returns the DNS address.
func startChallTestSrv(bin string) (string, func(), error) {
	dnsPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	mgmtPort, err := freePort()
	if err != nil {
		return "", nil, err
	}
	dnsAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(dnsPort))
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin,
		"-dnsserver", dnsAddr,
		"-management", net.JoinHostPort("127.0.0.1", strconv.Itoa(mgmtPort)),
		"-defaultIPv4", "127.0.0.1",
		"-defaultIPv6", "",
		"-http01", "",
		"-https01", "",
		"-tlsalpn01", "",
		"-doh", "",
	)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	stop, exited, err := startChild(cmd)
	if err != nil {
		return "", nil, err
	}
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return "", nil, fmt.Errorf("pebble-challtestsrv exited at start: %s", tail(out.String(), 2000))
		default:
		}
		if resolvesToLoopback(dnsAddr) == nil {
			return dnsAddr, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("pebble-challtestsrv did not answer DNS on %s within %v: %s", dnsAddr, startTimeout, tail(out.String(), 2000))
}

// startChild starts cmd and returns a stop function (kill and reap; safe to
// call more than once) and a channel closed when the process has exited.
func startChild(cmd *exec.Cmd) (stop func(), exited <-chan struct{}, err error) {
	if err := cmd.Start(); err != nil {
		return nil, nil, err
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	var once sync.Once
	return func() {
		once.Do(func() {
			_ = cmd.Process.Kill()
			<-done
		})
	}, done, nil
}

// resolvesToLoopback asks the DNS server at addr for a name and expects
// 127.0.0.1, the answer Pebble's validator will get for every name.
func resolvesToLoopback(addr string) error {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ips, err := r.LookupIP(ctx, "ip4", "ready.portcullis.test")
	if err != nil {
		return err
	}
	if len(ips) != 1 || !ips[0].Equal(net.IPv4(127, 0, 0, 1)) {
		return fmt.Errorf("ready.portcullis.test resolved to %v, want 127.0.0.1", ips)
	}
	return nil
}

// httpOK expects 200 from a GET of url.
func httpOK(client *http.Client, url string) error {
	resp, err := client.Get(url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return errors.New(resp.Status)
	}
	return nil
}

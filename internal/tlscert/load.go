package tlscert

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// snapshot is one load of the files; nothing changes it once built, so
// handshakes read it without a lock.
type snapshot struct {
	exact     map[string]*tls.Certificate // by lower-case DNS name
	wildcard  map[string]*tls.Certificate // *.example.com under example.com
	def       *tls.Certificate            // no SNI, an IP literal or an unknown name
	certs     []loaded                    // in file order
	clientCAs *x509.CertPool              // nil when client authentication is off
}

// loaded is what the log and the expiry gauge say about a certificate.
type loaded struct {
	label    string // first DNS name, else the certificate file's base name
	file     string
	notAfter time.Time
}

// pair is a certificate file and its key; where prefixes its errors.
type pair struct{ where, cert, key string }

// load reads every file into a new snapshot; it reports every problem.
func (s *Store) load() (*snapshot, error) {
	pairs, err := s.pairs()
	errs := []error{err} // an unpaired file does not hide the other pairs' problems
	snap := &snapshot{exact: map[string]*tls.Certificate{}, wildcard: map[string]*tls.Certificate{}}
	for _, p := range pairs {
		c, err := loadPair(p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		snap.add(c, p.cert)
	}
	if s.opts.ClientCAFile != "" {
		if snap.clientCAs, err = loadClientCAs(s.opts.ClientCAFile); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return snap, nil
}

// pairs lists the certificate files and their keys. In TLS_CERTS_DIR, entries
// starting with "." are skipped: a Kubernetes Secret volume keeps its real
// files under ..data and shows them through symlinks.
func (s *Store) pairs() ([]pair, error) {
	if s.opts.Dir == "" {
		return []pair{{"TLS_CERT_FILE/TLS_KEY_FILE", s.opts.CertFile, s.opts.KeyFile}}, nil
	}
	entries, err := os.ReadDir(s.opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERTS_DIR: %w", err)
	}
	present := make(map[string]bool, len(entries))
	for _, e := range entries {
		present[e.Name()] = true
	}
	var out []pair
	var errs []error
	for _, e := range entries { // sorted by name: the first pair is the default
		name := e.Name()
		ext := filepath.Ext(name)
		stem := strings.TrimSuffix(name, ext)
		switch {
		case strings.HasPrefix(name, "."):
		case ext == ".crt" && !present[stem+".key"]:
			errs = append(errs, fmt.Errorf("TLS_CERTS_DIR: %s: no matching %s.key", name, stem))
		case ext == ".key" && !present[stem+".crt"]:
			errs = append(errs, fmt.Errorf("TLS_CERTS_DIR: %s: no matching %s.crt", name, stem))
		case ext == ".crt":
			out = append(out, pair{
				where: "TLS_CERTS_DIR: " + name + " + " + stem + ".key",
				cert:  filepath.Join(s.opts.Dir, name),
				key:   filepath.Join(s.opts.Dir, stem+".key"),
			})
		}
	}
	if len(errs) == 0 && len(out) == 0 {
		errs = append(errs, fmt.Errorf("TLS_CERTS_DIR: no NAME.crt + NAME.key pair in %s", s.opts.Dir))
	}
	return out, errors.Join(errs...)
}

// loadPair reads and parses a chain and its key, which must match.
func loadPair(p pair) (*tls.Certificate, error) {
	certPEM, err := os.ReadFile(p.cert)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	keyPEM, err := os.ReadFile(p.key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p.where, err)
	}
	// X509KeyPair parses the leaf only; a broken intermediate would
	// otherwise surface as clients' verification failures.
	for i, der := range c.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return nil, fmt.Errorf("%s: certificate %d of the chain: %w", p.where, i+1, err)
		}
		if i == 0 {
			c.Leaf = cert
		}
	}
	return &c, nil
}

// add indexes c under its DNS names; the first certificate added is the
// default. When two certificates name the same host, the one valid longest
// wins, so a renewed certificate dropped next to the old one takes over.
func (snap *snapshot) add(c *tls.Certificate, file string) {
	leaf := c.Leaf
	label := filepath.Base(file)
	if len(leaf.DNSNames) > 0 {
		label = leaf.DNSNames[0]
	}
	snap.certs = append(snap.certs, loaded{label: label, file: file, notAfter: leaf.NotAfter})
	if snap.def == nil {
		snap.def = c
	}
	for _, name := range leaf.DNSNames {
		name = strings.ToLower(strings.TrimSuffix(name, "."))
		m := snap.exact
		if parent, ok := strings.CutPrefix(name, "*."); ok {
			m, name = snap.wildcard, parent
		}
		if prev, ok := m[name]; !ok || leaf.NotAfter.After(prev.Leaf.NotAfter) {
			m[name] = c
		}
	}
}

// expiry maps each certificate's label to its NotAfter; of two certificates
// with one label, the one valid longest counts, as it is the one served.
func (snap *snapshot) expiry() map[string]time.Time {
	out := make(map[string]time.Time, len(snap.certs))
	for _, c := range snap.certs {
		if t, ok := out[c.label]; !ok || c.notAfter.After(t) {
			out[c.label] = c.notAfter
		}
	}
	return out
}

// loadClientCAs reads a PEM bundle; unlike CertPool.AppendCertsFromPEM it
// refuses a block it cannot parse rather than skip it.
func loadClientCAs(file string) (*x509.CertPool, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("TLS_CLIENT_CA: %w", err)
	}
	pool := x509.NewCertPool()
	n := 0
	for {
		var b *pem.Block
		if b, data = pem.Decode(data); b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		ca, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("TLS_CLIENT_CA: certificate %d of %s: %w", n+1, file, err)
		}
		pool.AddCert(ca)
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("TLS_CLIENT_CA: no PEM certificate in %s", file)
	}
	return pool, nil
}

// install puts snap in force and brings the expiry gauge in line with it.
// The caller holds s.mu, or is New and owns s alone.
func (s *Store) install(snap *snapshot) {
	s.snap.Store(snap)
	now := s.now()
	for _, c := range snap.certs {
		if now.After(c.notAfter) {
			s.log.Warn("TLS certificate expired; serving it until it is replaced", "name", c.label, "file", c.file, "not_after", c.notAfter)
		}
	}
	expiry := snap.expiry()
	for label, t := range expiry {
		s.expiry.WithLabelValues(label).Set(float64(t.Unix()))
	}
	for label := range s.series {
		if _, ok := expiry[label]; !ok {
			s.expiry.DeleteLabelValues(label)
		}
	}
	s.series = expiry
}

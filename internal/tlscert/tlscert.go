// Package tlscert holds the certificates the gateway serves over TLS and
// builds the server's tls.Config.
package tlscert

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Options say where the certificates are and how clients are checked.
type Options struct {
	// CertFile and KeyFile (TLS_CERT_FILE, TLS_KEY_FILE) are one PEM chain,
	// leaf first, and its key. Set these or Dir, not both.
	CertFile, KeyFile string
	// Dir (TLS_CERTS_DIR) holds pairs NAME.crt + NAME.key; hidden entries
	// (a Kubernetes Secret's ..data) and other extensions are ignored. The
	// pair whose name sorts first is served to clients that send no SNI.
	Dir string
	// MinVersion (TLS_MIN_VERSION) is "1.2" (the default when empty) or "1.3".
	MinVersion string
	// ClientCAFile (TLS_CLIENT_CA) is a PEM bundle of the CAs client
	// certificates must chain to; it needs ClientAuth request or require.
	ClientCAFile string
	// ClientAuth (TLS_CLIENT_AUTH) is "off" (the default when empty),
	// "request" (verify a certificate if one is sent) or "require".
	ClientAuth string
	// Log receives the "tls" component's lines; nil discards them.
	Log *slog.Logger
	// Registerer receives the tls_* metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock expiry is judged by; nil means time.Now.
	Now func() time.Time
}

// Store holds the certificates in force. Handshakes read an immutable
// snapshot through an atomic pointer; only reloads take the mutex.
type Store struct {
	opts       Options
	minVersion uint16
	clientAuth tls.ClientAuthType
	log        *slog.Logger
	now        func() time.Time

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex           // serializes reloads
	series map[string]time.Time // the expiry gauge's series, by label

	unmatched prometheus.Counter     // tls_sni_unmatched_total
	reloads   *prometheus.CounterVec // tls_certificate_reloads_total{result}
	expiry    *prometheus.GaugeVec   // tls_certificate_expiry_timestamp_seconds{name}
}

// New checks opts and loads every certificate (and the client CAs) once; any
// problem is an error naming the variable. An expired certificate is loaded
// and logged, since refusing to start would not make it valid.
func New(opts Options) (*Store, error) {
	s := &Store{opts: opts, log: opts.Log, now: opts.Now, series: map[string]time.Time{}}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = telemetry.Component(s.log, "tls")
	if s.now == nil {
		s.now = time.Now
	}
	if err := s.checkOptions(); err != nil {
		return nil, err
	}
	if err := s.registerMetrics(opts.Registerer); err != nil {
		return nil, err
	}
	snap, err := s.load()
	if err != nil {
		return nil, err
	}
	// A store built again on the same registry (a gateway rebuilt in a
	// test) takes the gauge over: its series are this store's alone.
	s.expiry.Reset()
	s.install(snap)
	s.log.Info("TLS certificates loaded", "certificates", len(snap.certs))
	return s, nil
}

var (
	minVersions     = map[string]uint16{"": tls.VersionTLS12, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}
	clientAuthModes = map[string]tls.ClientAuthType{
		"":        tls.NoClientCert,
		"off":     tls.NoClientCert,
		"request": tls.VerifyClientCertIfGiven,
		"require": tls.RequireAndVerifyClientCert,
	}
)

// checkOptions validates the options and reports every problem at once.
func (s *Store) checkOptions() error {
	o := s.opts
	var errs []error
	switch {
	case o.Dir != "" && (o.CertFile != "" || o.KeyFile != ""):
		errs = append(errs, errors.New("TLS_CERTS_DIR and TLS_CERT_FILE/TLS_KEY_FILE are both set: choose one"))
	case o.Dir == "" && o.CertFile == "" && o.KeyFile == "":
		errs = append(errs, errors.New("no certificate: set TLS_CERT_FILE and TLS_KEY_FILE, or TLS_CERTS_DIR"))
	case o.Dir == "" && o.KeyFile == "":
		errs = append(errs, errors.New("TLS_CERT_FILE is set without TLS_KEY_FILE"))
	case o.Dir == "" && o.CertFile == "":
		errs = append(errs, errors.New("TLS_KEY_FILE is set without TLS_CERT_FILE"))
	}
	var ok bool
	if s.minVersion, ok = minVersions[o.MinVersion]; !ok {
		errs = append(errs, fmt.Errorf("TLS_MIN_VERSION: want 1.2 or 1.3, got %q", o.MinVersion))
	}
	s.clientAuth, ok = clientAuthModes[o.ClientAuth]
	switch {
	case !ok:
		errs = append(errs, fmt.Errorf("TLS_CLIENT_AUTH: want off, request or require, got %q", o.ClientAuth))
	case s.clientAuth == tls.NoClientCert && o.ClientCAFile != "":
		errs = append(errs, errors.New("TLS_CLIENT_CA is set but TLS_CLIENT_AUTH is off: set TLS_CLIENT_AUTH to request or require"))
	case s.clientAuth != tls.NoClientCert && o.ClientCAFile == "":
		errs = append(errs, fmt.Errorf("TLS_CLIENT_AUTH=%s needs TLS_CLIENT_CA, the CAs client certificates are checked against", o.ClientAuth))
	}
	return errors.Join(errs...)
}

// registerMetrics creates the tls_* collectors; one already registered by
// an earlier store on the same registry is reused.
func (s *Store) registerMetrics(reg prometheus.Registerer) error {
	s.unmatched = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "tls_sni_unmatched_total",
		Help: "TLS handshakes whose SNI name matched no certificate and got the default one.",
	})
	s.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tls_certificate_reloads_total",
		Help: "Reloads of the TLS certificates by result (success, failure; on failure the previous ones stay in force).",
	}, []string{"result"})
	s.expiry = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "tls_certificate_expiry_timestamp_seconds",
		Help: "Unix time at which each served certificate expires, by its first DNS name (or file name).",
	}, []string{"name"})
	var err error
	if s.unmatched, err = telemetry.Register(reg, s.unmatched); err == nil {
		if s.reloads, err = telemetry.Register(reg, s.reloads); err == nil {
			s.expiry, err = telemetry.Register(reg, s.expiry)
		}
	}
	if err != nil {
		return fmt.Errorf("registering TLS metrics: %w", err)
	}
	s.reloads.WithLabelValues("success")
	s.reloads.WithLabelValues("failure")
	return nil
}

// GetCertificate picks the certificate for a handshake: the one naming the
// SNI name exactly, else a wildcard one covering it, else the default (no
// SNI and IP literals get it silently; an unknown name is counted, and gets
// it anyway so that a client that would accept it is not refused, as a
// web server's default virtual host does).
func (s *Store) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	snap := s.snap.Load()
	name := hello.ServerName
	if name == "" {
		return snap.def, nil
	}
	// ToLower returns name itself when it has no upper case: no allocation
	// on the usual path.
	name = strings.ToLower(strings.TrimSuffix(name, "."))
	if c, ok := snap.exact[name]; ok {
		return c, nil
	}
	// A wildcard covers exactly one label (RFC 6125 6.4.3): a.example.com
	// looks up the parent example.com; a.b.example.com looks up
	// b.example.com, where *.example.com is not.
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := snap.wildcard[name[i+1:]]; ok {
			return c, nil
		}
	}
	if _, err := netip.ParseAddr(name); err != nil {
		s.unmatched.Inc()
	}
	return snap.def, nil
}

// Certificates lists the certificates in force with when each expires,
// sorted by name: one entry per name the expiry gauge carries (the first
// DNS name, else the file's base name), the one valid longest when two
// certificates share it. It reads the snapshot in force, as handshakes do.
func (s *Store) Certificates() []overview.Certificate {
	expiry := s.snap.Load().expiry()
	out := make([]overview.Certificate, 0, len(expiry))
	for name, t := range expiry {
		out = append(out, overview.Certificate{Name: name, NotAfter: t})
	}
	slices.SortFunc(out, func(a, b overview.Certificate) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// tls12Suites are the TLS 1.2 suites served: forward secrecy and AEAD only.
// TLS 1.3's suites are all of that kind and not configurable.
var tls12Suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Harden sets the version floor (TLS_MIN_VERSION: "1.2", "1.3", "" for
// 1.2) and the TLS 1.2 suites every server configuration of the gateway
// uses, for a configuration built elsewhere (automatic certificates).
func Harden(c *tls.Config, minVersion string) error {
	v, ok := minVersions[minVersion]
	if !ok {
		return fmt.Errorf("TLS_MIN_VERSION: invalid value %q: expected 1.2 or 1.3", minVersion)
	}
	c.MinVersion = v
	c.CipherSuites = append([]uint16(nil), tls12Suites...)
	return nil
}

// TLSConfig returns a new server configuration over the store: the minimum
// version, AEAD suites, NextProtos h2 and http/1.1 (change them on the
// result before serving), and client certificates when configured.
// CurvePreferences stay nil so the toolchain's defaults apply, which put
// the post-quantum hybrid X25519MLKEM768 first and follow its updates.
//
// With client certificates on, each handshake runs on a copy of this
// Config taken at that moment with the client CAs in force, so a reload of
// TLS_CLIENT_CA applies to the next handshake (and resumptions are checked
// against it too). Hazard: changes made to a clone of the result are not
// seen by those handshakes (http.Server.ServeTLS adjusts NextProtos on a
// clone), so serve it through tls.NewListener and http.Server.Serve.
func (s *Store) TLSConfig() *tls.Config {
	c := &tls.Config{
		MinVersion:     s.minVersion,
		CipherSuites:   append([]uint16(nil), tls12Suites...),
		GetCertificate: s.GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
		ClientAuth:     s.clientAuth,
	}
	if s.clientAuth == tls.NoClientCert {
		return c
	}
	// The CA pool cannot be swapped inside a Config in use (a pool is not
	// safe to change under readers), so the pool of the snapshot in force
	// goes into a per-handshake copy instead. The copy costs one allocation
	// next to the handshake's many.
	c.ClientCAs = s.snap.Load().clientCAs
	c.GetConfigForClient = func(*tls.ClientHelloInfo) (*tls.Config, error) {
		cc := c.Clone()
		cc.GetConfigForClient = nil
		cc.ClientCAs = s.snap.Load().clientCAs
		return cc, nil
	}
	return c
}

// ClientSubject returns the subject of the client certificate the handshake
// verified, as an RFC 2253 string, or "" when none was verified (no
// certificate, client authentication off, or no TLS at all).
func ClientSubject(state *tls.ConnectionState) string {
	if state == nil || len(state.VerifiedChains) == 0 || len(state.VerifiedChains[0]) == 0 {
		return ""
	}
	return state.VerifiedChains[0][0].Subject.String()
}

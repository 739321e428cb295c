// Package acme obtains and renews the gateway's certificates automatically with certmagic.
//
// A Manager answers the two challenges a CA can validate on the gateway's own
// listeners: TLS-ALPN-01 (RFC 8737) in the TLS handshake of the HTTPS
// listener, through TLSConfig, and HTTP-01 (RFC 8555 §8.3) on the plain-HTTP
// listener, through HTTPChallenge. Accounts, keys and certificates live in a
// directory, or, in cluster mode, in Redis (RedisStorage): replicas then
// share certificates, any replica answers a challenge another one started,
// and a lock in Redis makes one replica order each certificate while the
// others wait for it and load it.
package acme

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"

	"github.com/caddyserver/certmagic"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/portcullis/portcullis/internal/telemetry"
)

const (
	// DefaultStorage is where accounts, keys and certificates live when
	// Options.Storage is empty and there is no Redis.
	DefaultStorage = "./acme"
	// DefaultKeyPrefix namespaces the Redis keys of the storage.
	DefaultKeyPrefix = "portcullis:acme:"

	// alpnProtocol is the ALPN protocol a CA offers, alone, in a TLS-ALPN-01
	// validation handshake (RFC 8737 §6.2).
	alpnProtocol = "acme-tls/1"
	// challengePath prefixes every HTTP-01 validation request.
	challengePath = "/.well-known/acme-challenge/"
)

// Options configures a Manager.
type Options struct {
	// Domains are the names to obtain and renew certificates for
	// (ACME_DOMAINS). Required; each a DNS name. Wildcards are refused: they
	// need the DNS-01 challenge, which the gateway does not solve.
	Domains []string
	// Email is the ACME account's contact (ACME_EMAIL); empty registers an
	// account without one, so the CA cannot warn about expiry problems.
	Email string
	// CA is the ACME directory URL (ACME_CA), https only; default Let's
	// Encrypt's production directory. Setting ACME_DOMAINS is taken as
	// agreement to that CA's terms.
	CA string
	// CARoot is a PEM file of the root(s) that the directory's own HTTPS
	// certificate chains to (ACME_CA_ROOT), for a private CA. When set it is
	// the only trust used to reach the CA; empty means the system roots.
	CARoot string
	// Storage is the directory of accounts, keys and certificates
	// (ACME_STORAGE), created 0700 if missing; default DefaultStorage.
	// Ignored when Redis is set. It holds private keys: keep it out of
	// anything served or shared.
	Storage string
	// Redis, when set (CLUSTER_MODE=redis), holds everything instead of
	// Storage, shared by every replica that uses the same Redis and
	// KeyPrefix.
	Redis redis.UniversalClient
	// KeyPrefix namespaces the Redis keys; default DefaultKeyPrefix. On
	// Redis Cluster it must contain a hash tag (e.g. "{acme}:"): a write
	// touches two keys in one transaction.
	KeyPrefix string
	// HTTPPort and TLSPort are the ports the gateway's plain-HTTP and TLS
	// listeners really bind, when the CA's 80 and 443 are forwarded to
	// others; zero means 80 and 443. ListenHost is those listeners' host
	// (empty: all interfaces). certmagic probes host:port to find that the
	// gateway answers the challenge there, and opens a listener of its own
	// when nothing does.
	HTTPPort, TLSPort int
	ListenHost        string
	// DisableHTTPChallenge leaves HTTP-01 out: set it when no plain-HTTP
	// listener serves HTTPChallenge (HTTP_REDIRECT_ADDR empty), or certmagic
	// would try to bind port HTTPPort itself. DisableTLSALPNChallenge leaves
	// TLS-ALPN-01 out. Both set is an error.
	DisableHTTPChallenge, DisableTLSALPNChallenge bool
	// Log is the base logger (component "acme" is added); nil discards.
	// certmagic's own lines come out through it too.
	Log *slog.Logger
	// Registerer receives the acme_* metrics; nil registers none.
	Registerer prometheus.Registerer
}

// Manager obtains, renews and serves the certificates of Options.Domains.
type Manager struct {
	domains []string
	managed map[string]bool // domains, for the challenge guards
	cfg     *certmagic.Config
	issuer  *certmagic.ACMEIssuer
	cache   *certmagic.Cache
	log     *slog.Logger
	metrics *metrics
}

// New validates o (every problem at once, each naming its variable), opens
// the storage and builds the Manager; it does not contact the CA. ctx bounds
// the Manager's life: when it ends, renewal checks stop. Call Manage to
// start obtaining certificates.
func New(ctx context.Context, o Options) (*Manager, error) {
	v, err := validate(o)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	log := telemetry.Component(o.Log, "acme")
	// Named, so certmagic's loggers show as certmagic.obtain,
	// certmagic.acme_client and so on in the "logger" attribute.
	zl := zap.New(newSlogCore(log.Handler())).Named("certmagic")

	m := &Manager{domains: v.domains, managed: map[string]bool{}, log: log}
	for _, d := range v.domains {
		m.managed[d] = true
	}
	var storage certmagic.Storage
	if o.Redis != nil {
		storage = NewRedisStorage(o.Redis, RedisStorageOptions{KeyPrefix: o.KeyPrefix, Log: o.Log})
	} else {
		storage = &certmagic.FileStorage{Path: v.storage}
	}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		// Every certificate of this cache is this Manager's.
		GetConfigForCert: func(certmagic.Certificate) (*certmagic.Config, error) { return m.cfg, nil },
		Logger:           zl,
	})
	m.cfg = certmagic.New(m.cache, certmagic.Config{
		Storage: storage,
		OnEvent: m.onEvent,
		// A client that sends no SNI (an IP address in the URL, some
		// health checkers), or a name not managed here, gets the first
		// domain's certificate rather than a failed handshake.
		DefaultServerName: v.domains[0],
		Logger:            zl,
	})
	m.issuer = certmagic.NewACMEIssuer(m.cfg, certmagic.ACMEIssuer{
		CA:                      v.ca,
		Email:                   o.Email,
		Agreed:                  true,
		DisableHTTPChallenge:    o.DisableHTTPChallenge,
		DisableTLSALPNChallenge: o.DisableTLSALPNChallenge,
		ListenHost:              o.ListenHost,
		AltHTTPPort:             o.HTTPPort,
		AltTLSALPNPort:          o.TLSPort,
		TrustedRoots:            v.roots,
		Logger:                  zl,
	})
	m.cfg.Issuers = []certmagic.Issuer{m.issuer}
	if m.metrics, err = newMetrics(o.Registerer, m); err != nil {
		m.cache.Stop()
		return nil, err
	}
	context.AfterFunc(ctx, m.cache.Stop)
	return m, nil
}

// Manage loads the certificates already in storage and starts obtaining the
// missing ones in the background, then returns: boot never waits on the CA,
// whose outage or rate limit would otherwise keep the gateway (and the
// routes that need no certificate) down. Until a name has its certificate,
// handshakes for it fail, and failed attempts are retried with backoff
// (watch acme_certificate_failures_total). ctx bounds those attempts.
//
// Call it once the TLS listener (and the plain-HTTP one, if HTTP-01 is on)
// is bound: a challenge presented while nothing holds the port makes
// certmagic bind it itself, and the gateway's own bind would then fail.
func (m *Manager) Manage(ctx context.Context) error {
	if err := m.cfg.ManageAsync(ctx, m.domains); err != nil {
		return fmt.Errorf("managing certificates for ACME_DOMAINS: %w", err)
	}
	m.log.Info("managing certificates", "domains", m.domains, "ca", m.issuer.CA)
	return nil
}

// TLSConfig returns a new TLS configuration for the HTTPS listener: the
// managed certificates chosen by SNI, TLS-ALPN-01 answered in the
// handshake, and ALPN offering h2 then http/1.1 (the CA's acme-tls/1 comes
// last; it only ever arrives alone). The caller may adjust the copy (cipher
// suites, a higher MinVersion, client certificates) but must keep
// GetCertificate and acme-tls/1.
func (m *Manager) TLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: m.getCertificate,
		NextProtos:     []string{"h2", "http/1.1", alpnProtocol},
	}
}

// errNotManaged refuses a TLS-ALPN-01 handshake for a name not managed here.
var errNotManaged = errors.New("acme: no challenge for a name not managed here")

// getCertificate is certmagic's, behind a guard: a challenge handshake for a
// name not managed here is refused before certmagic looks for the challenge
// in storage, so a client cannot make every handshake a storage (Redis) read.
func (m *Manager) getCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == alpnProtocol && !m.manages(hello.ServerName) {
		return nil, errNotManaged
	}
	return m.cfg.GetCertificate(hello)
}

// manages reports whether host (a Host header or an SNI name, any case,
// with a port or a trailing dot) is one of the managed domains.
func (m *Manager) manages(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return m.managed[strings.TrimSuffix(strings.ToLower(host), ".")]
}

// HTTPChallenge answers HTTP-01 validation requests (GET
// /.well-known/acme-challenge/TOKEN) for challenges this replica or, through
// the shared storage, another one started, and passes every other request to
// next. A request under that path that matches no challenge gets 404: a
// backend never sees, or answers, a validation meant for the gateway. Only
// requests for a managed name look for a challenge in storage.
func (m *Manager) HTTPChallenge(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, challengePath) {
			next.ServeHTTP(w, r)
			return
		}
		if !m.manages(r.Host) || !m.issuer.HandleHTTPChallenge(w, r) {
			http.NotFound(w, r)
		}
	})
}

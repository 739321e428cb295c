// Package listener opens the gateway's listeners and their HTTP servers:
// the public listener (connection caps at accept time, TLS with HTTP/2 by
// ALPN or plain HTTP with a watch on request heads), the ops listener, and
// the plain-HTTP listener that redirects to https.
package listener

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/acme"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/connlimit"
	"github.com/portcullis/portcullis/internal/framing"
	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/tlscert"
)

// Server-side limits (docs/request-path.md, "Hostile input"). A TLS
// handshake is bounded by ReadHeaderTimeout too (net/http applies the
// smallest of its read timeouts to it).
const (
	ReadHeaderTimeout = 10 * time.Second
	IdleTimeout       = 120 * time.Second
	MaxHeaderBytes    = 64 << 10
)

// Caps are the public listener's connection caps (MAX_CONNS_PER_IP,
// MAX_CONNECTIONS; see connlimit.Options).
type Caps = connlimit.Options

// Options are the public listener's settings beyond the configuration.
type Options struct {
	// Caps are the connection caps; their Log and Registerer are filled in
	// from these Options.
	Caps       Caps
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// Public is the public listener's configuration, checked and loaded at
// boot (certificates included), before anything listens.
type Public struct {
	handshakes *prometheus.CounterVec // tls_handshakes_total{version}
	cfg        *config.Static
	o          Options
	certs      *tlscert.Store // TLS_CERT_FILE / TLS_CERTS_DIR; nil otherwise
	acme       *acme.Manager  // ACME_DOMAINS; nil otherwise
	log        *slog.Logger
}

// NewPublic loads what GATEWAY_PORT serves with: the certificates when TLS
// is on (an unreadable or mismatched file is an error naming its
// variable), or the automatic-certificate manager with ACME_DOMAINS, which
// lives until ctx ends and whose Redis client (cluster mode) closeAll
// closes. closeAll is never nil.
func NewPublic(ctx context.Context, cfg *config.Static, o Options) (p *Public, closeAll func(), err error) {
	p = &Public{cfg: cfg, o: o, log: telemetry.Component(o.Log, "gateway")}
	closeAll = func() {}
	if !cfg.TLS() {
		return p, closeAll, nil
	}
	p.handshakes = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tls_handshakes_total",
		Help: "Completed TLS handshakes on the public listener (TCP and QUIC), by protocol version.",
	}, []string{"version"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(p.handshakes); err != nil {
			return nil, closeAll, err
		}
	}
	for _, v := range []string{"1.2", "1.3"} {
		p.handshakes.WithLabelValues(v)
	}
	if len(cfg.ACMEDomains) > 0 {
		ao := acme.Options{
			Domains: cfg.ACMEDomains, Email: cfg.ACMEEmail, CA: cfg.ACMECA, CARoot: cfg.ACMECARoot, Storage: cfg.ACMEStorage,
			// The CA validates on the ports the gateway really binds.
			TLSPort: portOf(cfg.ListenAddr), ListenHost: hostOf(cfg.ListenAddr),
			HTTPPort:             portOf(cfg.HTTPRedirectAddr),
			DisableHTTPChallenge: cfg.HTTPRedirectAddr == "",
			Log:                  o.Log, Registerer: o.Registerer,
		}
		if cfg.ClusterMode == "redis" {
			rdb := redisconn.New(redisconn.FromConfig(cfg), redisconn.ForACME())
			ao.Redis, closeAll = rdb, func() { _ = rdb.Close() }
		}
		p.acme, err = acme.New(ctx, ao)
		return p, closeAll, err
	}
	p.certs, err = tlscert.New(tlscert.Options{
		CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, Dir: cfg.TLSCertsDir,
		MinVersion:   cfg.TLSMinVersion,
		ClientCAFile: cfg.TLSClientCA, ClientAuth: cfg.TLSClientAuth,
		Log: o.Log, Registerer: o.Registerer,
	})
	return p, closeAll, err
}

// portOf is addr's port as a number, 0 when it has none.
func portOf(addr string) int {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(port)
	return n
}

func hostOf(addr string) string {
	host, _, _ := net.SplitHostPort(addr)
	return host
}

// TLS reports whether the public listener serves HTTPS.
func (p *Public) TLS() bool { return p.certs != nil || p.acme != nil }

// Certificates lists the certificates GATEWAY_PORT serves, sorted by name,
// with when each expires: the files' (TLS_CERT_FILE, TLS_CERTS_DIR), or the
// ACME_DOMAINS that have one so far. Nil without TLS.
func (p *Public) Certificates() []overview.Certificate {
	switch {
	case p.certs != nil:
		return p.certs.Certificates()
	case p.acme != nil:
		return p.acme.Certificates()
	}
	return nil
}

// tlsConfig is the public listener's TLS configuration, nil for plain HTTP.
func (p *Public) tlsConfig() (*tls.Config, error) {
	var c *tls.Config
	switch {
	case p.certs != nil:
		c = p.certs.TLSConfig()
	case p.acme != nil:
		c = p.acme.TLSConfig()
		if err := tlscert.Harden(c, p.cfg.TLSMinVersion); err != nil {
			return nil, err
		}
	default:
		return nil, nil
	}
	// VerifyConnection runs once per completed handshake, resumed ones
	// included, with the negotiated version: the count by version tells
	// when raising TLS_MIN_VERSION would turn clients away.
	v12, v13 := p.handshakes.WithLabelValues("1.2"), p.handshakes.WithLabelValues("1.3")
	c.VerifyConnection = func(cs tls.ConnectionState) error {
		if cs.Version == tls.VersionTLS13 {
			v13.Inc()
		} else {
			v12.Inc()
		}
		return nil
	}
	return c, nil
}

// Listen opens GATEWAY_PORT. Over TLS the handshake happens in the server,
// so its deadline and errors are the server's; over plain HTTP each
// connection is watched for what net/http hides (package framing). Only
// plain-text bytes can be watched, so over TLS an HTTP/1.0 request closes
// its connection instead (see the sanitize step).
func (p *Public) Listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", p.cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("GATEWAY_PORT: listening on %s: %w", p.cfg.ListenAddr, err)
	}
	tc, err := p.tlsConfig()
	if err != nil {
		ln.Close()
		return nil, err
	}
	caps := p.o.Caps
	caps.Log, caps.Registerer = p.log, p.o.Registerer
	capped := connlimit.NewListener(ln, caps)
	if tc != nil {
		return tls.NewListener(capped, tc), nil
	}
	return framing.Listener{Listener: capped}, nil
}

// Server returns the public listener's server for h: HTTP/1.1 and, over
// TLS, HTTP/2 by ALPN; cleartext HTTP/2 with prior knowledge only when H2C
// is on. readHeaderTimeout 0 = ReadHeaderTimeout.
func (p *Public) Server(h http.Handler, readHeaderTimeout time.Duration) *http.Server {
	srv := Server(h, readHeaderTimeout, p.log)
	// Accept to first request within the head timeout, whatever the
	// protocol (request.ConnContextWatched).
	srv.ConnContext = request.ConnContextWatched(srv.ReadHeaderTimeout)
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: p.cfg.HTTP2MaxConcurrentStreams}
	if p.TLS() {
		srv.Protocols.SetHTTP2(true)
	}
	if p.cfg.H2C {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	return srv
}

// Run keeps the certificates current until ctx ends: it reloads the files
// when they change, or starts obtaining and renewing the ACME_DOMAINS
// certificates in the background. Call it once the listeners are bound: a
// challenge presented while nothing holds its port would make the ACME
// client bind it itself.
func (p *Public) Run(ctx context.Context) {
	switch {
	case p.certs != nil:
		p.certs.Run(ctx)
	case p.acme != nil:
		if err := p.acme.Manage(ctx); err != nil {
			p.log.Error("automatic certificates not started", "error", err.Error())
		}
	}
}

// Challenges wraps the redirect listener's handler with the answers to
// ACME HTTP-01 validations; without ACME it returns h.
func (p *Public) Challenges(h http.Handler) http.Handler {
	if p.acme == nil {
		return h
	}
	return p.acme.HTTPChallenge(h)
}

// ReloadCertificates reads the certificate files again (SIGHUP); the ones
// in force stay when the new ones are not valid. Without TLS it does
// nothing.
func (p *Public) ReloadCertificates() error {
	if p.certs == nil {
		return nil
	}
	return p.certs.Reload()
}

// Server returns an http.Server for h with bounded request heads and idle
// connections, the per-connection request context, and net/http's own
// complaints (TLS handshake errors among them) at debug in log. It speaks
// HTTP/1.1 only, so no h2c tunnel goes past routing; Public.Server adds
// HTTP/2 where it is wanted. readHeaderTimeout 0 = ReadHeaderTimeout.
func Server(h http.Handler, readHeaderTimeout time.Duration, log *slog.Logger) *http.Server {
	if readHeaderTimeout <= 0 {
		readHeaderTimeout = ReadHeaderTimeout
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		// net/http reads 4 KiB past MaxHeaderBytes (HTTP/1.1) and adds as
		// much to the HTTP/2 header-list limit it derives from it: so that
		// a head of MaxHeaderBytes is the most either accepts, the slack
		// comes off here.
		MaxHeaderBytes: MaxHeaderBytes - 4<<10,
		ConnContext:    request.ConnContext,
		ErrorLog:       slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	return srv
}

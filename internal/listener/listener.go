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
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/connlimit"
	"github.com/portcullis/portcullis/internal/framing"
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
	cfg   *config.Static
	o     Options
	certs *tlscert.Store // nil for plain HTTP
	log   *slog.Logger
}

// NewPublic loads what GATEWAY_PORT serves with: the certificates when TLS
// is on (an unreadable or mismatched file is an error naming its variable).
func NewPublic(cfg *config.Static, o Options) (*Public, error) {
	p := &Public{cfg: cfg, o: o, log: telemetry.Component(o.Log, "gateway")}
	if !cfg.TLS() {
		return p, nil
	}
	var err error
	p.certs, err = tlscert.New(tlscert.Options{
		CertFile: cfg.TLSCertFile, KeyFile: cfg.TLSKeyFile, Dir: cfg.TLSCertsDir,
		MinVersion:   cfg.TLSMinVersion,
		ClientCAFile: cfg.TLSClientCA, ClientAuth: cfg.TLSClientAuth,
		Log: o.Log, Registerer: o.Registerer,
	})
	return p, err
}

// TLS reports whether the public listener serves HTTPS.
func (p *Public) TLS() bool { return p.certs != nil }

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
	caps := p.o.Caps
	caps.Log, caps.Registerer = p.log, p.o.Registerer
	capped := connlimit.NewListener(ln, caps)
	if p.certs != nil {
		return tls.NewListener(capped, p.certs.TLSConfig()), nil
	}
	return framing.Listener{Listener: capped}, nil
}

// Server returns the public listener's server for h: HTTP/1.1 and, over
// TLS, HTTP/2 by ALPN; cleartext HTTP/2 with prior knowledge only when H2C
// is on. readHeaderTimeout 0 = ReadHeaderTimeout.
func (p *Public) Server(h http.Handler, readHeaderTimeout time.Duration) *http.Server {
	srv := Server(h, readHeaderTimeout, p.log)
	srv.HTTP2 = &http.HTTP2Config{MaxConcurrentStreams: p.cfg.HTTP2MaxConcurrentStreams}
	if p.certs != nil {
		srv.Protocols.SetHTTP2(true)
	}
	if p.cfg.H2C {
		srv.Protocols.SetUnencryptedHTTP2(true)
	}
	return srv
}

// Run reloads the certificates when their files change, until ctx ends.
func (p *Public) Run(ctx context.Context) {
	if p.certs != nil {
		p.certs.Run(ctx)
	}
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
		MaxHeaderBytes:    MaxHeaderBytes,
		ConnContext:       request.ConnContext,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	srv.Protocols = new(http.Protocols)
	srv.Protocols.SetHTTP1(true)
	return srv
}

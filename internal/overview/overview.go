// Package overview is the plain snapshot of a running gateway that the
// operator views read (the TTY dashboard): counters, routes and backends,
// the served certificates, and the last system sample. It holds data only, so the views depend on
// it rather than on the gateway.
package overview

import (
	"time"

	"github.com/portcullis/portcullis/internal/sysmetrics"
)

// Overview is a plain snapshot of the gateway for operator views (the TTY
// dashboard): the live counters /stats reads, plus the last system sample
// with its request rate and latency percentiles.
type Overview struct {
	Version           string
	Started           time.Time
	Uptime            time.Duration
	Draining          bool
	Requests          int64
	Status            [6]int64 // index = status/100
	Inflight          int64
	ActiveConnections int64
	BlockedIPs        int
	Routes            []Route
	// System is the last sample: request rate, error rate, latency
	// percentiles, cache hit ratio, host and process figures.
	System sysmetrics.Sample
	// History is up to the requested number of newest samples, oldest
	// first (sparklines).
	History []sysmetrics.Point
	// Certificates are the certificates the public listener serves, sorted
	// by name; empty without TLS.
	Certificates []Certificate
}

// Certificate is one certificate the public listener serves.
type Certificate struct {
	// Name is the certificate's first DNS name (else its file's name), as
	// the expiry metrics label it; an ACME certificate's domain.
	Name string
	// NotAfter is when it expires.
	NotAfter time.Time
}

// Route is one route and its backends.
type Route struct {
	Prefix    string
	Algo      string
	Available int // backends alive with a breaker that lets requests through
	Backends  []Backend
}

// Backend is one backend's state.
type Backend struct {
	URL      string
	Alive    bool
	Breaker  string // closed, open, half-open
	InFlight int64
}

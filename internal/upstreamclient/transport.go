// Package upstreamclient holds the HTTP/1.1 clients the proxy sends a
// request to one backend with: SyncClient, and the tuned http.Transport that
// NewTransport builds and whose semantics SyncClient keeps.
package upstreamclient

import (
	"net"
	"net/http"
	"time"
)

// NewTransport returns the shared upstream transport: a keep-alive pool per
// backend, bounded dials, HTTP/1.1 only, and no transparent decompression
// (upstream bodies pass through as they are).
func NewTransport(maxIdlePerHost int, idleTimeout, dialTimeout time.Duration) *http.Transport {
	return &http.Transport{
		Proxy: nil,
		DialContext: (&net.Dialer{
			Timeout:   dialTimeout,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		ForceAttemptHTTP2:      false,
		MaxIdleConns:           0,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        idleTimeout,
		DisableCompression:     true,
		ExpectContinueTimeout:  expectContinueTimeout,
		MaxResponseHeaderBytes: maxResponseHeaderBytes,
		TLSHandshakeTimeout:    dialTimeout,
	}
}

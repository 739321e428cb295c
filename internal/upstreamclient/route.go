package upstreamclient

import (
	"crypto/tls"
	"net/http"
	"time"
)

// RouteOptions say how one route speaks to its backends beyond plain
// HTTP/1.1 (upstream_tls, upstream_http2, h2c:// targets).
type RouteOptions struct {
	// TLS verifies https targets (roots, server name) and may hold a client
	// certificate; nil = the system roots and each target's host name.
	TLS *tls.Config
	// HTTP2 offers HTTP/2 to https targets by ALPN.
	HTTP2 bool
	// The pool settings, as for NewTransport.
	MaxIdlePerHost           int
	IdleTimeout, DialTimeout time.Duration
	// Plain carries the route's http:// targets (the gateway's shared
	// client), and its https ones when neither TLS nor HTTP2 is set.
	Plain http.RoundTripper
}

// RouteClient sends a route's requests by target scheme: h2c:// targets
// over cleartext HTTP/2 with prior knowledge (gRPC backends without TLS),
// https:// ones over the route's TLS settings, http:// ones through the
// shared client.
type RouteClient struct {
	plain http.RoundTripper
	https http.RoundTripper // nil: plain's
	h2c   *http.Transport
}

// NewRouteClient returns the client of one route.
func NewRouteClient(o RouteOptions) *RouteClient {
	c := &RouteClient{plain: o.Plain}
	if o.TLS != nil || o.HTTP2 {
		t := NewTransport(o.MaxIdlePerHost, o.IdleTimeout, o.DialTimeout)
		if o.TLS != nil {
			t.TLSClientConfig = o.TLS.Clone()
		}
		if o.HTTP2 {
			t.Protocols = new(http.Protocols)
			t.Protocols.SetHTTP1(true)
			t.Protocols.SetHTTP2(true)
		}
		c.https = t
	}
	c.h2c = NewTransport(o.MaxIdlePerHost, o.IdleTimeout, o.DialTimeout)
	c.h2c.Protocols = new(http.Protocols)
	c.h2c.Protocols.SetUnencryptedHTTP2(true)
	return c
}

// RoundTrip sends req by its URL's scheme.
func (c *RouteClient) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.URL.Scheme {
	case "h2c":
		r := *req
		u := *req.URL
		u.Scheme = "http"
		r.URL = &u
		return c.h2c.RoundTrip(&r)
	case "https":
		if c.https != nil {
			return c.https.RoundTrip(req)
		}
	}
	return c.plain.RoundTrip(req)
}

// CloseIdleConnections closes the route's own idle connections (not the
// shared client's).
func (c *RouteClient) CloseIdleConnections() {
	c.h2c.CloseIdleConnections()
	if t, ok := c.https.(*http.Transport); ok {
		t.CloseIdleConnections()
	}
}

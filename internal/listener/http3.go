package listener

import (
	"fmt"
	"net"
	"net/http"
	"strconv"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// HTTP3 reports whether the public listener also serves HTTP/3 (HTTP3).
func (p *Public) HTTP3() bool { return p.cfg.HTTP3 && p.TLS() }

// QUIC is the public listener's HTTP/3 side: a UDP socket on the TCP
// listener's port and the server that answers on it.
type QUIC struct {
	conn net.PacketConn
	srv  *http3.Server
}

// ListenQUIC opens the UDP socket for HTTP/3 on tcpAddr's host and port (the
// TCP listener's bound address, so port 0 gets the same free port number
// when UDP has it free too) and builds its server for h.
func (p *Public) ListenQUIC(tcpAddr net.Addr, h http.Handler) (*QUIC, error) {
	tc, err := p.tlsConfig()
	if err != nil {
		return nil, err
	}
	conn, err := net.ListenPacket("udp", tcpAddr.String())
	if err != nil {
		return nil, fmt.Errorf("HTTP3: listening on udp %s: %w", tcpAddr, err)
	}
	srv := &http3.Server{
		Handler:        noConnectionHeaders(h),
		TLSConfig:      http3.ConfigureTLSConfig(tc),
		MaxHeaderBytes: MaxHeaderBytes,
		IdleTimeout:    IdleTimeout,
		QUICConfig: &quic.Config{
			// The same bounds as a TCP connection: a handshake within the
			// request-head timeout, streams per connection as HTTP/2's.
			HandshakeIdleTimeout: ReadHeaderTimeout,
			MaxIdleTimeout:       IdleTimeout,
			MaxIncomingStreams:   int64(p.cfg.HTTP2MaxConcurrentStreams),
		},
		Logger: p.log,
	}
	return &QUIC{conn: conn, srv: srv}, nil
}

// Addr is the UDP address HTTP/3 is served on.
func (q *QUIC) Addr() net.Addr { return q.conn.LocalAddr() }

// AltSvc is the Alt-Svc value that tells HTTPS clients where HTTP/3 is.
func (q *QUIC) AltSvc() string {
	return `h3=":` + strconv.Itoa(q.conn.LocalAddr().(*net.UDPAddr).Port) + `"; ma=86400`
}

// Serve answers HTTP/3 until Close.
func (q *QUIC) Serve() error { return q.srv.Serve(q.conn) }

// Close stops the server and its connections at once (QUIC has no
// draining of its own here: shutdown has given them their time already).
func (q *QUIC) Close() error {
	err := q.srv.Close()
	q.conn.Close()
	return err
}

// WithAltSvc advertises HTTP/3 (q.AltSvc) on the answers to requests that
// came over TLS on TCP: the header goes on before h runs, so every answer,
// the gateway's own errors included, carries it. A backend's own Alt-Svc
// never reaches clients (the proxy drops it): it would name the backend.
func WithAltSvc(h http.Handler, q *QUIC) http.Handler {
	v := []string{q.AltSvc()}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil && r.ProtoMajor < 3 {
			w.Header()["Alt-Svc"] = v
		}
		h.ServeHTTP(w, r)
	})
}

// connectionHeaders are HTTP/1.1's connection-specific header fields, which
// HTTP/3 forbids (RFC 9114 §4.2): a client must treat an answer carrying
// one as malformed. The steps set Connection: close to end HTTP/1.1
// connections; net/http drops it from HTTP/2 answers, the HTTP/3 server
// does not, so it goes here.
var connectionHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade"}

// noConnectionHeaders strips connectionHeaders from every HTTP/3 answer.
func noConnectionHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&h3Writer{ResponseWriter: w}, r)
	})
}

// h3Writer cleans the header block once, when it is sent.
type h3Writer struct {
	http.ResponseWriter
	sent bool
}

func (w *h3Writer) clean() {
	if w.sent {
		return
	}
	w.sent = true
	h := w.ResponseWriter.Header()
	for _, k := range connectionHeaders {
		delete(h, k)
	}
}

func (w *h3Writer) WriteHeader(code int) {
	if code >= 200 {
		w.clean()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *h3Writer) Write(p []byte) (int, error) {
	w.clean()
	return w.ResponseWriter.Write(p)
}

func (w *h3Writer) Flush() {
	w.clean()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// Unwrap lets http.ResponseController reach the HTTP/3 writer.
func (w *h3Writer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

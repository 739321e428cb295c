// Package framing watches the raw bytes of the public listener's client
// connections for what net/http parses away before a handler can see it.
//
// net/http ignores Transfer-Encoding on HTTP/1.0 requests (and deletes the
// header), framing the body by Content-Length, or as empty. A client that
// sends an HTTP/1.0 request with "Transfer-Encoding: chunked" on a kept-
// alive connection then has its chunked body parsed as the next request: a
// request smuggled past whatever checked the first. RFC 9112 §6.1 says a
// server must treat such a message as faulty and close the connection, and
// nginx answers 400. A Conn remembers whether a Transfer-Encoding header
// line crossed it, so the gateway can refuse an HTTP/1.0 request on it.
package framing

import (
	"bytes"
	"io"
	"net"
	"sync/atomic"
)

// Listener wraps every accepted connection in a Conn.
type Listener struct{ net.Listener }

// Accept returns the next connection, wrapped.
func (l Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &Conn{Conn: c}, nil
}

// Conn scans what is read from it while no handler is running — request
// heads, and whatever arrived with them — for a line that starts with
// "Transfer-Encoding" (any case). Bodies read by handlers are not scanned.
// The finding is sticky for the connection: a client that sent chunked
// requests has no business sending HTTP/1.0 ones on the same connection.
type Conn struct {
	net.Conn
	serving atomic.Bool
	sawTE   atomic.Bool
	// partial is how much of teLine the previous read ended with (a header
	// line split across reads). net/http reads from its own goroutine and
	// from a background one, never both at once, but the two may meet
	// around a handler's start.
	partial atomic.Int32
}

// teLine is what a Transfer-Encoding header line starts with, lower case.
const teLine = "\ntransfer-encoding"

func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 && !c.serving.Load() && !c.sawTE.Load() {
		c.scan(p[:n])
	}
	return n, err
}

// Serving marks a handler as running (true) or finished (false).
func (c *Conn) Serving(on bool) { c.serving.Store(on) }

// SawTransferEncoding reports whether a Transfer-Encoding header line has
// been read from the connection.
func (c *Conn) SawTransferEncoding() bool { return c.sawTE.Load() }

func (c *Conn) scan(p []byte) {
	if k := int(c.partial.Swap(0)); k > 0 {
		want := teLine[k:]
		n := min(len(want), len(p))
		switch {
		case !equalFold(p[:n], want[:n]):
		case n == len(want):
			c.sawTE.Store(true)
			return
		default:
			c.partial.Store(int32(k + n))
			return
		}
	}
	for {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			return
		}
		p = p[i:]
		n := min(len(teLine), len(p))
		if equalFold(p[:n], teLine[:n]) {
			if n == len(teLine) {
				c.sawTE.Store(true)
				return
			}
			c.partial.Store(int32(n)) // the line goes on in the next read
			return
		}
		p = p[1:]
	}
}

// equalFold compares b with the lower-case ASCII s, ignoring the case of
// b's letters.
func equalFold(b []byte, s string) bool {
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// CloseWrite keeps net/http's half-close before closing a connection after
// an error answer, so the client reads the answer instead of a RST.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the inner connection's splice/sendfile path.
func (c *Conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

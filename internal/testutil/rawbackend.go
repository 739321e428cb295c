package testutil

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// RawBackend is a loopback TCP backend whose every connection runs a
// handler that writes bytes by hand, for answers no well-behaved server
// gives. It counts the connections it accepted and notes each one that
// ended (the handler returned: the backend hung up, or the client did and
// the handler saw it).
type RawBackend struct {
	ln     net.Listener
	conns  atomic.Int32
	closed chan struct{}
}

// NewRawBackend starts the backend; the test's cleanup closes it and every
// connection still open. handle gets each connection's 1-based number.
func NewRawBackend(t testing.TB, handle func(n int, c net.Conn, br *bufio.Reader)) *RawBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &RawBackend{ln: ln, closed: make(chan struct{}, 1000)}
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		open []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close() // unblocks handlers waiting on a pooled connection
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			n := int(b.conns.Add(1))
			wg.Go(func() {
				defer func() { c.Close(); b.closed <- struct{}{} }()
				handle(n, c, bufio.NewReader(c))
			})
		}
	})
	return b
}

// Addr is the backend's host:port.
func (b *RawBackend) Addr() string { return b.ln.Addr().String() }

// URL is the backend's http:// base URL, without a path.
func (b *RawBackend) URL() string { return "http://" + b.Addr() }

// Conns is the number of connections accepted so far.
func (b *RawBackend) Conns() int { return int(b.conns.Load()) }

// WaitClosed waits for n more connections to end, failing the test after
// five seconds without one.
func (b *RawBackend) WaitClosed(t testing.TB, n int) {
	t.Helper()
	for range n {
		select {
		case <-b.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("a backend connection was not closed")
		}
	}
}

// ServeOK is a RawBackend handler answering every request on its
// connection with a small keep-alive 200 until the client hangs up.
func ServeOK(_ int, c net.Conn, br *bufio.Reader) {
	for {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		io.Copy(io.Discard, req.Body)
		io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
	}
}

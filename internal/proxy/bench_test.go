package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/portcullis/portcullis/internal/testutil"
)

// BenchmarkProxyKeepAliveGET proxies one GET with a 100-byte answer
// through the proxy handler on a kept upstream connection, with each
// upstream client; the parallel variant shows what the transport's
// per-connection goroutines cost under concurrency. Only the handler and
// the client run: the request is handed to ServeHTTP directly and the
// answer is discarded.
func BenchmarkProxyKeepAliveGET(b *testing.B) {
	answer := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n" + strings.Repeat("a", 100)
	be := testutil.NewRawBackend(b, func(_ int, c net.Conn, br *bufio.Reader) {
		for {
			if _, err := http.ReadRequest(br); err != nil {
				return
			}
			io.WriteString(c, answer)
		}
	})
	for _, uc := range upstreamClients {
		b.Run(uc.name, func(b *testing.B) {
			c := uc.new()
			defer c.CloseIdleConnections()
			h := newHandler(b, c, be.URL(), routeOpts{})
			req := httptest.NewRequest(http.MethodGet, "/bench", nil)
			w := newDiscardWriter()
			b.ReportAllocs()
			for b.Loop() {
				w.proxy(b, h, req)
			}
		})
		b.Run(uc.name+"/parallel", func(b *testing.B) {
			c := uc.new()
			defer c.CloseIdleConnections()
			h := newHandler(b, c, be.URL(), routeOpts{})
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				req := httptest.NewRequest(http.MethodGet, "/bench", nil)
				w := newDiscardWriter()
				for pb.Next() {
					w.proxy(b, h, req)
				}
			})
		})
	}
}

// discardWriter is a reusable ResponseWriter that keeps only the status.
type discardWriter struct {
	h    http.Header
	code int
}

func newDiscardWriter() *discardWriter { return &discardWriter{h: make(http.Header)} }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }

func (w *discardWriter) proxy(b *testing.B, h *Handler, req *http.Request) {
	clear(w.h)
	w.code = 0
	serveProxied(h, w, req)
	if w.code != http.StatusOK {
		b.Errorf("status %d", w.code)
	}
}

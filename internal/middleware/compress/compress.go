// Package compress is the compression step of a route:
// gzip, or zstd when the client ranks it at least as high, for answers
// worth it (COMPRESSION_MIN_BYTES and up, a compressible type, not encoded
// already, not Cache-Control: no-transform), with Vary: Accept-Encoding,
// Content-Length dropped for the encoded body and strong ETags weakened
// (the encoded bytes differ; the resource is the same). The encoder is
// klauspost/compress's gzhttp.
package compress

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"

	"github.com/portcullis/portcullis/internal/gwerror"

	"github.com/klauspost/compress/gzhttp"
)

// New returns the step. minBytes is COMPRESSION_MIN_BYTES.
func New(minBytes int) (func(http.Handler) http.Handler, error) {
	wrap, err := gzhttp.NewWrapper(
		gzhttp.MinSize(minBytes),
		gzhttp.ContentTypeFilter(Compressible),
		// Never invent a Content-Type by sniffing: the upstream's answer
		// is passed on as it labelled it (nosniff).
		gzhttp.SetContentType(false),
	)
	if err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		s := &step{plain: next}
		s.gz = wrap(http.HandlerFunc(s.inner))
		return s
	}, nil
}

type step struct {
	plain http.Handler
	gz    http.Handler
}

// pair holds the two writers one compressed request needs, allocated (and
// pooled) together: outer sits between gzhttp and the client, inner
// between the route and gzhttp.
type pair struct {
	outer outer
	inner inner
	next  http.Handler
}

var pairs = sync.Pool{New: func() any { return new(pair) }}

func (s *step) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(r.Header["Accept-Encoding"]) == 0 || r.Method == http.MethodHead ||
		len(r.Header["Upgrade"]) > 0 || strings.Contains(r.Header.Get("Accept"), "text/event-stream") ||
		gwerror.IsGRPC(r) {
		// Nothing to encode for this client; upgrades, event streams and
		// gRPC (which compresses its own messages) are never buffered
		// behind an encoder.
		s.plain.ServeHTTP(w, r)
		return
	}
	p := pairs.Get().(*pair)
	p.outer = outer{ResponseWriter: w, p: p}
	p.inner = inner{}
	p.next = s.plain
	s.gz.ServeHTTP(&p.outer, r)
	p.outer, p.inner, p.next = outer{}, inner{}, nil
	pairs.Put(p)
}

// inner runs inside gzhttp. gzhttp passes the request and its own writer
// along, and its writer unwraps to ours: that is how the request's pair is
// found again, without a per-request map or a new context.
func (s *step) inner(w http.ResponseWriter, r *http.Request) {
	p := pairOf(w)
	if p == nil { // not reachable with gzhttp's writers; stay correct anyway
		s.plain.ServeHTTP(w, r)
		return
	}
	p.inner.ResponseWriter = w
	p.next.ServeHTTP(&p.inner, r)
}

func pairOf(w http.ResponseWriter) *pair {
	for range 8 {
		if o, ok := w.(*outer); ok {
			return o.p
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			return nil
		}
		w = u.Unwrap()
	}
	return nil
}

// inner marks, before gzhttp decides, the answers it must not touch
// (no-transform) and remembers whether the upstream encoded it itself.
type inner struct {
	http.ResponseWriter
	checked bool
	encoded bool // Content-Encoding set before gzhttp saw the answer
}

func (w *inner) check() {
	if w.checked {
		return
	}
	w.checked = true
	h := w.ResponseWriter.Header()
	w.encoded = len(h["Content-Encoding"]) > 0
	for _, v := range h["Cache-Control"] {
		if strings.Contains(strings.ToLower(v), "no-transform") {
			h.Set(gzhttp.HeaderNoCompression, "1")
		}
	}
}

func (w *inner) WriteHeader(code int) {
	if code >= 200 {
		w.check()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *inner) Write(b []byte) (int, error) {
	w.check()
	return w.ResponseWriter.Write(b)
}

func (w *inner) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *inner) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *inner) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// outer weakens a strong ETag when gzhttp encoded the answer.
type outer struct {
	http.ResponseWriter
	p    *pair
	done bool
}

func (w *outer) header() {
	if w.done {
		return
	}
	w.done = true
	h := w.ResponseWriter.Header()
	if w.p.inner.encoded || len(h["Content-Encoding"]) == 0 {
		return
	}
	if et := h["Etag"]; len(et) == 1 && !strings.HasPrefix(et[0], "W/") {
		h["Etag"] = []string{"W/" + et[0]}
	}
}

func (w *outer) WriteHeader(code int) {
	if code >= 200 {
		w.header()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *outer) Write(b []byte) (int, error) {
	w.header()
	return w.ResponseWriter.Write(b)
}

func (w *outer) FlushError() error {
	w.header()
	return http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *outer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

func (w *outer) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// Compressible reports whether a Content-Type is worth encoding: gzhttp's
// default list (no audio, video, JPEG or archives) minus the other formats
// that are compressed already (images but SVG, web fonts, PDF, opaque
// binaries) and event streams.
func Compressible(ct string) bool {
	if !gzhttp.DefaultContentTypeFilter(ct) {
		return false
	}
	ct = strings.ToLower(strings.TrimSpace(ct))
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = strings.TrimSpace(ct[:i])
	}
	switch {
	case strings.HasPrefix(ct, "image/"):
		return ct == "image/svg+xml" || ct == "image/x-icon" || ct == "image/bmp"
	case strings.HasPrefix(ct, "font/woff"), ct == "application/font-woff",
		ct == "application/pdf", ct == "application/octet-stream",
		ct == "text/event-stream":
		return false
	}
	return true
}

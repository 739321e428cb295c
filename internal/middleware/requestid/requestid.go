// Package requestid gives every request an X-Request-ID: the client's when it
// is a sane token (≤ 128 chars of [A-Za-z0-9._-]), else a new one. The same
// ID goes upstream, back to the client and into every log line.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strconv"
	"sync/atomic"

	"github.com/portcullis/portcullis/internal/request"
)

// Header is the request/response header carrying the ID.
const Header = "X-Request-Id"

// MaxLen is the longest client-supplied ID kept.
const MaxLen = 128

// Generator makes unique IDs: a random per-process prefix and a counter, so
// minting one costs an atomic add and no syscall.
type Generator struct {
	prefix string
	n      atomic.Uint64
}

// NewGenerator returns a generator with a fresh random prefix.
func NewGenerator() *Generator {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &Generator{prefix: hex.EncodeToString(b[:]) + "-"}
}

// Next returns a new ID.
func (g *Generator) Next() string {
	var buf [40]byte
	b := append(buf[:0], g.prefix...)
	b = strconv.AppendUint(b, g.n.Add(1), 36)
	return string(b)
}

// Valid reports whether a client-sent ID may be kept.
func Valid(id string) bool {
	if id == "" || len(id) > MaxLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// New returns the middleware.
func New(g *Generator) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			in := request.From(r.Context())
			vals := r.Header[Header]
			if len(vals) == 1 && Valid(vals[0]) {
				in.ID = vals[0]
			} else {
				in.ID = g.Next()
				vals = []string{in.ID}
				r.Header[Header] = vals
			}
			// The same one-element slice serves every header map; nobody
			// modifies header values in place.
			in.IDValues = vals
			w.Header()[Header] = vals
			next.ServeHTTP(w, r)
		})
	}
}

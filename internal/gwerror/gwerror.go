// Package gwerror writes the answers the gateway itself produces as JSON:
// its errors ({"error":"…","request_id":"…"} with the right status) and the
// documents of its own endpoints.
package gwerror

import (
	"encoding/json"
	"net/http"
	"strconv"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/request"
)

// Write sends status with a JSON body naming msg and the request ID. msg is
// gateway-controlled text; it is JSON-escaped anyway.
func Write(w http.ResponseWriter, r *http.Request, status int, msg string) {
	id := ""
	if in := request.From(r.Context()); in != nil {
		id = in.ID
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	b := make([]byte, 0, 64+len(msg)+len(id))
	b = append(b, `{"error":`...)
	b = appendJSONString(b, msg)
	b = append(b, `,"request_id":`...)
	b = appendJSONString(b, id)
	b = append(b, "}\n"...)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

const hex = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// JSON sends status with v as indented JSON, never to be cached: the
// answers of the gateway's own endpoints (/health, /stats, /admin/config).
func JSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

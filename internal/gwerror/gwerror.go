// Package gwerror writes the answers the gateway itself produces as JSON:
// its errors ({"error":"…","request_id":"…"} with the right status) and the
// documents of its own endpoints.
package gwerror

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/portcullis/portcullis/internal/request"
)

// Write sends status with a JSON body naming msg and the request ID. msg is
// gateway-controlled text; it is JSON-escaped anyway.
func Write(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if IsGRPC(r) {
		writeGRPC(w, r, status, msg)
		return
	}
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

// IsGRPC reports whether r is a gRPC call (Content-Type application/grpc,
// application/grpc+proto, ...): its client reads a status from the
// grpc-status header, not the HTTP status.
func IsGRPC(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return len(ct) >= 16 && strings.EqualFold(ct[:16], "application/grpc") && (len(ct) == 16 || ct[16] == '+' || ct[16] == ';')
}

// grpcCodes maps the gateway's own refusals to gRPC status codes, as
// Envoy's local replies do.
var grpcCodes = map[int]string{
	http.StatusBadRequest:            "13", // INTERNAL: the call is malformed
	http.StatusUnauthorized:          "16", // UNAUTHENTICATED
	http.StatusForbidden:             "7",  // PERMISSION_DENIED
	http.StatusNotFound:              "12", // UNIMPLEMENTED: no route serves the method
	http.StatusMethodNotAllowed:      "12",
	http.StatusRequestEntityTooLarge: "8", // RESOURCE_EXHAUSTED
	http.StatusTooManyRequests:       "8",
	http.StatusBadGateway:            "14", // UNAVAILABLE
	http.StatusServiceUnavailable:    "14",
	http.StatusGatewayTimeout:        "4", // DEADLINE_EXCEEDED
}

// writeGRPC answers a gRPC call with a trailers-only response: HTTP 200
// with grpc-status and grpc-message (percent-encoded) in the headers. The
// access log and metrics still record the HTTP status the refusal stands
// for.
func writeGRPC(w http.ResponseWriter, r *http.Request, status int, msg string) {
	code, ok := grpcCodes[status]
	if !ok {
		code = "2" // UNKNOWN
	}
	if in := request.From(r.Context()); in != nil && in.LogStatus == 0 {
		in.LogStatus = status
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("Content-Encoding")
	h.Set("Content-Type", "application/grpc")
	h.Set("Grpc-Status", code)
	h.Set("Grpc-Message", grpcMessage(msg))
	w.WriteHeader(http.StatusOK)
}

// grpcMessage percent-encodes what the gRPC protocol wants encoded in
// grpc-message: '%' and bytes outside printable ASCII.
func grpcMessage(s string) string {
	var b []byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c <= 0x7e && c != '%' {
			if b != nil {
				b = append(b, c)
			}
			continue
		}
		if b == nil {
			b = append([]byte(nil), s[:i]...)
		}
		b = append(b, '%', hex[c>>4], hex[c&15])
	}
	if b == nil {
		return s
	}
	return string(b)
}

package listener

import (
	"net"
	"net/http"
	"strings"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/request"
)

// Redirect is HTTP_REDIRECT_ADDR's handler: every request is answered with
// a 308 to the same path and query on https, at tlsAddr's port (left out
// when it is 443). 308 rather than 301 keeps the method and body of a
// POST that arrived on the wrong scheme. A request whose Host is not a
// plain host name or address gets 400: the Location must not be the
// client's to write.
func Redirect(tlsAddr string) http.Handler {
	suffix := ""
	if _, port, err := net.SplitHostPort(tlsAddr); err == nil && port != "443" && port != "" {
		suffix = ":" + port
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if in := request.From(r.Context()); in != nil {
			in.Endpoint = "redirect"
		}
		host := r.Host
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
		if !validHost(host) {
			gwerror.Write(w, r, http.StatusBadRequest, "a Host header naming this gateway is required")
			return
		}
		if strings.IndexByte(host, ':') >= 0 {
			host = "[" + host + "]" // an IPv6 literal
		}
		target := "https://" + host + suffix + r.URL.EscapedPath()
		if r.URL.RawQuery != "" {
			target += "?" + r.URL.RawQuery
		}
		w.Header().Set("Location", target)
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(http.StatusPermanentRedirect)
	})
}

// validHost accepts DNS names and IP literals: letters, digits, '-', '.',
// and ':' for IPv6, nothing that could end the authority of a URL.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		c := h[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '.', c == ':':
		default:
			return false
		}
	}
	return true
}

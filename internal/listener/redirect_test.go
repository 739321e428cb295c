package listener

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestRedirect(t *testing.T) {
	tests := []struct {
		name, tlsAddr, host, target string
		wantStatus                  int
		wantLocation                string
	}{
		{name: "port kept", tlsAddr: ":8443", host: "api.example.com", target: "/a/b?x=1", wantStatus: 308, wantLocation: "https://api.example.com:8443/a/b?x=1"},
		{name: "443 left out", tlsAddr: "0.0.0.0:443", host: "api.example.com:80", target: "/", wantStatus: 308, wantLocation: "https://api.example.com/"},
		{name: "escaped path kept", tlsAddr: ":443", host: "h", target: "/a%2Fb/%20", wantStatus: 308, wantLocation: "https://h/a%2Fb/%20"},
		{name: "IPv6 literal", tlsAddr: ":443", host: "[2001:db8::1]:80", target: "/", wantStatus: 308, wantLocation: "https://[2001:db8::1]/"},
		{name: "userinfo in Host", tlsAddr: ":443", host: "evil.example@good", target: "/", wantStatus: 400},
		{name: "path in Host", tlsAddr: ":443", host: "evil.example/x", target: "/", wantStatus: 400},
		{name: "empty Host", tlsAddr: ":443", host: "", target: "/", wantStatus: 400},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, tc.target, nil)
			r.Host = tc.host
			w := httptest.NewRecorder()
			Redirect(tc.tlsAddr).ServeHTTP(w, r)
			if w.Code != tc.wantStatus || w.Header().Get("Location") != tc.wantLocation {
				t.Errorf("%d %q, want %d %q", w.Code, w.Header().Get("Location"), tc.wantStatus, tc.wantLocation)
			}
		})
	}
}

package clientip

import (
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

func TestStepFillsInfoAndScrubsUntrustedHeaders(t *testing.T) {
	res := realip.NewResolver([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")})
	tests := []struct {
		name, remote string
		wantClient   string
		wantTrusted  bool
		wantXFF      string // the client's X-Forwarded-For as the next step sees it
	}{
		{name: "untrusted peer: its forwarding headers go", remote: "198.51.100.7:1234", wantClient: "198.51.100.7"},
		{name: "trusted proxy: believed and kept", remote: "10.0.0.2:1234", wantClient: "203.0.113.9", wantTrusted: true, wantXFF: "203.0.113.9"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seen *request.Info
			var xff, proto string
			h := New(res)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen = request.From(r.Context())
				xff, proto = r.Header.Get("X-Forwarded-For"), r.Header.Get("X-Forwarded-Proto")
			}))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tc.remote
			r.Header.Set("X-Forwarded-For", "203.0.113.9")
			r.Header.Set("X-Forwarded-Proto", "https")
			_, r = request.New(httptest.NewRecorder(), r, time.Now(), 0)
			h.ServeHTTP(httptest.NewRecorder(), r)
			if seen.ClientIPText != tc.wantClient || seen.PeerTrusted != tc.wantTrusted || xff != tc.wantXFF || (proto != "") != tc.wantTrusted {
				t.Errorf("client %q trusted %v; next step saw X-Forwarded-For %q, X-Forwarded-Proto %q",
					seen.ClientIPText, seen.PeerTrusted, xff, proto)
			}
		})
	}
}

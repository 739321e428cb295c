package endpoints

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/request"
)

func TestOwnEndpointsWinOnExactPathsOnly(t *testing.T) {
	own := map[string]http.Handler{"/health": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusTeapot)
	})}
	h := New(own)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusAccepted) }))
	for _, tc := range []struct {
		path     string
		want     int
		endpoint string
	}{
		{path: "/health", want: http.StatusTeapot, endpoint: "/health"},
		{path: "/health/x", want: http.StatusAccepted, endpoint: "unmatched"},
		{path: "/healthz", want: http.StatusAccepted, endpoint: "unmatched"},
	} {
		w := httptest.NewRecorder()
		in, r := request.New(w, httptest.NewRequest(http.MethodGet, tc.path, nil), time.Now(), 0)
		h.ServeHTTP(w, r)
		if w.Code != tc.want || in.Endpoint != tc.endpoint {
			t.Errorf("%s: %d, endpoint %q; want %d, %q", tc.path, w.Code, in.Endpoint, tc.want, tc.endpoint)
		}
	}
}

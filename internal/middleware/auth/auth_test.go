package auth

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	authn "github.com/portcullis/portcullis/internal/auth"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/testutil"
)

type fakeTokens struct{}

func (fakeTokens) Enabled() bool { return true }
func (fakeTokens) VerifySubject(t string) (string, string, error) {
	switch t {
	case "good":
		return "alice", "", nil
	case "old":
		return "", authn.ReasonExpired, errors.New("expired")
	}
	return "", authn.ReasonInvalid, errors.New("bad")
}

type fakeKeys struct{}

func (fakeKeys) Enabled() bool { return true }
func (fakeKeys) LookupName(_ context.Context, k string) (string, error) {
	switch k {
	case "key-1":
		return "billing", nil
	case "revoked":
		return "", authn.ErrKeyRevoked
	case "down":
		return "", authn.ErrKeyStore
	}
	return "", errors.New("unknown")
}

func TestAuth(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, err := authn.NewVerifier(fakeTokens{}, fakeKeys{}, []string{"/health", "/api/v1/public"}, reg)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name        string
		requireAuth bool
		path        string
		hdr         map[string]string
		status      int
		user        string
		method      string
		reason      string
		apiKeyKept  bool
	}{
		{name: "route without auth passes anonymous", path: "/x", status: 200},
		{name: "missing credentials", requireAuth: true, path: "/x", status: 401, reason: authn.ReasonMissing},
		{name: "public path", requireAuth: true, path: "/api/v1/public/docs", status: 200},
		{name: "public path exact", requireAuth: true, path: "/health", status: 200},
		{name: "not public: shares a prefix but not a segment", requireAuth: true, path: "/healthz", status: 401, reason: authn.ReasonMissing},
		{name: "valid JWT", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Bearer good"}, status: 200, user: "alice", method: authn.MethodJWT},
		{name: "a key riding along a valid JWT is not forwarded", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Bearer good", "X-API-Key": "someone-elses"}, status: 200, user: "alice", method: authn.MethodJWT},
		{name: "scheme is case-insensitive", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "bEaReR good"}, status: 200, user: "alice", method: authn.MethodJWT},
		{name: "expired JWT", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Bearer old"}, status: 401, reason: authn.ReasonExpired},
		{name: "invalid JWT", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Bearer nope"}, status: 401, reason: authn.ReasonInvalid},
		{name: "Basic is not a bearer", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Basic Z29vZA=="}, status: 401, reason: authn.ReasonInvalid},
		{name: "empty bearer", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Bearer   "}, status: 401, reason: authn.ReasonInvalid},
		{name: "valid API key, removed before upstream", requireAuth: true, path: "/x", hdr: map[string]string{"X-API-Key": "key-1"}, status: 200, user: "billing", method: authn.MethodAPIKey},
		{name: "revoked API key", requireAuth: true, path: "/x", hdr: map[string]string{"X-API-Key": "revoked"}, status: 401, reason: authn.ReasonRevoked, apiKeyKept: true},
		{name: "unknown API key", requireAuth: true, path: "/x", hdr: map[string]string{"X-API-Key": "guess"}, status: 401, reason: authn.ReasonInvalid, apiKeyKept: true},
		{name: "key store down fails closed with 503", requireAuth: true, path: "/x", hdr: map[string]string{"X-API-Key": "down"}, status: 503, reason: authn.ReasonStoreError, apiKeyKept: true},
		{name: "a bad JWT is not rescued by a good key", requireAuth: true, path: "/x", hdr: map[string]string{"Authorization": "Bearer nope", "X-API-Key": "key-1"}, status: 401, reason: authn.ReasonInvalid, apiKeyKept: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var gotUser, gotMethod string
			var keyKept bool
			next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				in := request.From(r.Context())
				gotUser, gotMethod = in.UserID, in.AuthMethod
				keyKept = r.Header.Get("X-Api-Key") != ""
				w.WriteHeader(200)
			})
			h := New(s, tc.requireAuth, nil)(next)
			before := testutil.SeriesValue(t, reg, "auth_failures_total", map[string]string{"reason": tc.reason})
			r := httptest.NewRequest("GET", tc.path, nil)
			for k, v := range tc.hdr {
				r.Header.Set(k, v)
			}
			in, r := request.New(httptest.NewRecorder(), r, time.Now(), 0)
			in.Path = tc.path
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code != tc.status {
				t.Fatalf("status %d, want %d (%s)", rec.Code, tc.status, rec.Body)
			}
			if tc.status == 401 && rec.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			if tc.status == 200 && (gotUser != tc.user || gotMethod != tc.method) {
				t.Errorf("identity %q/%q, want %q/%q", gotUser, gotMethod, tc.user, tc.method)
			}
			if tc.status == 200 && tc.method != "" && keyKept {
				t.Error("the API key went upstream")
			}
			if tc.reason != "" {
				if got := testutil.SeriesValue(t, reg, "auth_failures_total", map[string]string{"reason": tc.reason}) - before; got != 1 {
					t.Errorf("auth_failures_total{reason=%q} grew by %v, want 1", tc.reason, got)
				}
			}
		})
	}
}

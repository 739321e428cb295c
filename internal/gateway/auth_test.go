package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/auth/jwtauth"
)

const testSecret = "0123456789abcdef0123456789abcdef-test"

func TestRequireAuthWithJWT(t *testing.T) {
	up, _ := serve(t, echoHandler("private"))
	gw := start(t, map[string]string{
		"JWT_SECRET":     testSecret,
		"PUBLIC_PATHS":   "/api/v1/public",
		"SERVICE_ROUTES": routes(`{"prefix":"/api","target_url":"`+up+`","require_auth":true}`, `{"prefix":"/open","target_url":"`+up+`"}`),
	})
	now := time.Now()
	good, err := jwtauth.Mint([]byte(testSecret), "alice", time.Hour, "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	expired, _ := jwtauth.Mint([]byte(testSecret), "alice", time.Minute, "", "", now.Add(-time.Hour))
	forged, _ := jwtauth.Mint([]byte("another-secret-another-secret-xx"), "admin", time.Hour, "", "", now)

	tests := []struct {
		name   string
		path   string
		hdr    []string
		status int
		user   string
	}{
		{name: "no credentials", path: "/api/x", status: 401},
		{name: "valid token", path: "/api/x", hdr: []string{"Authorization", "Bearer " + good}, status: 200, user: "alice"},
		{name: "spoofed identity header is replaced", path: "/api/x", hdr: []string{"Authorization", "Bearer " + good, "X-User-ID", "admin"}, status: 200, user: "alice"},
		{name: "expired token", path: "/api/x", hdr: []string{"Authorization", "Bearer " + expired}, status: 401},
		{name: "token signed with another key", path: "/api/x", hdr: []string{"Authorization", "Bearer " + forged}, status: 401},
		{name: "alg none", path: "/api/x", hdr: []string{"Authorization", "Bearer eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."}, status: 401},
		{name: "public path needs nothing", path: "/api/v1/public/docs", status: 200},
		{name: "public path by clean path only", path: "/api/v1/public/../../secret", status: 401},
		{name: "route without require_auth", path: "/open/x", hdr: []string{"X-User-ID", "admin"}, status: 200},
		{name: "API key with no key source configured", path: "/api/x", hdr: []string{"X-API-Key", "guess"}, status: 401},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, gw.URL+tc.path, tc.hdr...)
			if resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d: %s", resp.StatusCode, tc.status, body)
			}
			if tc.status == 401 {
				if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge")
				}
				securityHeadersOn(t, resp)
				return
			}
			e := decodeEcho(t, body)
			if got := e.Header.Get("X-User-Id"); got != tc.user {
				t.Errorf("upstream X-User-ID = %q, want %q", got, tc.user)
			}
			if tc.user != "" && e.Header.Get("X-Auth-Method") != "jwt" {
				t.Errorf("X-Auth-Method = %q", e.Header.Get("X-Auth-Method"))
			}
		})
	}
	_, m := get(t, gw.OpsURL+"/metrics")
	for _, want := range []string{`auth_failures_total{reason="missing"} 2`, `auth_failures_total{reason="expired"} 1`} {
		if !strings.Contains(string(m), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

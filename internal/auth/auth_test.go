package auth

import (
	"context"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestPublic(t *testing.T) {
	v, err := NewVerifier(nil, nil, []string{"/health", "/api/v1/public"}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]bool{
		"/health":             true,
		"/health/live":        true,
		"/healthz":            false,
		"/api/v1/public":      true,
		"/api/v1/public/docs": true,
		"/api/v1/publicity":   false,
		"/":                   false,
		"/api":                false,
	} {
		if got := v.Public(path); got != want {
			t.Errorf("Public(%q) = %v, want %v", path, got, want)
		}
	}
}

func TestBearer(t *testing.T) {
	for _, tc := range []struct {
		header, token string
		ok            bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer abc", "abc", true},
		{"BEARER  abc ", "abc", true},
		{"Bearer ", "", false},
		{"Bearer    ", "", false},
		{"Basic abc", "", false},
		{"Bearerabc", "", false},
		{"", "", false},
	} {
		token, ok := bearer(tc.header)
		if token != tc.token || ok != tc.ok {
			t.Errorf("bearer(%q) = %q, %v; want %q, %v", tc.header, token, ok, tc.token, tc.ok)
		}
	}
}

// With no method configured, credentials are refused as invalid, not
// waved through and not a crash.
func TestNoMethodConfigured(t *testing.T) {
	v, err := NewVerifier(nil, nil, nil, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	if v.Enabled() {
		t.Fatal("Enabled with no method")
	}
	for _, c := range [][2]string{{"Bearer x", ""}, {"", "some-key"}} {
		if _, reason, _ := v.Authenticate(context.Background(), c[0], c[1]); reason != ReasonInvalid {
			t.Errorf("Authenticate(%q, %q) reason %q, want %q", c[0], c[1], reason, ReasonInvalid)
		}
	}
	if _, reason, _ := v.Authenticate(context.Background(), "", ""); reason != ReasonMissing {
		t.Errorf("no credentials: reason %q, want %q", reason, ReasonMissing)
	}
}

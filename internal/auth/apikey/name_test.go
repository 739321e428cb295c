package apikey

import (
	"strings"
	"testing"
)

func TestValidName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{name: "billing", ok: true},
		{name: "team-a/service.1", ok: true},
		{name: "", ok: false},
		{name: " padded", ok: false},
		{name: "alice, admin", ok: false}, // an upstream reads a comma as a list
		{name: "bad\r\nX-Admin: 1", ok: false},
		{name: "caf\xc3\xa9", ok: false},
		{name: strings.Repeat("a", maxNameBytes+1), ok: false},
	}
	for _, tc := range tests {
		if got := validName(tc.name); got != tc.ok {
			t.Errorf("validName(%q) = %v, want %v", tc.name, got, tc.ok)
		}
	}
}

package admin

import (
	"net/netip"
	"strings"
	"testing"
)

func TestParseIPOrCIDR(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string // canonical entry; "" = refused
		wantErr string
	}{
		{name: "IPv4", in: "203.0.113.7", want: "203.0.113.7/32"},
		{name: "IPv4 CIDR", in: "10.0.0.0/8", want: "10.0.0.0/8"},
		{name: "host bits masked", in: "10.1.2.3/8", want: "10.0.0.0/8"},
		{name: "IPv6", in: "2001:DB8::1", want: "2001:db8::1/128"},
		{name: "IPv6 CIDR", in: "2001:db8::/32", want: "2001:db8::/32"},
		{name: "IPv4-mapped", in: "::ffff:203.0.113.7", want: "203.0.113.7/32"},
		{name: "IPv4-mapped CIDR", in: "::ffff:10.0.0.0/104", want: "10.0.0.0/8"},
		{name: "widest IPv4", in: "128.0.0.0/1", want: "128.0.0.0/1"},
		{name: "empty", in: "", wantErr: "empty"},
		{name: "junk", in: "unknown", wantErr: "not a valid IP address"},
		{name: "leading zeros", in: "010.000.000.001", wantErr: "not a valid IP address"},
		{name: "port", in: "[2001:db8::1]:443", wantErr: "not a valid IP address"},
		{name: "zone", in: "fe80::1%eth0", wantErr: "zone"},
		{name: "zone in CIDR", in: "fe80::1%eth0/64", wantErr: "zone"},
		{name: "IPv4 /0", in: "0.0.0.0/0", wantErr: "/0"},
		{name: "IPv6 /0", in: "::/0", wantErr: "/0"},
		{name: "mapped /96 is all IPv4", in: "::ffff:0.0.0.0/96", wantErr: "/0"},
		{name: "mapped shorter than /96", in: "::ffff:0.0.0.0/95", wantErr: "IPv4-mapped"},
		{name: "prefix length with leading zero", in: "10.0.0.0/08", wantErr: "not a valid CIDR"},
		{name: "negative length", in: "10.0.0.0/-1", wantErr: "not a valid CIDR"},
		{name: "control bytes quoted in the message", in: "1.2.3.4\r\nX", wantErr: `"1.2.3.4\r\nX"`},
		{name: "overlong", in: strings.Repeat("a", 65), wantErr: "at most 64"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseIPOrCIDR(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseIPOrCIDR(%q) = %v, %v; want an error containing %q", tc.in, p, err, tc.wantErr)
				}
				return
			}
			if err != nil || p.String() != tc.want {
				t.Fatalf("parseIPOrCIDR(%q) = %v, %v; want %s", tc.in, p, err, tc.want)
			}
		})
	}
}

// FuzzParseIPOrCIDR: no input panics; an accepted value is canonical, not
// /0, without zone or IPv4 mapping, covers what was typed, and parses back
// to itself from its text.
func FuzzParseIPOrCIDR(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "10.0.0.0/8", "2001:db8::/32", "::ffff:1.2.3.4", "fe80::1%eth0", "0.0.0.0/0", "::ffff:0:0/96"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := parseIPOrCIDR(s)
		if err != nil {
			if p.IsValid() {
				t.Fatalf("error %v with a valid prefix %v", err, p)
			}
			return
		}
		switch {
		case !p.IsValid():
			t.Fatalf("%q accepted as an invalid prefix", s)
		case p.Bits() == 0:
			t.Fatalf("%q accepted as a /0: %v", s, p)
		case p != p.Masked():
			t.Fatalf("%q accepted unmasked: %v", s, p)
		case p.Addr().Zone() != "" || p.Addr().Is4In6():
			t.Fatalf("%q accepted with a zone or mapping: %v", s, p)
		}
		back, err := parseIPOrCIDR(p.String())
		if err != nil || back != p {
			t.Fatalf("%q → %v does not round-trip: %v, %v", s, p, back, err)
		}
		// What was typed is inside the entry.
		addr := s
		if i := strings.IndexByte(s, '/'); i >= 0 {
			addr = s[:i]
		}
		if a, err := netip.ParseAddr(addr); err != nil || !p.Contains(a.Unmap()) {
			t.Fatalf("%q → %v does not contain the typed address (%v)", s, p, err)
		}
	})
}

package realip

import (
	"net/http"
	"net/netip"
	"testing"
)

func TestResolve(t *testing.T) {
	trusted := []netip.Prefix{
		netip.MustParsePrefix("127.0.0.1/32"),
		netip.MustParsePrefix("10.0.0.0/24"),
		netip.MustParsePrefix("::1/128"),
	}
	r := NewResolver(trusted)
	tests := []struct {
		name    string
		peer    string
		xff     []string
		realIP  string
		client  string
		fwdFor  string
		trusted bool
	}{
		{name: "direct untrusted client, no headers", peer: "203.0.113.7", client: "203.0.113.7", fwdFor: "203.0.113.7"},
		{name: "untrusted client cannot choose its IP by XFF", peer: "203.0.113.7", xff: []string{"1.1.1.1"}, client: "203.0.113.7", fwdFor: "203.0.113.7"},
		{name: "untrusted client cannot choose its IP by X-Real-IP", peer: "203.0.113.7", realIP: "1.1.1.1", client: "203.0.113.7", fwdFor: "203.0.113.7"},
		{name: "trusted proxy: rightmost untrusted is the client", peer: "10.0.0.1", xff: []string{"6.6.6.6, 198.51.100.9"}, client: "198.51.100.9", fwdFor: "198.51.100.9, 10.0.0.1", trusted: true},
		{name: "trusted hops are skipped and kept in order", peer: "10.0.0.1", xff: []string{"6.6.6.6, 198.51.100.9, 10.0.0.5", "10.0.0.6"}, client: "198.51.100.9", fwdFor: "198.51.100.9, 10.0.0.5, 10.0.0.6, 10.0.0.1", trusted: true},
		{name: "trusted proxy without XFF uses X-Real-IP", peer: "127.0.0.1", realIP: "198.51.100.9", client: "198.51.100.9", fwdFor: "198.51.100.9, 127.0.0.1", trusted: true},
		{name: "XFF wins over X-Real-IP", peer: "127.0.0.1", xff: []string{"198.51.100.1"}, realIP: "198.51.100.9", client: "198.51.100.1", fwdFor: "198.51.100.1, 127.0.0.1", trusted: true},
		{name: "trusted proxy without headers is the client", peer: "127.0.0.1", client: "127.0.0.1", fwdFor: "127.0.0.1", trusted: true},
		{name: "all entries trusted: leftmost is the client", peer: "10.0.0.1", xff: []string{"10.0.0.7, 10.0.0.8"}, client: "10.0.0.7", fwdFor: "10.0.0.7, 10.0.0.8, 10.0.0.1", trusted: true},
		{name: "junk stops the walk at the nearest trusted hop", peer: "10.0.0.1", xff: []string{"1.2.3.4, junk, 10.0.0.9"}, client: "10.0.0.9", fwdFor: "10.0.0.9, 10.0.0.1", trusted: true},
		{name: "entries with ports and brackets", peer: "10.0.0.1", xff: []string{"[2001:db8::1]:443"}, client: "2001:db8::1", fwdFor: "2001:db8::1, 10.0.0.1", trusted: true},
		{name: "IPv4-mapped IPv6 entries are unmapped", peer: "10.0.0.1", xff: []string{"::ffff:198.51.100.4"}, client: "198.51.100.4", fwdFor: "198.51.100.4, 10.0.0.1", trusted: true},
		{name: "IPv6 loopback trusted", peer: "::1", xff: []string{"2001:db8::5"}, client: "2001:db8::5", fwdFor: "2001:db8::5, ::1", trusted: true},
		{name: "zoned IPv6 entry is junk, not a fresh key per zone", peer: "10.0.0.1", xff: []string{"fe80::1%eth0"}, client: "10.0.0.1", fwdFor: "10.0.0.1", trusted: true},
		{name: "zoned X-Real-IP ignored", peer: "127.0.0.1", realIP: "fe80::1%x", client: "127.0.0.1", fwdFor: "127.0.0.1", trusted: true},
		{name: "empty elements ignored", peer: "10.0.0.1", xff: []string{" , 198.51.100.2 ,"}, client: "198.51.100.2", fwdFor: "198.51.100.2, 10.0.0.1", trusted: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tc.xff {
				h.Add("X-Forwarded-For", v)
			}
			if tc.realIP != "" {
				h.Set("X-Real-IP", tc.realIP)
			}
			got := r.Resolve(netip.MustParseAddr(tc.peer), h)
			if got.Client.String() != tc.client || got.ForwardedFor != tc.fwdFor || got.PeerTrusted != tc.trusted {
				t.Fatalf("got client=%s fwd=%q trusted=%v; want client=%s fwd=%q trusted=%v",
					got.Client, got.ForwardedFor, got.PeerTrusted, tc.client, tc.fwdFor, tc.trusted)
			}
		})
	}
}

func TestPeerAddr(t *testing.T) {
	for in, want := range map[string]string{
		"1.2.3.4:5":          "1.2.3.4",
		"[::1]:80":           "::1",
		"[::ffff:1.2.3.4]:1": "1.2.3.4",
		"junk":               "invalid IP",
	} {
		if got := PeerAddr(in).String(); got != want {
			t.Errorf("PeerAddr(%q) = %s, want %s", in, got, want)
		}
	}
}

func BenchmarkResolve(b *testing.B) {
	r := NewResolver([]netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")})
	peer := netip.MustParseAddr("203.0.113.7")
	h := http.Header{}
	b.ReportAllocs()
	for b.Loop() {
		r.Resolve(peer, h)
	}
}

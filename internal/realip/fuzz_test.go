package realip

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"
)

// FuzzResolve throws arbitrary X-Forwarded-For / X-Real-IP values at the
// walk. Whatever the header says, the client must be a valid address that
// is either the peer or appears in the header, an untrusted peer is always
// its own client, and the upstream X-Forwarded-For must start with the
// client and end with the peer when the peer is a proxy.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"", "1.2.3.4", "1.2.3.4, 10.0.0.1", "junk, 10.0.0.2", "[2001:db8::1]:80, ::ffff:10.0.0.3",
		",,,", " , ", "10.0.0.1,10.0.0.2,10.0.0.3", "1.2.3.4:99999", "fe80::1%eth0", "0.0.0.0", "::",
	} {
		f.Add(s, "198.51.100.7", true)
		f.Add(s, "", false)
	}
	r := NewResolver([]netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("127.0.0.1/32")})
	f.Fuzz(func(t *testing.T, xff, realIP string, trustedPeer bool) {
		peer := netip.MustParseAddr("203.0.113.5")
		if trustedPeer {
			peer = netip.MustParseAddr("10.1.2.3")
		}
		h := http.Header{}
		if xff != "" {
			for _, line := range strings.Split(xff, "\n") {
				h.Add("X-Forwarded-For", line)
			}
		}
		if realIP != "" {
			h.Set("X-Real-Ip", realIP)
		}
		res := r.Resolve(peer, h)
		if !res.Client.IsValid() {
			t.Fatalf("invalid client for xff %q", xff)
		}
		if res.ClientText != res.Client.String() {
			t.Fatalf("ClientText %q != %s", res.ClientText, res.Client)
		}
		if !trustedPeer && res.Client != peer {
			t.Fatalf("untrusted peer chose its IP %s by header %q", res.Client, xff)
		}
		if res.Client != peer && !strings.Contains(xff+","+realIP, strings.TrimPrefix(res.Client.String(), "::ffff:")) {
			// The client must come from the headers (allowing for
			// normalisation of the text form).
			if _, err := netip.ParseAddr(res.Client.String()); err != nil {
				t.Fatalf("client %s not from headers %q / %q", res.Client, xff, realIP)
			}
		}
		if !strings.HasPrefix(res.ForwardedFor, res.ClientText) {
			t.Fatalf("X-Forwarded-For %q does not start with the client %s", res.ForwardedFor, res.ClientText)
		}
		if res.Client != peer && !strings.HasSuffix(res.ForwardedFor, ", "+peer.String()) {
			t.Fatalf("X-Forwarded-For %q does not end with the proxy peer", res.ForwardedFor)
		}
		if strings.ContainsAny(res.ForwardedFor, "\r\n\x00") {
			t.Fatalf("control bytes in X-Forwarded-For %q", res.ForwardedFor)
		}
	})
}

// Package realip resolves a request's client address: the TCP peer, or,
// when the peer is a trusted proxy (TRUSTED_PROXIES, as nginx's
// set_real_ip_from), the first untrusted address in X-Forwarded-For walked
// from the right. It also builds the X-Forwarded-For the gateway sends
// upstream, and the key per-client state is held under (IPv6 per /64).
package realip

import (
	"errors"
	"net/http"
	"net/netip"
	"strings"
)

// Resolver knows which peers are trusted proxies.
type Resolver struct {
	trusted []netip.Prefix
}

// NewResolver returns a resolver trusting the given prefixes
// (TRUSTED_PROXIES).
func NewResolver(trusted []netip.Prefix) *Resolver {
	return &Resolver{trusted: trusted}
}

// Trusted reports whether addr is a trusted proxy.
func (r *Resolver) Trusted(addr netip.Addr) bool {
	for _, p := range r.trusted {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// Result is what Resolve found.
type Result struct {
	Client       netip.Addr
	Peer         netip.Addr
	PeerTrusted  bool
	ForwardedFor string // X-Forwarded-For to send upstream
	ClientText   string // Client as text
}

// Resolve finds the client of a request from peer (the TCP remote address) and
// the X-Forwarded-For / X-Real-IP headers, which are believed only when the
// peer is trusted. X-Forwarded-For is walked from the right, skipping trusted
// addresses; the first untrusted entry is the client. Entries left of it are
// the client's own claims and are dropped from the upstream header.
func (r *Resolver) Resolve(peer netip.Addr, h http.Header) (res Result) {
	res = Result{Client: peer, Peer: peer}
	if !peer.IsValid() || !r.Trusted(peer) {
		res.ClientText = peer.String()
		res.ForwardedFor = res.ClientText
		return res
	}
	defer func() { res.ClientText = res.Client.String() }()
	res.PeerTrusted = true
	xff := h["X-Forwarded-For"]
	if len(xff) == 0 {
		if v := h["X-Real-Ip"]; len(v) == 1 {
			if a, err := parseEntry(strings.TrimSpace(v[0])); err == nil {
				res.Client = a
				if res.Client != peer {
					res.ForwardedFor = res.Client.String() + ", " + peer.String()
					return res
				}
			}
		}
		res.ForwardedFor = peer.String()
		return res
	}
	// hops collects the trusted entries right of the client, in order.
	var hops []string
	client := netip.Addr{}
	done := false
	for i := len(xff) - 1; i >= 0 && !done; i-- {
		line := xff[i]
		for line != "" {
			var entry string
			if j := strings.LastIndexByte(line, ','); j >= 0 {
				entry, line = line[j+1:], line[:j]
			} else {
				entry, line = line, ""
			}
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			a, err := parseEntry(entry)
			if err != nil {
				// Junk where a trusted proxy should have written an address:
				// stop; the nearest trusted hop is the best we know.
				done = true
				break
			}
			if r.Trusted(a) {
				hops = append(hops, a.String())
				continue
			}
			client = a
			done = true
			break
		}
	}
	if !client.IsValid() {
		// Every entry was trusted (or junk): the leftmost trusted hop is the
		// client, as nginx's real_ip_recursive does.
		if len(hops) > 0 {
			client, _ = netip.ParseAddr(hops[len(hops)-1])
			hops = hops[:len(hops)-1]
		} else {
			client = peer
		}
	}
	res.Client = client
	var b strings.Builder
	b.WriteString(client.String())
	for i := len(hops) - 1; i >= 0; i-- {
		b.WriteString(", ")
		b.WriteString(hops[i])
	}
	if client != peer {
		b.WriteString(", ")
		b.WriteString(peer.String())
	}
	res.ForwardedFor = b.String()
	return res
}

var errZone = errors.New("IPv6 zone in a forwarded address")

// parseEntry parses one X-Forwarded-For element: an IP, possibly with a port
// ("1.2.3.4:5", "[::1]:5") or in brackets. Zoned IPv6 addresses ("fe80::1%x")
// are refused: the zone is free text, so it would give one client endless
// distinct keys (and carry raw bytes into logs).
func parseEntry(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if ap, perr := netip.ParseAddrPort(s); perr == nil {
			a, err = ap.Addr(), nil
		} else if len(s) > 2 && s[0] == '[' && s[len(s)-1] == ']' {
			a, err = netip.ParseAddr(s[1 : len(s)-1])
		}
	}
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, errZone
	}
	return a.Unmap(), nil
}

// PeerAddr parses r.RemoteAddr.
func PeerAddr(remote string) netip.Addr {
	ap, err := netip.ParseAddrPort(remote)
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// Key is the per-client key for limits, counters and lists of per-IP state:
// an IPv4 address as is, an IPv6 address masked to its /64 (one subscriber
// gets a whole /64, so per-address state would be trivial to escape).
func Key(a netip.Addr) netip.Addr {
	if a.Is4() {
		return a
	}
	p, err := a.Prefix(64)
	if err != nil {
		return a
	}
	return p.Addr()
}

// Exempt reports whether the request's client must never be blocked
// outright (the DDoS guard): a trusted proxy that sent no usable
// X-Forwarded-For is itself the client, and blocking it for ten minutes
// would block everyone behind it. It is still rate-limited like any
// client. Callers log it, since it means TRUSTED_PROXIES or the proxy is
// misconfigured.
func Exempt(client, peer netip.Addr, peerTrusted bool) bool {
	return peerTrusted && client == peer
}

package admin

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/portcullis/portcullis/internal/iplist"
)

// maxIPParam bounds the ip parameter: the longest IPv6 CIDR is 43 bytes
// ("ffff:…:ffff/128"); IPv4-mapped forms add a little.
const maxIPParam = 64

// parseIPOrCIDR parses the ip parameter of a list change: one IP or CIDR,
// IPv4 or IPv6, returned in the form the lists store (iplist.Canonical:
// host bits masked, IPv4-mapped IPv6 unmapped; a single IP is a /32 or
// /128). The error names the problem for the 400 answer. Refused: empty or
// overlong input, anything net/netip does not parse strictly (leading
// zeros, ports, brackets, spaces), IPv6 zones, IPv4-mapped prefixes shorter
// than /96, and /0 prefixes of either family.
func parseIPOrCIDR(s string) (netip.Prefix, error) {
	switch {
	case s == "":
		return netip.Prefix{}, errors.New("empty ip")
	case len(s) > maxIPParam:
		return netip.Prefix{}, fmt.Errorf("ip is %d bytes long; an IP or CIDR is at most %d", len(s), maxIPParam)
	case strings.Contains(s, "%"):
		// A zone is local to one host's interfaces; client addresses never
		// carry one, so the entry would match nothing.
		return netip.Prefix{}, fmt.Errorf("%s has an IPv6 zone (%%…); give the address without it", strconv.Quote(s))
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, fmt.Errorf("%s is not a valid CIDR (want e.g. 10.0.0.0/8 or 2001:db8::/32)", strconv.Quote(s))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%s is not a valid IP address", strconv.Quote(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	c, ok := iplist.Canonical(p)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("%s is an IPv4-mapped prefix shorter than /96", strconv.Quote(s))
	}
	if c.Bits() == 0 {
		return netip.Prefix{}, fmt.Errorf("%s is a /0 prefix: it matches every address", strconv.Quote(s))
	}
	return c, nil
}

package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"net/textproto"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/net/http/httpguts"
)

// parser reads variables through lookup; each helper returns the parsed value,
// or the default after recording a problem, so Load can report them all.
type parser struct {
	lookup   func(string) (string, bool)
	errs     []error
	warnings []string
	// production is GATEWAY_ENV=production, for rules that are warnings in
	// development and errors in production.
	production bool
}

// failf records a problem: name, then a sentence.
func (p *parser) failf(name, format string, args ...any) {
	p.errs = append(p.errs, fmt.Errorf("%s: %s", name, fmt.Sprintf(format, args...)))
}

// invalid records the usual problem: the variable, its value and what was expected.
func (p *parser) invalid(name, value, expected string) {
	p.failf(name, "invalid value %s: expected %s", quote(value), expected)
}

func (p *parser) warnf(format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf(format, args...))
}

// raw returns the variable untrimmed; set-but-blank counts as unset.
func (p *parser) raw(name string) (string, bool) {
	v, ok := p.lookup(name)
	if !ok || strings.TrimSpace(v) == "" {
		return "", false
	}
	return v, true
}

// value returns the variable with surrounding blanks removed.
func (p *parser) value(name string) (string, bool) {
	v, ok := p.raw(name)
	return strings.TrimSpace(v), ok
}

func (p *parser) str(name, def string) string {
	if v, ok := p.value(name); ok {
		return v
	}
	return def
}

// secret returns the variable as given: blanks may be part of a secret.
// Secrets never appear in error messages.
func (p *parser) secret(name string) string {
	v, _ := p.raw(name)
	return v
}

func (p *parser) enum(name, def string, allowed ...string) string {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	v = strings.ToLower(v)
	for _, a := range allowed {
		if v == a {
			return v
		}
	}
	p.invalid(name, v, "one of "+strings.Join(allowed, ", "))
	return def
}

func (p *parser) boolean(name string, def bool) bool {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "true", "1":
		return true
	case "false", "0":
		return false
	}
	p.invalid(name, v, "true, false, 1 or 0")
	return def
}

func (p *parser) intVar(name string, def, lo, hi int) int {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < int64(lo) || n > int64(hi) {
		p.invalid(name, v, "an integer "+rangeText(int64(lo), int64(hi)))
		return def
	}
	return int(n)
}

// size parses a byte count: an integer, optionally with a KiB, MiB or GiB suffix.
func (p *parser) size(name string, def, lo int64) int64 {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	n, err := parseSize(v)
	if err != nil || n < lo {
		p.invalid(name, v, "a byte count "+rangeText(lo, maxSize)+" (an integer, optionally with KiB, MiB or GiB)")
		return def
	}
	return n
}

// maxSize (1 PiB) bounds byte counts far below overflow in any arithmetic callers do.
const maxSize = int64(1) << 50

func parseSize(v string) (int64, error) {
	mult := int64(1)
	for _, s := range []struct {
		suffix string
		mult   int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}} {
		if strings.HasSuffix(strings.ToLower(v), s.suffix) {
			v, mult = strings.TrimSpace(v[:len(v)-len(s.suffix)]), s.mult
			break
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, err
	}
	if n < 0 || n > maxSize/mult {
		return 0, strconv.ErrRange
	}
	return n * mult, nil
}

func rangeText(lo, hi int64) string {
	if hi >= math.MaxInt32 {
		return fmt.Sprintf(">= %d", lo)
	}
	return fmt.Sprintf("from %d to %d", lo, hi)
}

func (p *parser) positiveFloat(name string, def float64) float64 {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	f, err := strconv.ParseFloat(v, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f <= 0 {
		p.invalid(name, v, "a number > 0")
		return def
	}
	return f
}

func (p *parser) duration(name string, def time.Duration, allowZero bool) time.Duration {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	d, err := time.ParseDuration(v)
	switch {
	case err != nil:
		p.invalid(name, v, "a duration such as 10s, 5m or 1h30m")
	case d < 0 || (d == 0 && !allowZero):
		if allowZero {
			p.invalid(name, v, "a duration >= 0")
		} else {
			p.invalid(name, v, "a duration > 0")
		}
	default:
		return d
	}
	return def
}

func (p *parser) logLevel(name string, def slog.Level) slog.Level {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	switch strings.ToLower(v) {
	case "debug":
		return slog.LevelDebug
	case "info":
		return slog.LevelInfo
	case "warn", "warning":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	p.invalid(name, v, "one of debug, info, warn, error")
	return def
}

// addr parses a listen address: host:port, :port or a bare port, port 0..65535.
func (p *parser) addr(name, def string) string {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	if isDigits(v) {
		v = ":" + v
	}
	host, port, err := splitHostPort(v, 0)
	if err != nil {
		p.invalid(name, v, "a listen address such as :9777, 127.0.0.1:9777 or 9777 (port 0 to 65535)")
		return def
	}
	return net.JoinHostPort(host, port)
}

// opsAddr parses OPS_ADDR: a listen address, or "public" (returned as "")
// for the ops endpoints on GATEWAY_PORT, which production refuses.
func (p *parser) opsAddr(name, def string) string {
	v, ok := p.value(name)
	if !ok || !strings.EqualFold(v, OpsPublic) {
		return p.addr(name, def)
	}
	if p.production {
		p.failf(name, "refused in production: %q serves /metrics, /stats, /monitor, the admin API and the detailed /health on GATEWAY_PORT to anyone (expected a private address such as 127.0.0.1:9778)", OpsPublic)
	} else {
		p.warnf("%s: %q serves /metrics, /stats, /monitor, /api/system-metrics, the admin API and the detailed /health on GATEWAY_PORT to anyone who can reach it; production refuses it", name, OpsPublic)
	}
	return ""
}

// headerNames parses a comma-separated list of header field names into
// their canonical form. emptyMeansNone: the variable set to the empty
// string is an empty list rather than unset (so its default can be
// switched off).
func (p *parser) headerNames(name, def string, emptyMeansNone bool) []string {
	v, ok := p.value(name)
	if !ok {
		v = def
		if raw, set := p.lookup(name); set && emptyMeansNone && strings.TrimSpace(raw) == "" {
			v = ""
		}
	}
	out := []string{}
	for _, item := range list(v) {
		if !httpguts.ValidHeaderFieldName(item) {
			p.failf(name, "invalid value %s: expected header names such as X-Powered-By, separated by commas", quote(item))
			continue
		}
		if c := textproto.CanonicalMIMEHeaderKey(item); !containsString(out, c) {
			out = append(out, c)
		}
	}
	return out
}

// hostPort parses a host:port to dial: host required, port 1..65535.
func (p *parser) hostPort(name, def string) string {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	host, port, err := splitHostPort(v, 1)
	if err != nil || host == "" {
		p.invalid(name, v, "host:port such as localhost:6379 (port 1 to 65535)")
		return def
	}
	return net.JoinHostPort(host, port)
}

// splitHostPort splits and checks host (empty, an IP or a host name) and a
// numeric port >= minPort, returning the port in canonical form.
func splitHostPort(v string, minPort int) (host, port string, err error) {
	host, port, err = net.SplitHostPort(v)
	if err != nil {
		return "", "", err
	}
	n, err := strconv.Atoi(port)
	if err != nil || !isDigits(port) || n < minPort || n > 65535 {
		return "", "", strconv.ErrRange
	}
	if host != "" && !validHost(host) {
		return "", "", errBadHost
	}
	return host, strconv.Itoa(n), nil
}

var errBadHost = errors.New("bad host")

// validHost accepts an IP address or a DNS name ([A-Za-z0-9_-] labels).
func validHost(h string) bool {
	if _, err := netip.ParseAddr(h); err == nil {
		return true
	}
	if len(h) > 253 {
		return false
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if label == "" || len(label) > 63 {
			return false
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return false
			}
		}
	}
	return true
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// httpURL parses an optional absolute http(s) URL.
func (p *parser) httpURL(name string) string {
	v, ok := p.value(name)
	if !ok {
		return ""
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		p.invalid(name, v, "an absolute http:// or https:// URL")
		return ""
	}
	return v
}

// httpsURL parses an absolute https:// URL, def when unset.
func (p *parser) httpsURL(name, def string) string {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	u, err := url.Parse(v)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		p.invalid(name, v, "an absolute https:// URL")
		return def
	}
	return v
}

// domains parses a comma-separated list of DNS names (lower-cased, a
// trailing dot dropped, each once). A wildcard is refused: it needs the
// DNS-01 challenge, which the gateway does not solve; an IP address too:
// public CAs do not issue for those over ACME's HTTP and TLS challenges.
func (p *parser) domains(name string) []string {
	v, ok := p.value(name)
	if !ok {
		return nil
	}
	var out []string
	for _, item := range strings.Split(v, ",") {
		d := strings.TrimSuffix(strings.ToLower(strings.TrimSpace(item)), ".")
		if d == "" {
			continue
		}
		if !validDNSName(d) {
			p.invalid(name, item, "DNS names such as api.example.com, separated by commas (no wildcards, no IP addresses)")
			continue
		}
		if !slices.Contains(out, d) {
			out = append(out, d)
		}
	}
	if len(out) == 0 {
		p.invalid(name, v, "at least one DNS name")
	}
	return out
}

// validDNSName accepts letters, digits and inner hyphens in labels of 1 to
// 63 bytes, at least two labels, 253 bytes in all, the last label not all
// digits (so no IPv4 address passes).
func validDNSName(d string) bool {
	if len(d) > 253 {
		return false
	}
	labels := strings.Split(d, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			if c := l[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return !isDigits(labels[len(labels)-1])
}

// databaseURL accepts a postgres:// URL or a libpq key=value DSN. The value may
// hold a password, so it is never echoed.
func (p *parser) databaseURL(name string) string {
	v, ok := p.value(name)
	if !ok {
		return ""
	}
	if u, err := url.Parse(v); err == nil && (u.Scheme == "postgres" || u.Scheme == "postgresql") && u.Host != "" {
		return v
	}
	if !strings.Contains(v, "://") && strings.Contains(v, "=") {
		return v
	}
	p.failf(name, "invalid value (not shown, it may hold a password): expected postgres://user:pass@host/db or a key=value DSN")
	return ""
}

// list splits a comma-separated variable, trimming entries and dropping empty ones.
func list(v string) []string {
	var out []string
	for item := range strings.SplitSeq(v, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

// apiKeys hashes the plain keys of keysVar and checks the digests of hashesVar.
// Neither plain keys nor bad digests (which may be plain keys pasted in the
// wrong variable) are ever echoed.
func (p *parser) apiKeys(keysVar, hashesVar string) []string {
	var out []string
	seen := map[string]bool{}
	add := func(d string) {
		if !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	keys, _ := p.raw(keysVar)
	for _, k := range list(keys) {
		if k == seedAPIKey {
			if p.production {
				p.failf(keysVar, "refused in production: contains the seed's demo key, which anyone can read in the README (expected keys of your own)")
			} else {
				p.warnf("%s: contains the seed's demo key %q, which anyone can read in the README; production refuses it", keysVar, seedAPIKey)
			}
		}
		add(digest(k))
	}
	hashes, _ := p.raw(hashesVar)
	for i, h := range list(hashes) {
		h = strings.ToLower(h)
		if !isSHA256Hex(h) {
			p.failf(hashesVar, "entry %d is not a SHA-256 digest (value not shown, it may be a plain key): expected 64 hex characters", i+1)
			continue
		}
		add(h)
	}
	return out
}

func isSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

// prefixes parses a comma-separated list of IPs and CIDRs. noneOK lets the word
// "none" stand for the empty list (for a variable whose default is not empty).
func (p *parser) prefixes(name, def string, noneOK bool) []netip.Prefix {
	v, ok := p.value(name)
	if !ok {
		v = def
	}
	if noneOK && strings.EqualFold(v, "none") {
		return []netip.Prefix{}
	}
	var out []netip.Prefix
	for _, item := range list(v) {
		pfx, why := parsePrefix(item)
		if why != "" {
			p.failf(name, "invalid value %s: expected an IP address or CIDR (%s)", quote(item), why)
			continue
		}
		if !containsPrefix(out, pfx) {
			out = append(out, pfx)
		}
	}
	return out
}

func containsPrefix(ps []netip.Prefix, p netip.Prefix) bool {
	for _, q := range ps {
		if q == p {
			return true
		}
	}
	return false
}

// parsePrefix parses an IP or CIDR into a masked prefix; IPv4-mapped IPv6 is
// unmapped so it matches the IPv4 client addresses the gateway compares with.
// It returns why the item is refused, or "".
func parsePrefix(s string) (netip.Prefix, string) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			return pfx, "not a valid CIDR"
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return pfx, "not a valid IP address"
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	if a := pfx.Addr(); a.Is4In6() {
		if pfx.Bits() < 96 {
			return pfx, "an IPv4-mapped prefix shorter than /96"
		}
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	if pfx.Bits() == 0 {
		return pfx, "a /0 prefix matches every address, surely a mistake"
	}
	return pfx.Masked(), ""
}

// paths parses a comma-separated list of clean path prefixes.
func (p *parser) paths(name, def string) []string {
	v, ok := p.value(name)
	if !ok {
		v = def
	}
	var out []string
	for _, item := range list(v) {
		clean, why := cleanPrefix(item)
		if why != "" {
			p.failf(name, "invalid value %s: expected a clean path prefix (%s)", quote(item), why)
			continue
		}
		if !containsString(out, clean) {
			out = append(out, clean)
		}
	}
	return out
}

func containsString(ss []string, s string) bool {
	for _, t := range ss {
		if t == s {
			return true
		}
	}
	return false
}

// cleanPrefix checks a route or public-path prefix and removes a trailing "/"
// (except for the catch-all "/"). The router matches cleaned, decoded paths,
// so a prefix that no clean path can equal would silently never match.
// It returns why the prefix is refused, or "".
func cleanPrefix(s string) (string, string) {
	switch {
	case !strings.HasPrefix(s, "/"):
		return "", `it must start with "/"`
	case !utf8.ValidString(s):
		return "", "it is not valid UTF-8"
	case strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f }):
		return "", "it has a control character"
	case strings.ContainsAny(s, `%\?#`):
		return "", `it has "%", "\", "?" or "#"`
	case strings.Contains(s, "//"):
		return "", `it has "//"`
	case strings.Contains(s, "/./") || strings.HasSuffix(s, "/."):
		return "", `it has a "." segment`
	case strings.Contains(s, "/../") || strings.HasSuffix(s, "/.."):
		return "", `it has a ".." segment`
	}
	if len(s) > 1 {
		s = strings.TrimSuffix(s, "/")
	}
	return s, ""
}

// requestPath parses an optional path to request (HEALTH_CHECK_PATH); a query is allowed.
func (p *parser) requestPath(name string) string {
	v, ok := p.value(name)
	if !ok {
		return ""
	}
	u, err := url.ParseRequestURI(v)
	if err != nil || !strings.HasPrefix(v, "/") || strings.HasPrefix(v, "//") ||
		strings.ContainsAny(v, "# ") || strings.ContainsFunc(v, func(r rune) bool { return r < 0x20 || r == 0x7f }) || u.Host != "" {
		p.invalid(name, v, `a path starting with "/", such as /healthz`)
		return ""
	}
	return v
}

// origins parses a JSON array of CORS origins: "*" or scheme://host[:port].
func (p *parser) origins(name string, def []string) []string {
	v, ok := p.value(name)
	if !ok {
		return def
	}
	var items []string
	dec := json.NewDecoder(strings.NewReader(v))
	if err := dec.Decode(&items); err != nil || items == nil || dec.More() {
		p.invalid(name, v, `a JSON array of origins such as ["https://app.example.com"] or ["*"]`)
		return def
	}
	out := []string{}
	for _, o := range items {
		norm, okOrigin := normaliseOrigin(o)
		if !okOrigin {
			p.failf(name, "invalid value %s: expected \"*\" or an origin scheme://host[:port] with no path", quote(o))
			continue
		}
		if !containsString(out, norm) {
			out = append(out, norm)
		}
	}
	return out
}

// normaliseOrigin lower-cases an origin as browsers send it (RFC 6454 §6.2).
func normaliseOrigin(o string) (string, bool) {
	if o == "*" {
		return o, true
	}
	u, err := url.Parse(o)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || !validHost(u.Hostname()) ||
		u.User != nil || u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(o, "#") {
		return "", false
	}
	if port := u.Port(); port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", false
		}
	} else if strings.HasSuffix(u.Host, ":") {
		return "", false
	}
	return u.Scheme + "://" + strings.ToLower(u.Host), true
}

// quote renders a value for an error line: quoted (so control characters stay
// escaped and the line stays one line), user info redacted, and cut when long.
func quote(v string) string {
	const maxRunes = 100
	v = redactUserinfo(v)
	if utf8.RuneCountInString(v) > maxRunes {
		r := []rune(v)
		return strconv.Quote(string(r[:maxRunes])) + "…"
	}
	return strconv.Quote(v)
}

// userinfo matches from a URL scheme to the last "@" after it: the user info
// of a URL, taken greedily since a password that failed to parse may hold
// spaces, "/", "#" or "@".
var userinfo = regexp.MustCompile(`(?is)([a-z][a-z0-9+.\-]*://).*@`)

// redactUserinfo hides the user info of any URL in v, before v is echoed in a
// problem line (logged, and shown by POST /admin/reload and GET /admin/config).
// It overreaches on purpose: the value was refused, and a password must not
// reach the log because it did not parse.
func redactUserinfo(v string) string {
	if !strings.Contains(v, "@") {
		return v
	}
	return userinfo.ReplaceAllString(v, "${1}"+Redacted+"@")
}

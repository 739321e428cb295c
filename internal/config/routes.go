package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Target is one backend of a route's pool.
type Target struct {
	// URL is absolute http(s) with a lower-cased host, no user info, query or
	// fragment. Path is the backend's base path without a trailing "/" ("" for none).
	URL *url.URL
	// Weight is 1..1000; default 1.
	Weight int
}

// Route maps a path prefix to a pool of backends, with its per-route policy.
// Every field holds its effective value: defaults from the global variables
// are already applied.
type Route struct {
	// Name is NAME of ROUTE_<NAME>_PREFIX, lower-cased; "" for SERVICE_ROUTES
	// and defaults.
	Name string
	// Prefix is a clean path without a trailing "/"; "/" is the catch-all.
	Prefix string
	// Targets is the pool; never empty, no URL twice.
	Targets []Target
	// StripPrefix removes Prefix before forwarding; default true.
	StripPrefix bool
	// RequireAuth demands a JWT or API key outside PUBLIC_PATHS; default false.
	RequireAuth bool
	// Timeout is timeout_secs, else CONNECTION_TIMEOUT: until response
	// headers, all attempts together.
	Timeout time.Duration
	// CacheTTL is the lifetime of storable answers that carry no explicit
	// freshness: cache_ttl_secs, else CACHE_TTL; 0 = only answers with
	// explicit freshness (s-maxage, max-age, Expires) are stored.
	CacheTTL time.Duration
	// NoCache is cache_ttl_secs set to 0: the cache never touches this route.
	NoCache bool
	// CacheAuthenticated lets responses to credentialed requests be cached;
	// default false.
	CacheAuthenticated bool
	// Algo is algo, else LOAD_BALANCING_ALGO.
	Algo string
	// MaxBodyBytes is max_body_bytes, else MAX_BODY_BYTES.
	MaxBodyBytes int64
	// RateLimitRPS is rate_limit_rps; 0 = no per-route limit.
	RateLimitRPS float64
	// RateLimitBurst is rate_limit_burst; when RateLimitRPS > 0 it is at least 1
	// (ceil(RateLimitRPS) when not set); 0 when there is no limit.
	RateLimitBurst int
	// Methods is methods: the request methods the route serves, upper-case
	// and sorted, HEAD added when GET is there; nil = any method.
	Methods []string
	// BreakerOn5xx is breaker_on_5xx: the backends' own 502, 503 and 504
	// count as failures toward their breakers, not only transport
	// failures; default false.
	BreakerOn5xx bool
	// UpstreamKeepalive is upstream_keepalive: upstream connections are
	// reused; false = a fresh connection per request; default true.
	UpstreamKeepalive bool
	// UpstreamTLS is upstream_tls: how https targets are verified and
	// whether the gateway shows them a client certificate; nil = the
	// system roots, the target's host name, no client certificate.
	UpstreamTLS *UpstreamTLS
	// UpstreamHTTP2 is upstream_http2: https targets are offered HTTP/2 by
	// ALPN (gRPC backends); default false (HTTP/1.1). h2c:// targets always
	// speak cleartext HTTP/2.
	UpstreamHTTP2 bool
}

// UpstreamTLS is a route's upstream_tls object. The files are read when the
// route is built: at boot, and by a reload that changes the route.
type UpstreamTLS struct {
	// CAFile is ca_file: PEM roots the targets' certificates must chain
	// to, instead of the system roots.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are cert_file and key_file: a client
	// certificate and its key, shown to the targets (mutual TLS).
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// ServerName is server_name: the name verified in the targets'
	// certificates (and sent as SNI) instead of each target's host.
	ServerName string `json:"server_name,omitempty"`
	// InsecureSkipVerify is insecure_skip_verify: no verification at all;
	// refused in production.
	InsecureSkipVerify bool `json:"insecure_skip_verify,omitempty"`
}

// Bounds of route fields.
const (
	maxWeight      = 1000
	maxTimeoutSecs = 24 * 60 * 60
	maxTTLSecs     = 365 * 24 * 60 * 60
	maxRouteRPS    = 1e9
)

// defaultRoutes are the seed's nine routes, used only in development when no
// route is configured.
var defaultRoutes = []struct{ prefix, url string }{
	{"/api/studio", "http://localhost:3000"},
	{"/api/studio2", "http://localhost:3001"},
	{"/api/ai", "http://localhost:8741"},
	{"/api/admin", "http://localhost:8242"},
	{"/api/core", "http://localhost:8743"},
	{"/api/node", "http://localhost:8744"},
	{"/api/llm", "http://localhost:8745"},
	{"/api/llm2", "http://localhost:8746"},
	{"/api/agent", "http://localhost:8788"},
}

type rawTarget struct {
	URL    *string
	Weight *int
}

var targetFields = map[string]field[rawTarget]{
	"url":    into(wantString, func(t *rawTarget) **string { return &t.URL }),
	"weight": into(wantInt, func(t *rawTarget) **int { return &t.Weight }),
}

// routeBuilder collects routes from every source, checking prefixes are unique.
type routeBuilder struct {
	c      *Config
	p      *parser
	seen   map[string]string // prefix → label of the route that has it
	routes []Route
	count  int // route entries found, valid or not
	// speech records, per backend URL, the first route that speaks to it
	// (see sameSpeech).
	speech map[string]speech
}

// speech is how a route speaks to its https and h2c backends.
type speech struct {
	label string
	tls   *UpstreamTLS
	http2 bool
}

// sameSpeech checks that every route naming one of r's backends speaks to
// it the same way: a backend is one connection pool, one health state and
// one breaker, probed with one set of TLS settings, so two routes that
// disagree about its upstream_tls or upstream_http2 would have one of them
// silently win.
func (b *routeBuilder) sameSpeech(r Route, label string) {
	if b.speech == nil {
		b.speech = map[string]speech{}
	}
	mine := speech{label: label, tls: r.UpstreamTLS, http2: r.UpstreamHTTP2}
	for _, t := range r.Targets {
		if t.URL.Scheme == "http" {
			continue // plain HTTP/1.1 whatever the route says
		}
		key := t.URL.String()
		first, ok := b.speech[key]
		if !ok {
			b.speech[key] = mine
			continue
		}
		if first.http2 != mine.http2 || !reflect.DeepEqual(first.tls, mine.tls) {
			b.p.failf(label, "target %s is also a target of %s with other upstream_tls or upstream_http2 settings (expected the same: a backend has one connection pool and one health state)", quote(key), first.label)
		}
	}
}

// loadRoutes fills Routes and RoutesSource; it runs after the global variables
// are parsed, whose values routes inherit.
func (c *Config) loadRoutes(p *parser, environ []string) {
	b := &routeBuilder{c: c, p: p, seen: map[string]string{}}
	var sources []string
	if v, ok := p.raw("SERVICE_ROUTES"); ok {
		sources = append(sources, "SERVICE_ROUTES")
		if c.ConfigFile == "" {
			b.serviceRoutes(v)
		}
	}
	if (c.ConfigFile == "" && b.envRoutes(environ)) || (c.ConfigFile != "" && hasEnvRoutes(environ, p)) {
		sources = append(sources, "ROUTE_*")
	}
	c.envTunables = c.tunables()
	switch {
	case c.ConfigFile != "":
		// CONFIG_FILE is then the only source of routes: a reload
		// replaces them all, so none may come from the environment.
		c.loadFile(p, sources)
		return
	case b.count > 0:
	case c.Env == EnvProduction:
		p.failf("SERVICE_ROUTES", "no routes configured (set SERVICE_ROUTES, ROUTE_<NAME>_PREFIX/_URL or CONFIG_FILE; the built-in default routes exist only in development)")
	case len(sources) > 0:
		p.warnf("SERVICE_ROUTES: no routes configured, every request to a route gets 404")
	default:
		for _, d := range defaultRoutes {
			u, _ := parseTarget(d.url)
			b.routes = append(b.routes, b.newRoute("", d.prefix, []Target{{URL: u, Weight: 1}}))
		}
		sources = append(sources, "defaults")
		p.warnf("SERVICE_ROUTES: not set, using the nine built-in development routes (/api/studio → http://localhost:3000, …); production refuses to boot without routes")
	}
	slices.SortFunc(b.routes, func(x, y Route) int { return strings.Compare(x.Prefix, y.Prefix) })
	c.Routes = b.routes
	c.RoutesSource = strings.Join(sources, ",")
}

// newRoute returns a route with every member's default (see routeFields):
// a constant, or the global variable the member overrides.
func (b *routeBuilder) newRoute(name, prefix string, targets []Target) Route {
	r := Route{Name: name, Prefix: prefix, Targets: targets}
	for _, f := range routeFields {
		if f.def != nil {
			f.def(&r, b.c)
		}
	}
	return r
}

// claim records prefix for label, or reports that another route has it.
// errName is the variable the error line starts with.
func (b *routeBuilder) claim(prefix, label, errName string) bool {
	if other, dup := b.seen[prefix]; dup {
		b.p.failf(errName, "duplicate prefix %s (also in %s)", quote(prefix), other)
		return false
	}
	b.seen[prefix] = label
	return true
}

// hasEnvRoutes reports whether any ROUTE_<NAME>_PREFIX/_URL is set.
func hasEnvRoutes(environ []string, p *parser) bool {
	for _, kv := range environ {
		key, _, _ := strings.Cut(kv, "=")
		if rest, ok := strings.CutPrefix(key, "ROUTE_"); ok && (strings.HasSuffix(rest, "_PREFIX") || strings.HasSuffix(rest, "_URL")) {
			if _, set := p.value(key); set {
				return true
			}
		}
	}
	return false
}

// serviceRoutes parses SERVICE_ROUTES.
func (b *routeBuilder) serviceRoutes(v string) {
	const name = "SERVICE_ROUTES"
	var items []json.RawMessage
	dec := json.NewDecoder(strings.NewReader(v))
	if err := dec.Decode(&items); err != nil || items == nil {
		b.p.failf(name, "invalid value %s: expected a JSON array of route objects (%s)", quote(strings.TrimSpace(v)), jsonProblem(err))
		return
	}
	if _, err := dec.Token(); err != io.EOF {
		b.p.failf(name, "invalid value: trailing data after the JSON array")
		return
	}
	b.routeArray(name, items)
}

// routeArray parses route objects (SERVICE_ROUTES, CONFIG_FILE's routes);
// name labels every problem ("SERVICE_ROUTES[2].prefix: …").
func (b *routeBuilder) routeArray(name string, items []json.RawMessage) {
	for i, item := range items {
		b.count++
		label := fmt.Sprintf("%s[%d]", name, i)
		before := len(b.p.errs)
		given := map[string]any{}
		bad, ok := decodeObject(b.p, label, item, routeDecoders, &given)
		if !ok {
			continue
		}
		if r, ok := b.routeObject(label, given, bad); ok && len(b.p.errs) == before {
			b.sameSpeech(r, label)
			b.routes = append(b.routes, r)
		}
	}
}

// routeObject builds the route of one route object from its members as
// decoded (given, by name): first each member's own check, in routeFields
// order, then the rules between members. bad names the members whose JSON
// was already reported, so a rule does not report them again as missing.
// Only a route with no problem found here claims its prefix; problems with
// its JSON alone do not stop the claim, so a later route with the same
// prefix is still reported.
func (b *routeBuilder) routeObject(label string, given map[string]any, bad map[string]bool) (Route, bool) {
	before := len(b.p.errs)
	r := b.newRoute("", "", nil)
	for _, f := range routeFields {
		if v, ok := given[f.name]; ok && f.check != nil {
			f.check(&r, v, func(format string, args ...any) { b.p.failf(label+"."+f.name, format, args...) })
		}
	}
	b.crossCheck(&r, label, given, bad)
	if len(b.p.errs) > before || r.Prefix == "" || !b.claim(r.Prefix, label, label+".prefix") {
		return Route{}, false
	}
	return r, true
}

// crossCheck applies the rules that tie a route object's members together,
// reading them as given and as their own checks left them in r.
func (b *routeBuilder) crossCheck(r *Route, label string, given map[string]any, bad map[string]bool) {
	p := b.p

	// prefix: required and clean (unique is claim's, once the route is valid).
	switch prefix, ok := givenAs[string](given, "prefix"); {
	case bad["prefix"]:
	case !ok:
		p.failf(label+".prefix", `required (a path such as "/api")`)
	default:
		clean, why := cleanPrefix(prefix)
		if why != "" {
			p.failf(label+".prefix", "invalid value %s: expected a clean path prefix (%s)", quote(prefix), why)
		}
		r.Prefix = clean
	}

	r.Targets = b.pool(label, given, bad)
	if ut, ok := givenAs[UpstreamTLS](given, "upstream_tls"); ok && !bad["upstream_tls"] {
		r.UpstreamTLS = b.upstreamTLS(label+".upstream_tls", ut)
	}

	// A burst sizes the bucket rate_limit_rps fills: alone it limits
	// nothing. The rate counts as given when it is a number other than 0,
	// even out of range (that problem is reported already).
	if rps, _ := givenAs[float64](given, "rate_limit_rps"); r.RateLimitBurst > 0 && rps == 0 {
		p.failf(label+".rate_limit_burst", "set without rate_limit_rps: expected rate_limit_rps > 0 too")
	}
	if r.RateLimitRPS > 0 && r.RateLimitBurst == 0 {
		r.RateLimitBurst = int(math.Ceil(r.RateLimitRPS))
	}
}

// upstreamTLS checks a route's upstream_tls: the files readable, a
// certificate with its key, and insecure_skip_verify refused in production
// (anyone on the path to the backend could read and change the traffic)
// and warned about elsewhere.
func (b *routeBuilder) upstreamTLS(label string, ut UpstreamTLS) *UpstreamTLS {
	p := b.p
	for name, path := range map[string]string{"ca_file": ut.CAFile, "cert_file": ut.CertFile, "key_file": ut.KeyFile} {
		if path == "" {
			continue
		}
		if fi, err := os.Stat(path); err != nil {
			p.failf(label+"."+name, "cannot read %s: %v", quote(path), errors.Unwrap(err))
		} else if fi.IsDir() {
			p.failf(label+"."+name, "%s is a directory (expected a PEM file)", quote(path))
		}
	}
	if (ut.CertFile == "") != (ut.KeyFile == "") {
		p.failf(label, "cert_file and key_file go together (a client certificate and its key)")
	}
	if ut.ServerName != "" && !validHost(ut.ServerName) {
		p.failf(label+".server_name", "invalid value %s: expected a host name", quote(ut.ServerName))
	}
	if ut.InsecureSkipVerify {
		if p.production {
			p.failf(label+".insecure_skip_verify", "refused in production: the backends' certificates would not be verified (expected ca_file with their CA)")
		} else {
			p.warnf("%s.insecure_skip_verify: true: the backends' certificates are not verified; production refuses it", label)
		}
	}
	return &ut
}

// pool gathers a route object's targets: target_url's, each with weight,
// then the targets array's, no URL twice across both. A route needs one.
func (b *routeBuilder) pool(label string, given map[string]any, bad map[string]bool) []Target {
	pool := targetPool{p: b.p, bad: bad["target_url"] || bad["targets"]}
	targetURL, hasURL := givenAs[string](given, "target_url")
	weight := 1
	if w, ok := givenAs[int](given, "weight"); ok {
		switch {
		case !hasURL && !bad["target_url"]:
			b.p.failf(label+".weight", "set without target_url: it is the weight of each target_url target (use targets[].weight with targets)")
		case w < 1 || w > maxWeight:
			b.p.failf(label+".weight", "invalid value %d: expected an integer from 1 to %d", w, maxWeight)
		default:
			weight = w
		}
	}
	for _, s := range list(targetURL) {
		pool.add(label+".target_url", s, weight)
	}
	items, _ := givenAs[[]json.RawMessage](given, "targets")
	for j, item := range items {
		pool.addObject(fmt.Sprintf("%s.targets[%d]", label, j), item)
	}
	if len(pool.targets) == 0 && !pool.bad {
		b.p.failf(label, "no target: expected target_url or a non-empty targets array")
	}
	return pool.targets
}

// givenAs returns a route object's member as decoded; ok is false when the
// member is absent, null or of another JSON type. A name routeFields does
// not declare, or declares with another Go type, panics: read quietly as
// "never given", it would switch a rule off.
func givenAs[T any](given map[string]any, name string) (v T, ok bool) {
	if _, declared := routeDecoders[name]; !declared {
		panic("config: route member " + name + " is not in routeFields")
	}
	x, there := given[name]
	if !there {
		return v, false
	}
	if v, ok = x.(T); !ok {
		panic(fmt.Sprintf("config: route member %s is a %T, read as a %T", name, x, v))
	}
	return v, true
}

// envRoutes parses the ROUTE_<NAME>_PREFIX / ROUTE_<NAME>_URL pairs named in
// environ, in name order. It reports whether any was set.
func (b *routeBuilder) envRoutes(environ []string) bool {
	var names []string
	for _, kv := range environ {
		key, _, _ := strings.Cut(kv, "=")
		rest, ok := strings.CutPrefix(key, "ROUTE_")
		if !ok {
			continue
		}
		name, ok := strings.CutSuffix(rest, "_PREFIX")
		if !ok {
			if name, ok = strings.CutSuffix(rest, "_URL"); !ok {
				continue
			}
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
	}
	slices.Sort(names)

	p := b.p
	found := false
	byName := map[string]string{} // lower-cased name → its PREFIX variable
	for _, name := range names {
		prefixVar, urlVar := "ROUTE_"+name+"_PREFIX", "ROUTE_"+name+"_URL"
		pv, hasPrefix := p.value(prefixVar)
		uv, hasURL := p.value(urlVar)
		if !hasPrefix && !hasURL {
			continue
		}
		found = true
		b.count++
		switch {
		case name == "":
			p.failf(prefixVar, "empty route name: expected ROUTE_<NAME>_PREFIX and ROUTE_<NAME>_URL")
			continue
		case !hasPrefix:
			p.failf(prefixVar, "missing: %s is set, expected a path prefix such as /api/%s", urlVar, strings.ToLower(name))
			continue
		case !hasURL:
			p.failf(urlVar, "missing: %s is set, expected a backend URL (or a comma-separated pool)", prefixVar)
			continue
		}
		lname := strings.ToLower(name)
		if other, dup := byName[lname]; dup {
			p.failf(prefixVar, "route name %q is also used by %s (names are case-insensitive)", lname, other)
			continue
		}
		byName[lname] = prefixVar

		before := len(p.errs)
		prefix, why := cleanPrefix(pv)
		if why != "" {
			p.failf(prefixVar, "invalid value %s: expected a clean path prefix (%s)", quote(pv), why)
		}
		pool := targetPool{p: p}
		for _, s := range list(uv) {
			pool.add(urlVar, s, 1)
		}
		if len(pool.targets) == 0 && !pool.bad {
			p.failf(urlVar, "invalid value %s: expected a backend URL (or a comma-separated pool)", quote(uv))
		}
		if len(p.errs) > before || !b.claim(prefix, prefixVar, prefixVar) {
			continue
		}
		b.routes = append(b.routes, b.newRoute(lname, prefix, pool.targets))
	}
	return found
}

// targetPool accumulates a route's targets, refusing bad and repeated URLs.
type targetPool struct {
	p       *parser
	targets []Target
	bad     bool // a target was refused (so "no target" would be a second report)
}

func (tp *targetPool) add(name, s string, weight int) {
	u, why := parseTarget(s)
	if why != "" {
		tp.p.failf(name, "invalid value %s: expected an absolute http://, https:// or h2c:// URL (%s)", quote(s), why)
		tp.bad = true
		return
	}
	for _, t := range tp.targets {
		if t.URL.String() == u.String() {
			tp.p.failf(name, "duplicate target %s in the route's pool", quote(u.String()))
			tp.bad = true
			return
		}
	}
	tp.targets = append(tp.targets, Target{URL: u, Weight: weight})
}

// addObject adds an element of a targets array: {"url": …, "weight": …}.
func (tp *targetPool) addObject(label string, raw json.RawMessage) {
	var t rawTarget
	tbad, ok := decodeObject(tp.p, label, raw, targetFields, &t)
	if !ok || len(tbad) > 0 {
		tp.bad = true
	}
	if !ok {
		return
	}
	w := 1
	if t.Weight != nil {
		if *t.Weight < 1 || *t.Weight > maxWeight {
			tp.p.failf(label+".weight", "invalid value %d: expected an integer from 1 to %d", *t.Weight, maxWeight)
			tp.bad = true
		} else {
			w = *t.Weight
		}
	}
	if t.URL == nil {
		if !tbad["url"] {
			tp.p.failf(label+".url", `required (an absolute URL such as "http://10.0.0.5:8080")`)
			tp.bad = true
		}
		return
	}
	tp.add(label+".url", *t.URL, w)
}

// parseTarget checks a backend URL and normalises it; it returns why it is
// refused, or "".
func parseTarget(s string) (*url.URL, string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, "not a URL"
	case u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "h2c":
		return nil, "scheme must be http, https or h2c"
	case u.Opaque != "" || u.Host == "":
		return nil, "no host"
	case u.User != nil:
		return nil, "user info is not allowed"
	case u.RawQuery != "" || u.ForceQuery:
		return nil, "a query is not allowed"
	case u.Fragment != "" || strings.Contains(s, "#"):
		return nil, "a fragment is not allowed"
	case !validHost(u.Hostname()):
		return nil, "bad host"
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return nil, "port must be 1 to 65535"
		}
	}
	if u.Path != "" {
		if _, why := cleanPrefix(u.Path); why != "" {
			return nil, "base path: " + why
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		u.RawPath = strings.TrimSuffix(u.RawPath, "/")
	}
	u.Host = strings.ToLower(u.Host)
	return u, ""
}

// field says how decodeObject reads one member into a T, and what the
// member's JSON must look like.
type field[T any] struct {
	// decode reads the member's JSON into out. An error means the JSON has
	// another type; out must then hold nothing of the member.
	decode func(out *T, raw json.RawMessage) error
	want   string
}

// into is a field decoded as is into the member of T that dest points to
// (a pointer, nil for an absent or null member).
func into[T, V any](want string, dest func(*T) *V) field[T] {
	return field[T]{want: want, decode: func(out *T, raw json.RawMessage) error {
		p := dest(out)
		err := decodeStrict(raw, p)
		if err != nil {
			// A failed Decode may leave a zero value behind; absent is more honest.
			var zero V
			*p = zero
		}
		return err
	}}
}

// decodeStrict decodes one JSON value into v, refusing unknown object members.
func decodeStrict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// decodeObject decodes a JSON object member by member into out through
// fields: exact member names only (encoding/json would accept any case), no
// member twice, every type problem reported with its member's name. It
// returns the names of the members it reported, and false when raw is not
// an object at all.
func decodeObject[T any](p *parser, label string, raw json.RawMessage, fields map[string]field[T], out *T) (bad map[string]bool, ok bool) {
	members, err := objectMembers(raw)
	if err != nil {
		p.failf(label, "invalid value %s: expected a JSON object", compact(raw))
		return nil, false
	}
	bad = map[string]bool{}
	seen := map[string]bool{}
	for _, m := range members {
		f, known := fields[m.name]
		switch {
		case !known:
			names := sortedKeys(fields)
			if i := slices.IndexFunc(names, func(n string) bool { return strings.EqualFold(n, m.name) }); i >= 0 {
				// Field names are case-sensitive; do not also report names[i] as missing.
				p.failf(label, "unknown field %q (did you mean %q?)", m.name, names[i])
				bad[names[i]] = true
				break
			}
			p.failf(label, "unknown field %q (expected one of %s)", m.name, strings.Join(names, ", "))
			bad[m.name] = true
		case seen[m.name]:
			p.failf(label+"."+m.name, "given twice")
			bad[m.name] = true
		default:
			seen[m.name] = true
			if err := f.decode(out, m.value); err != nil {
				p.failf(label+"."+m.name, "invalid value %s: expected %s", compact(m.value), f.want)
				bad[m.name] = true
			}
		}
	}
	return bad, true
}

// rawMember is one member of a JSON object, its value still raw.
type rawMember struct {
	name  string
	value json.RawMessage
}

// objectMembers lists the members of the JSON object raw, in order, duplicates kept.
func objectMembers(raw json.RawMessage) ([]rawMember, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object")
	}
	var out []rawMember
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		out = append(out, rawMember{name, v})
	}
	return out, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// compact renders raw JSON on one line, cut when long.
func compact(raw json.RawMessage) string {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return quote(string(raw))
	}
	s := redactUserinfo(buf.String())
	if r := []rune(s); len(r) > 100 {
		return string(r[:100]) + "…"
	}
	return s
}

// jsonProblem describes why a JSON document was refused, without Go type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	var se *json.SyntaxError
	switch {
	case err == nil:
		return "it is null"
	case errors.As(err, &te):
		return "it is a JSON " + te.Value
	case errors.As(err, &se):
		return fmt.Sprintf("%s at byte %d", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	case err == io.EOF || err == io.ErrUnexpectedEOF:
		return "it is cut short"
	}
	return err.Error()
}

// secs converts JSON seconds to a Duration (fractions allowed).
func secs(f float64) time.Duration {
	return time.Duration(f * float64(time.Second))
}

func fmtNum(f float64) string {
	return strconv.FormatFloat(f, 'g', -1, 64)
}

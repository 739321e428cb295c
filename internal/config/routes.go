package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
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

// rawRoute is one SERVICE_ROUTES object; nil = absent or null.
type rawRoute struct {
	Prefix             *string
	TargetURL          *string
	Targets            *[]json.RawMessage
	StripPrefix        *bool
	RequireAuth        *bool
	Weight             *int
	TimeoutSecs        *float64
	CacheTTLSecs       *float64
	CacheAuthenticated *bool
	Algo               *string
	MaxBodyBytes       *int64
	RateLimitRPS       *float64
	RateLimitBurst     *int
	Methods            *[]string
	BreakerOn5xx       *bool
	UpstreamKeepalive  *bool
}

type rawTarget struct {
	URL    *string
	Weight *int
}

// field says where a JSON member is decoded to and what it must look like.
type field[T any] struct {
	dest func(*T) any
	want string
}

const (
	wantString = "a string"
	wantBool   = "true or false"
	wantInt    = "an integer"
	wantNumber = "a number"
)

// routeFields is the complete list of route members (README "Routes");
// anything else is an error.
var routeFields = map[string]field[rawRoute]{
	"prefix":              {func(r *rawRoute) any { return &r.Prefix }, wantString},
	"target_url":          {func(r *rawRoute) any { return &r.TargetURL }, wantString},
	"targets":             {func(r *rawRoute) any { return &r.Targets }, `an array such as [{"url":"http://a:8080","weight":2}]`},
	"strip_prefix":        {func(r *rawRoute) any { return &r.StripPrefix }, wantBool},
	"require_auth":        {func(r *rawRoute) any { return &r.RequireAuth }, wantBool},
	"weight":              {func(r *rawRoute) any { return &r.Weight }, wantInt},
	"timeout_secs":        {func(r *rawRoute) any { return &r.TimeoutSecs }, wantNumber},
	"cache_ttl_secs":      {func(r *rawRoute) any { return &r.CacheTTLSecs }, wantNumber},
	"cache_authenticated": {func(r *rawRoute) any { return &r.CacheAuthenticated }, wantBool},
	"algo":                {func(r *rawRoute) any { return &r.Algo }, wantString},
	"max_body_bytes":      {func(r *rawRoute) any { return &r.MaxBodyBytes }, wantInt},
	"rate_limit_rps":      {func(r *rawRoute) any { return &r.RateLimitRPS }, wantNumber},
	"rate_limit_burst":    {func(r *rawRoute) any { return &r.RateLimitBurst }, wantInt},
	"methods":             {func(r *rawRoute) any { return &r.Methods }, `an array of methods such as ["GET","POST"]`},
	"breaker_on_5xx":      {func(r *rawRoute) any { return &r.BreakerOn5xx }, wantBool},
	"upstream_keepalive":  {func(r *rawRoute) any { return &r.UpstreamKeepalive }, wantBool},
}

var targetFields = map[string]field[rawTarget]{
	"url":    {func(t *rawTarget) any { return &t.URL }, wantString},
	"weight": {func(t *rawTarget) any { return &t.Weight }, wantInt},
}

// routeBuilder collects routes from every source, checking prefixes are unique.
type routeBuilder struct {
	c      *Config
	p      *parser
	seen   map[string]string // prefix → label of the route that has it
	routes []Route
	count  int // route entries found, valid or not
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

// newRoute returns a route with the global defaults applied.
func (b *routeBuilder) newRoute(name, prefix string, targets []Target) Route {
	return Route{
		Name:         name,
		Prefix:       prefix,
		Targets:      targets,
		StripPrefix:  true,
		Timeout:      b.c.ConnectionTimeout,
		CacheTTL:     b.c.CacheTTL,
		Algo:         b.c.LoadBalancingAlgo,
		MaxBodyBytes: b.c.MaxBodyBytes,

		UpstreamKeepalive: true,
	}
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
		raw, bad, ok := decodeObject(b.p, label, item, routeFields)
		if !ok {
			continue
		}
		if r, ok := b.serviceRoute(label, raw, bad); ok && len(b.p.errs) == before {
			b.routes = append(b.routes, r)
		}
	}
}

// serviceRoute validates one SERVICE_ROUTES object; bad names the members
// already reported (so a missing one is not reported twice).
func (b *routeBuilder) serviceRoute(label string, raw rawRoute, bad map[string]bool) (Route, bool) {
	p := b.p
	before := len(p.errs)
	fname := func(f string) string { return label + "." + f }

	var prefix string
	switch {
	case bad["prefix"]:
	case raw.Prefix == nil:
		p.failf(fname("prefix"), `required (a path such as "/api")`)
	default:
		clean, why := cleanPrefix(*raw.Prefix)
		if why != "" {
			p.failf(fname("prefix"), "invalid value %s: expected a clean path prefix (%s)", quote(*raw.Prefix), why)
		}
		prefix = clean
	}

	pool := targetPool{p: p, bad: bad["target_url"] || bad["targets"]}
	weight := 1
	if raw.Weight != nil {
		switch {
		case raw.TargetURL == nil && !bad["target_url"]:
			p.failf(fname("weight"), "set without target_url: it is the weight of each target_url target (use targets[].weight with targets)")
		case *raw.Weight < 1 || *raw.Weight > maxWeight:
			p.failf(fname("weight"), "invalid value %d: expected an integer from 1 to %d", *raw.Weight, maxWeight)
		default:
			weight = *raw.Weight
		}
	}
	if raw.TargetURL != nil {
		for _, s := range list(*raw.TargetURL) {
			pool.add(fname("target_url"), s, weight)
		}
	}
	if raw.Targets != nil {
		for j, item := range *raw.Targets {
			tl := fmt.Sprintf("%s.targets[%d]", label, j)
			t, tbad, ok := decodeObject(p, tl, item, targetFields)
			if !ok || len(tbad) > 0 {
				pool.bad = true
			}
			if !ok {
				continue
			}
			w := 1
			if t.Weight != nil {
				if *t.Weight < 1 || *t.Weight > maxWeight {
					p.failf(tl+".weight", "invalid value %d: expected an integer from 1 to %d", *t.Weight, maxWeight)
					pool.bad = true
				} else {
					w = *t.Weight
				}
			}
			if t.URL == nil {
				if tbad["url"] {
					continue
				}
				p.failf(tl+".url", `required (an absolute URL such as "http://10.0.0.5:8080")`)
				pool.bad = true
				continue
			}
			pool.add(tl+".url", *t.URL, w)
		}
	}
	if len(pool.targets) == 0 && !pool.bad {
		p.failf(label, "no target: expected target_url or a non-empty targets array")
	}

	r := b.newRoute("", prefix, pool.targets)
	if raw.StripPrefix != nil {
		r.StripPrefix = *raw.StripPrefix
	}
	if raw.RequireAuth != nil {
		r.RequireAuth = *raw.RequireAuth
	}
	if raw.CacheAuthenticated != nil {
		r.CacheAuthenticated = *raw.CacheAuthenticated
	}
	if raw.BreakerOn5xx != nil {
		r.BreakerOn5xx = *raw.BreakerOn5xx
	}
	if raw.UpstreamKeepalive != nil {
		r.UpstreamKeepalive = *raw.UpstreamKeepalive
	}
	if raw.Methods != nil {
		r.Methods = b.methods(fname("methods"), *raw.Methods)
	}
	if s := raw.TimeoutSecs; s != nil {
		d := secs(*s)
		if !(*s > 0 && *s <= maxTimeoutSecs) || d <= 0 {
			p.failf(fname("timeout_secs"), "invalid value %s: expected seconds > 0 and at most %d", fmtNum(*s), maxTimeoutSecs)
		} else {
			r.Timeout = d
		}
	}
	if s := raw.CacheTTLSecs; s != nil {
		if !(*s >= 0 && *s <= maxTTLSecs) {
			p.failf(fname("cache_ttl_secs"), "invalid value %s: expected seconds >= 0 (0 = never cache this route) and at most %d", fmtNum(*s), maxTTLSecs)
		} else {
			r.CacheTTL, r.NoCache = secs(*s), *s == 0
		}
	}
	if raw.Algo != nil {
		a := strings.ToLower(strings.TrimSpace(*raw.Algo))
		if !slices.Contains(algos, a) {
			p.failf(fname("algo"), "invalid value %s: expected one of %s", quote(*raw.Algo), strings.Join(algos, ", "))
		} else {
			r.Algo = a
		}
	}
	if n := raw.MaxBodyBytes; n != nil {
		if *n < 1 || *n > maxSize {
			p.failf(fname("max_body_bytes"), "invalid value %d: expected an integer >= 1", *n)
		} else {
			r.MaxBodyBytes = *n
		}
	}
	if f := raw.RateLimitRPS; f != nil {
		if !(*f >= 0 && *f <= maxRouteRPS) {
			p.failf(fname("rate_limit_rps"), "invalid value %s: expected a number >= 0 (0 = no limit)", fmtNum(*f))
		} else {
			r.RateLimitRPS = *f
		}
	}
	if n := raw.RateLimitBurst; n != nil {
		switch {
		case *n < 0 || *n > math.MaxInt32:
			p.failf(fname("rate_limit_burst"), "invalid value %d: expected an integer >= 0", *n)
		case *n > 0 && (raw.RateLimitRPS == nil || *raw.RateLimitRPS == 0):
			p.failf(fname("rate_limit_burst"), "set without rate_limit_rps: expected rate_limit_rps > 0 too")
		default:
			r.RateLimitBurst = *n
		}
	}
	if r.RateLimitRPS > 0 && r.RateLimitBurst == 0 {
		r.RateLimitBurst = int(math.Ceil(r.RateLimitRPS))
	}

	if len(p.errs) > before || prefix == "" || !b.claim(prefix, label, fname("prefix")) {
		return Route{}, false
	}
	return r, true
}

// refusedMethods are answered 405 by the gateway on every route: CONNECT
// would open a tunnel past routing, TRACE reflects the request (with its
// credentials) back to a script.
var refusedMethods = []string{http.MethodConnect, http.MethodTrace}

// methods checks a route's methods list: method tokens, none twice, never
// CONNECT or TRACE. GET brings HEAD along, as every server answers HEAD
// where it answers GET.
func (b *routeBuilder) methods(name string, in []string) []string {
	if len(in) == 0 {
		b.p.failf(name, `empty: expected at least one method such as ["GET"] (leave methods out for any method)`)
		return nil
	}
	out := make([]string, 0, len(in)+1)
	for _, m := range in {
		switch {
		case m == "" || strings.IndexFunc(m, func(r rune) bool { return !httpguts.IsTokenRune(r) }) >= 0:
			b.p.failf(name, "invalid method %s: expected a method name such as GET", quote(m))
			continue
		case m != strings.ToUpper(m):
			b.p.failf(name, "invalid method %s: methods are case-sensitive, expected %q", quote(m), strings.ToUpper(m))
			continue
		case slices.Contains(refusedMethods, m):
			b.p.failf(name, "method %s is refused by the gateway on every route", m)
			continue
		case slices.Contains(out, m):
			b.p.failf(name, "method %s given twice", m)
			continue
		}
		out = append(out, m)
	}
	if slices.Contains(out, http.MethodGet) && !slices.Contains(out, http.MethodHead) {
		out = append(out, http.MethodHead)
	}
	slices.Sort(out)
	return out
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
		tp.p.failf(name, "invalid value %s: expected an absolute http:// or https:// URL (%s)", quote(s), why)
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

// parseTarget checks a backend URL and normalises it; it returns why it is
// refused, or "".
func parseTarget(s string) (*url.URL, string) {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return nil, "not a URL"
	case u.Scheme != "http" && u.Scheme != "https":
		return nil, "scheme must be http or https"
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

// decodeObject decodes a JSON object member by member through fields: exact
// member names only (encoding/json would accept any case), no member twice,
// every type problem reported with its member's name. It returns the members
// it could decode, the names of those it reported, and false when raw is not
// an object at all.
func decodeObject[T any](p *parser, label string, raw json.RawMessage, fields map[string]field[T]) (out T, bad map[string]bool, ok bool) {
	members, err := objectMembers(raw)
	if err != nil {
		p.failf(label, "invalid value %s: expected a JSON object", compact(raw))
		return out, nil, false
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
			dec := json.NewDecoder(bytes.NewReader(m.value))
			dec.DisallowUnknownFields()
			if err := dec.Decode(f.dest(&out)); err != nil {
				// A failed Decode may leave a zero value behind; absent is more honest.
				reflect.ValueOf(f.dest(&out)).Elem().SetZero()
				p.failf(label+"."+m.name, "invalid value %s: expected %s", compact(m.value), f.want)
				bad[m.name] = true
			}
		}
	}
	return out, bad, true
}

type member struct {
	name  string
	value json.RawMessage
}

// objectMembers lists the members of the JSON object raw, in order, duplicates kept.
func objectMembers(raw json.RawMessage) ([]member, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, fmt.Errorf("not an object")
	}
	var out []member
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
		out = append(out, member{name, v})
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

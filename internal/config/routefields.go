package config

import (
	"encoding/json"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
)

// routeFields declares every member of a route object (SERVICE_ROUTES,
// CONFIG_FILE's routes), in the order GET /admin/config shows them and
// their problems are listed. Anything else in a route object is an error. Each entry says once what
// the member's JSON must look like, how its value is checked, which Route
// field it sets, its default and how the view shows it. A new route option
// is therefore a Route field plus one entry here; docs/configuration.md's "Routes"
// section documents it for operators.
//
// Members whose checks depend on other members are held as given: the
// rules in crossCheck read them once every member was checked on its own.
var routeFields = []routeField{
	held[string]("prefix", wantString).
		shown(func(r *Route) any { return r.Prefix }),
	held[string]("target_url", wantString), // shown within targets
	held[[]json.RawMessage]("targets", `an array such as [{"url":"http://a:8080","weight":2}]`).
		shown(func(r *Route) any { return targetObjects(r.Targets) }),
	flag("strip_prefix", true, func(r *Route) *bool { return &r.StripPrefix }),
	flag("require_auth", false, func(r *Route) *bool { return &r.RequireAuth }),
	held[int]("weight", wantInt), // shown within targets
	seconds("timeout_secs", maxTimeoutSecs, func(r *Route) *time.Duration { return &r.Timeout },
		func(c *Config) time.Duration { return c.ConnectionTimeout }),
	member("cache_ttl_secs", wantNumber, func(r *Route, s float64, fail problemf) {
		if !(s >= 0 && s <= maxTTLSecs) {
			fail("invalid value %s: expected seconds >= 0 (0 = never cache this route) and at most %d", fmtNum(s), maxTTLSecs)
			return
		}
		r.CacheTTL, r.NoCache = secs(s), s == 0
	}).shown(func(r *Route) any {
		switch {
		case r.NoCache:
			return 0.0
		case r.CacheTTL > 0:
			return r.CacheTTL.Seconds()
		}
		return nil // only answers with explicit freshness are stored
	}).defaults(func(r *Route, c *Config) { r.CacheTTL = c.CacheTTL }),
	flag("cache_authenticated", false, func(r *Route) *bool { return &r.CacheAuthenticated }),
	oneOf("algo", algos, func(r *Route) *string { return &r.Algo },
		func(c *Config) string { return c.LoadBalancingAlgo }),
	integer("max_body_bytes", 1, maxSize, func(r *Route) *int64 { return &r.MaxBodyBytes },
		func(c *Config) int64 { return c.MaxBodyBytes }),
	member("rate_limit_rps", wantNumber, func(r *Route, f float64, fail problemf) {
		if !(f >= 0 && f <= maxRouteRPS) {
			fail("invalid value %s: expected a number >= 0 (0 = no limit)", fmtNum(f))
			return
		}
		r.RateLimitRPS = f
	}).shown(func(r *Route) any { return r.RateLimitRPS }),
	integer("rate_limit_burst", 0, math.MaxInt32, func(r *Route) *int { return &r.RateLimitBurst }, nil),
	stringList("methods", `an array of methods such as ["GET","POST"]`, checkMethods, func(r *Route) *[]string { return &r.Methods }),
	flag("breaker_on_5xx", false, func(r *Route) *bool { return &r.BreakerOn5xx }),
	flag("upstream_keepalive", true, func(r *Route) *bool { return &r.UpstreamKeepalive }),
	held[UpstreamTLS]("upstream_tls", `an object such as {"ca_file":"/etc/ca.pem","cert_file":"/etc/gw.crt","key_file":"/etc/gw.key","server_name":"api.internal"}`).
		shown(func(r *Route) any {
			if r.UpstreamTLS == nil {
				return nil
			}
			return *r.UpstreamTLS
		}),
	flag("upstream_http2", false, func(r *Route) *bool { return &r.UpstreamHTTP2 }),
}

// routeField is one member of a route object; build it with member, held
// or one of the typed helpers below.
type routeField struct {
	name string
	// want ends the problem for JSON of another type:
	// `invalid value "5": expected <want>`.
	want string
	// decode reads the member's JSON as its Go type; nil for JSON null,
	// which counts as absent.
	decode func(raw json.RawMessage) (any, error)
	// check checks a decoded value and stores it in r; nil for the members
	// crossCheck checks together with others.
	check func(r *Route, v any, fail problemf)
	// def sets the value a route has without the member; nil for the zero
	// value.
	def func(r *Route, c *Config)
	// show is the member's effective value in the view, nil to leave the
	// member out; a nil show means another member shows it.
	show func(r *Route) any
}

// problemf reports a problem with the member being checked: the line
// starts with the member's full name ("SERVICE_ROUTES[0].algo: ").
type problemf func(format string, args ...any)

// What a member's JSON must look like, for the usual types.
const (
	wantString = "a string"
	wantBool   = "true or false"
	wantInt    = "an integer"
	wantNumber = "a number"
)

// member declares a member whose JSON decodes to a T; set checks a value
// that is there (not null) and stores it in the route.
func member[T any](name, want string, set func(r *Route, v T, fail problemf)) routeField {
	f := held[T](name, want)
	f.check = func(r *Route, v any, fail problemf) { set(r, v.(T), fail) }
	return f
}

// held declares a member decoded as a T and kept as given, for the rules
// that read it together with other members.
func held[T any](name, want string) routeField {
	return routeField{name: name, want: want, decode: func(raw json.RawMessage) (any, error) {
		var v *T
		if err := decodeStrict(raw, &v); err != nil || v == nil {
			return nil, err
		}
		return *v, nil
	}}
}

// shown returns f with the view of its effective value.
func (f routeField) shown(show func(r *Route) any) routeField {
	f.show = show
	return f
}

// defaults returns f with the value a route has without the member.
func (f routeField) defaults(def func(r *Route, c *Config)) routeField {
	f.def = def
	return f
}

// flag is a true-or-false member stored in the field at returns; def is
// its value when absent.
func flag(name string, def bool, at func(*Route) *bool) routeField {
	return member(name, wantBool, func(r *Route, v bool, _ problemf) { *at(r) = v }).
		shown(func(r *Route) any { return *at(r) }).
		defaults(func(r *Route, _ *Config) { *at(r) = def })
}

// seconds is a member of seconds > 0 (fractions allowed) and at most max,
// stored as a Duration; def gives the global value it overrides.
func seconds(name string, max int, at func(*Route) *time.Duration, def func(*Config) time.Duration) routeField {
	return member(name, wantNumber, func(r *Route, s float64, fail problemf) {
		// A value too small for a nanosecond would be no timeout at all.
		if d := secs(s); !(s > 0 && s <= float64(max)) || d <= 0 {
			fail("invalid value %s: expected seconds > 0 and at most %d", fmtNum(s), max)
		} else {
			*at(r) = d
		}
	}).shown(func(r *Route) any { return at(r).Seconds() }).
		defaults(func(r *Route, c *Config) { *at(r) = def(c) })
}

// integer is a whole-number member from lo to hi. The problem names only
// lo: hi is a sanity bound far beyond any real value. def gives the global
// value it overrides; nil for 0.
func integer[N int | int64](name string, lo, hi N, at func(*Route) *N, def func(*Config) N) routeField {
	f := member(name, wantInt, func(r *Route, n N, fail problemf) {
		if n < lo || n > hi {
			fail("invalid value %d: expected an integer >= %d", n, lo)
			return
		}
		*at(r) = n
	}).shown(func(r *Route) any { return *at(r) })
	if def != nil {
		f = f.defaults(func(r *Route, c *Config) { *at(r) = def(c) })
	}
	return f
}

// oneOf is a member naming one of allowed (lower-case), in any case and
// with blanks around; it is stored lower-cased. def gives the global value
// it overrides.
func oneOf(name string, allowed []string, at func(*Route) *string, def func(*Config) string) routeField {
	return member(name, wantString, func(r *Route, v string, fail problemf) {
		a := strings.ToLower(strings.TrimSpace(v))
		if !slices.Contains(allowed, a) {
			fail("invalid value %s: expected one of %s", quote(v), strings.Join(allowed, ", "))
			return
		}
		*at(r) = a
	}).shown(func(r *Route) any { return *at(r) }).
		defaults(func(r *Route, c *Config) { *at(r) = def(c) })
}

// stringList is an array of strings that norm checks entry by entry and
// normalises. Absent, the field stays nil and the view leaves it out.
func stringList(name, want string, norm func(in []string, fail problemf) []string, at func(*Route) *[]string) routeField {
	return member(name, want, func(r *Route, v []string, fail problemf) { *at(r) = norm(v, fail) }).
		shown(func(r *Route) any {
			if len(*at(r)) == 0 {
				return nil
			}
			return *at(r)
		})
}

// routeDecoders is routeFields as decodeObject reads them: each member
// that is there lands in a map by name, to be checked in routeFields
// order once every member is read.
var routeDecoders = func() map[string]field[map[string]any] {
	m := make(map[string]field[map[string]any], len(routeFields))
	for _, f := range routeFields {
		m[f.name] = field[map[string]any]{want: f.want, decode: func(given *map[string]any, raw json.RawMessage) error {
			v, err := f.decode(raw)
			if v != nil {
				(*given)[f.name] = v
			}
			return err
		}}
	}
	return m
}()

// targetObjects is a route's pool as the view shows it.
func targetObjects(ts []Target) []TargetObject {
	out := make([]TargetObject, len(ts))
	for i, t := range ts {
		out[i] = TargetObject{URL: t.URL.String(), Weight: t.Weight}
	}
	return out
}

// refusedMethods are answered 405 by the gateway on every route: CONNECT
// would open a tunnel past routing, TRACE reflects the request (with its
// credentials) back to a script.
var refusedMethods = []string{http.MethodConnect, http.MethodTrace}

// checkMethods checks a route's methods list: method tokens, none twice,
// never CONNECT or TRACE. GET brings HEAD along, as every server answers
// HEAD where it answers GET.
func checkMethods(in []string, fail problemf) []string {
	if len(in) == 0 {
		fail(`empty: expected at least one method such as ["GET"] (leave methods out for any method)`)
		return nil
	}
	out := make([]string, 0, len(in)+1)
	for _, m := range in {
		switch {
		case m == "" || strings.IndexFunc(m, func(r rune) bool { return !httpguts.IsTokenRune(r) }) >= 0:
			fail("invalid method %s: expected a method name such as GET", quote(m))
			continue
		case m != strings.ToUpper(m):
			fail("invalid method %s: methods are case-sensitive, expected %q", quote(m), strings.ToUpper(m))
			continue
		case slices.Contains(refusedMethods, m):
			fail("method %s is refused by the gateway on every route", m)
			continue
		case slices.Contains(out, m):
			fail("method %s given twice", m)
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

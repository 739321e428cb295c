package config

import (
	"encoding/json"
	"maps"
	"reflect"
	"slices"
	"testing"
)

// routeSample gives every route member a valid value other than its
// default, for TestEveryRouteFieldTakesEffectAndIsShown.
var routeSample = map[string]string{
	"prefix":              `"/full"`,
	"target_url":          `"http://a:8080"`,
	"targets":             `[{"url":"http://b:8080","weight":2}]`,
	"weight":              `3`,
	"strip_prefix":        `false`,
	"require_auth":        `true`,
	"timeout_secs":        `2.5`,
	"cache_ttl_secs":      `90`,
	"cache_authenticated": `true`,
	"algo":                `"ip-hash"`,
	"max_body_bytes":      `100`,
	"rate_limit_rps":      `2.5`,
	"rate_limit_burst":    `7`,
	"methods":             `["GET"]`,
	"breaker_on_5xx":      `true`,
	"upstream_keepalive":  `false`,
	"upstream_tls":        `{"server_name":"api.internal"}`,
	"upstream_http2":      `true`,
}

// shownWithin are the members the view shows inside another one.
var shownWithin = map[string]string{"target_url": "targets", "weight": "targets"}

// TestEveryRouteFieldTakesEffectAndIsShown guards routeFields: a member
// declared there must change the route it is given to, and GET
// /admin/config must show it, in a form that reads back as the same route.
func TestEveryRouteFieldTakesEffectAndIsShown(t *testing.T) {
	var names []string
	for _, f := range routeFields {
		names = append(names, f.name)
		if _, ok := routeSample[f.name]; !ok {
			t.Errorf("routeSample has no value for %q: add a valid, non-default one", f.name)
		}
		if within, ok := shownWithin[f.name]; ok != (f.show == nil) {
			t.Errorf("%q: shown on its own %v, shown within %q", f.name, f.show != nil, within)
		}
	}
	if extra := slices.DeleteFunc(slices.Sorted(maps.Keys(routeSample)), func(n string) bool { return slices.Contains(names, n) }); len(extra) > 0 {
		t.Errorf("routeSample has members routeFields does not declare: %q", extra)
	}
	if t.Failed() {
		t.FailNow()
	}

	// route parses one route object made of the sample's members, but skip.
	route := func(skip string) (Route, error) {
		obj := map[string]json.RawMessage{}
		for name, v := range routeSample {
			if name != skip {
				obj[name] = json.RawMessage(v)
			}
		}
		js, err := json.Marshal([]any{obj})
		if err != nil {
			t.Fatal(err)
		}
		c, err := load(map[string]string{"SERVICE_ROUTES": string(js)})
		if err != nil {
			return Route{}, err
		}
		return c.Routes[0], nil
	}
	full, err := route("")
	if err != nil {
		t.Fatalf("the sample route: %v", err)
	}
	for _, name := range names {
		if r, err := route(name); err == nil && reflect.DeepEqual(r, full) {
			t.Errorf("%q changes nothing: the route is the same without it", name)
		}
	}

	view, err := json.Marshal(full.Object())
	if err != nil {
		t.Fatal(err)
	}
	var shown map[string]json.RawMessage
	if err := json.Unmarshal(view, &shown); err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		if _, ok := shown[name]; !ok && shownWithin[name] == "" {
			t.Errorf("the view does not show %q: %s", name, view)
		}
	}
	c, err := load(map[string]string{"SERVICE_ROUTES": "[" + string(view) + "]"})
	if err != nil {
		t.Fatalf("the view does not read back as a route object: %v\n%s", err, view)
	}
	if !reflect.DeepEqual(c.Routes[0], full) {
		t.Errorf("the view reads back as another route:\n got %+v\nwant %+v\nview %s", c.Routes[0], full, view)
	}
}

package admin

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/middleware/clientip"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/testutil"
)

const token = "s3cret-admin-token-for-tests-0123456789"

var (
	mustAddr   = netip.MustParseAddr
	mustPrefix = netip.MustParsePrefix
	t0         = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	edge       = mustPrefix("10.0.0.0/24") // the trusted edge proxy range in these tests
)

// fakeBlocker is a scripted DDoS guard.
type fakeBlocker struct {
	mu     sync.Mutex
	blocks map[netip.Addr]time.Time
}

func (f *fakeBlocker) Blocked(now time.Time) []Block {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Block
	for ip, until := range f.blocks {
		out = append(out, Block{IP: ip, Until: until})
	}
	return out
}

func (f *fakeBlocker) Unblock(ip netip.Addr) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.blocks[ip]
	delete(f.blocks, ip)
	return ok
}

type env struct {
	api     *API
	lists   *iplist.Lists
	blocker *fakeBlocker
	reg     *prometheus.Registry
	logs    *bytes.Buffer
	now     time.Time
	h       http.Handler
	seq     int
}

type envOpts struct {
	token   string
	blocker bool
	allow   []netip.Prefix
	deny    []netip.Prefix
}

// newEnv builds the API and serves its routes behind the gateway's first
// steps, as order.go does: request.Info, a request ID, client IP.
func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{
		lists: iplist.NewLists(o.allow, o.deny),
		reg:   prometheus.NewRegistry(),
		logs:  &bytes.Buffer{},
		now:   t0,
	}
	opts := Options{
		Token:      o.token,
		Lists:      e.lists,
		Trusted:    []netip.Prefix{edge, mustPrefix("::1/128")},
		Log:        slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: e.reg,
		Now:        func() time.Time { return e.now },
	}
	if o.blocker {
		e.blocker = &fakeBlocker{blocks: map[netip.Addr]time.Time{}}
		opts.Blocker = e.blocker
	}
	api, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	e.api = api
	routes := api.Routes()
	dispatch := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h, ok := routes[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})
	resolved := clientip.New(realip.NewResolver(opts.Trusted))(dispatch)
	e.h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		e.seq++
		in.ID = fmt.Sprintf("req-%d", e.seq)
		resolved.ServeHTTP(in.Writer(), r)
	})
	return e
}

type call struct {
	method string
	target string
	remote string   // default 198.51.100.7:40000
	auth   []string // Authorization header values; nil = the right token
	noAuth bool
	header map[string]string
}

func (e *env) do(c call) *httptest.ResponseRecorder {
	r := httptest.NewRequest(c.method, c.target, nil)
	r.RemoteAddr = "198.51.100.7:40000"
	if c.remote != "" {
		r.RemoteAddr = c.remote
	}
	switch {
	case c.noAuth:
	case c.auth == nil:
		r.Header.Set("Authorization", "Bearer "+token)
	default:
		r.Header["Authorization"] = c.auth
	}
	for k, v := range c.header {
		r.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	e.h.ServeHTTP(rec, r)
	return rec
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	var v T
	if ct := rec.Header().Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q, want application/json", ct)
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil {
		t.Fatalf("body %q: %v", rec.Body, err)
	}
	return v
}

func (e *env) counter(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return testutil.SeriesValue(t, e.reg, name, labels)
}

// logLines parses the captured JSON log.
func (e *env) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(e.logs.Bytes()))
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("log line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

type errorBody struct {
	Error     string `json:"error"`
	RequestID string `json:"request_id"`
}

func TestAccess(t *testing.T) {
	tests := []struct {
		name      string
		token     string // configured ADMIN_TOKEN
		call      call
		want      int
		wantErr   string // substring of the JSON error
		wantChall string // WWW-Authenticate
		wantAllow string
	}{
		{name: "off: loopback with no token", call: call{method: "GET", target: "/admin/whitelist", remote: "127.0.0.1:5000", noAuth: true}, want: 403, wantErr: "admin API disabled: set ADMIN_TOKEN"},
		{name: "off: loopback with a bearer", call: call{method: "POST", target: "/admin/whitelist?ip=1.2.3.4", remote: "127.0.0.1:5000"}, want: 403, wantErr: "admin API disabled: set ADMIN_TOKEN"},
		{name: "off: empty bearer", call: call{method: "GET", target: "/admin/blocked", remote: "[::1]:5000", auth: []string{"Bearer "}}, want: 403, wantErr: "admin API disabled"},
		{name: "off: remote", call: call{method: "DELETE", target: "/admin/blocked?ip=1.2.3.4"}, want: 403, wantErr: "admin API disabled"},
		{name: "missing token", token: token, call: call{method: "GET", target: "/admin/whitelist", noAuth: true}, want: 401, wantErr: "admin token required", wantChall: `Bearer realm="portcullis-admin"`},
		{name: "missing token from loopback", token: token, call: call{method: "GET", target: "/admin/blacklist", remote: "127.0.0.1:1", noAuth: true}, want: 401, wantChall: `Bearer realm="portcullis-admin"`},
		{name: "wrong token", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer nope"}}, want: 401, wantErr: "invalid admin token", wantChall: `Bearer realm="portcullis-admin", error="invalid_token"`},
		{name: "token prefix", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer " + token[:len(token)-1]}}, want: 401},
		{name: "token plus a byte", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer " + token + "x"}}, want: 401},
		{name: "basic scheme", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Basic " + token}}, want: 401},
		{name: "bare token", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{token}}, want: 401},
		{name: "empty bearer", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer"}}, want: 401},
		{name: "duplicate headers, both right", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer " + token, "Bearer " + token}}, want: 401},
		{name: "duplicate headers, wrong then right", token: token, call: call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer x", "Bearer " + token}}, want: 401},
		{name: "right token", token: token, call: call{method: "GET", target: "/admin/whitelist"}, want: 200},
		{name: "scheme is case-insensitive", token: token, call: call{method: "GET", target: "/admin/blacklist", auth: []string{"bearer " + token}}, want: 200},
		{name: "right token, blocked", token: token, call: call{method: "GET", target: "/admin/blocked"}, want: 200},
		{name: "unknown method", token: token, call: call{method: "PUT", target: "/admin/whitelist?ip=1.2.3.4"}, want: 405, wantAllow: "GET, POST, DELETE"},
		{name: "HEAD is not a method here", token: token, call: call{method: "HEAD", target: "/admin/blacklist"}, want: 405, wantAllow: "GET, POST, DELETE"},
		{name: "POST on blocked", token: token, call: call{method: "POST", target: "/admin/blocked?ip=1.2.3.4"}, want: 405, wantAllow: "GET, DELETE"},
		{name: "unknown method without token is 401 first", token: token, call: call{method: "PUT", target: "/admin/whitelist", noAuth: true}, want: 401},
		{name: "cross-site browser write", token: token, call: call{method: "POST", target: "/admin/whitelist?ip=1.2.3.4", header: map[string]string{"Sec-Fetch-Site": "cross-site"}}, want: 403, wantErr: "cross-origin"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{token: tc.token, blocker: true})
			rec := e.do(tc.call)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d; body %q", rec.Code, tc.want, rec.Body)
			}
			chall := rec.Header().Get("WWW-Authenticate")
			switch {
			case rec.Code == http.StatusUnauthorized && !strings.HasPrefix(chall, `Bearer realm="portcullis-admin"`):
				t.Errorf("401 with WWW-Authenticate %q", chall)
			case rec.Code != http.StatusUnauthorized && chall != "":
				t.Errorf("%d with WWW-Authenticate %q", rec.Code, chall)
			case tc.wantChall != "" && chall != tc.wantChall:
				t.Errorf("WWW-Authenticate %q, want %q", chall, tc.wantChall)
			}
			if got := rec.Header().Get("Allow"); got != tc.wantAllow {
				t.Errorf("Allow %q, want %q", got, tc.wantAllow)
			}
			if rec.Code >= 400 {
				b := decode[errorBody](t, rec)
				if !strings.Contains(b.Error, tc.wantErr) || b.RequestID == "" {
					t.Errorf("error body %+v, want error containing %q and a request_id", b, tc.wantErr)
				}
			}
			if len(e.lists.Entries(iplist.Allow)) != 0 {
				t.Errorf("refused call changed the whitelist: %v", e.lists.Entries(iplist.Allow))
			}
			if strings.Contains(e.logs.String(), token) {
				t.Errorf("log contains the token: %s", e.logs)
			}
		})
	}
}

func TestBadIP(t *testing.T) {
	tests := []struct {
		name    string
		method  string
		target  string
		remote  string
		xff     string
		wantErr string
	}{
		{name: "missing ip", method: "POST", target: "/admin/blacklist", wantErr: "missing ip"},
		{name: "empty ip", method: "POST", target: "/admin/blacklist?ip=", wantErr: "empty ip"},
		{name: "junk", method: "POST", target: "/admin/blacklist?ip=abc", wantErr: "not a valid IP"},
		{name: "octet over 255", method: "POST", target: "/admin/whitelist?ip=999.1.1.1", wantErr: "not a valid IP"},
		{name: "leading zeros", method: "POST", target: "/admin/blacklist?ip=010.0.0.1", wantErr: "not a valid IP"},
		{name: "with port", method: "POST", target: "/admin/blacklist?ip=203.0.113.7:1234", wantErr: "not a valid IP"},
		{name: "brackets", method: "POST", target: "/admin/blacklist?ip=[2001:db8::1]", wantErr: "not a valid IP"},
		{name: "leading space", method: "POST", target: "/admin/blacklist?ip=%201.2.3.4", wantErr: "not a valid IP"},
		{name: "CRLF injection", method: "POST", target: "/admin/blacklist?ip=1.2.3.4%0d%0aX", wantErr: "not a valid IP"},
		{name: "bad CIDR length", method: "POST", target: "/admin/blacklist?ip=1.2.3.4/33", wantErr: "not a valid CIDR"},
		{name: "IPv4 /0", method: "POST", target: "/admin/blacklist?ip=1.2.3.4/0", wantErr: "/0"},
		{name: "all IPv4", method: "POST", target: "/admin/whitelist?ip=0.0.0.0/0", wantErr: "/0"},
		{name: "all IPv6", method: "POST", target: "/admin/whitelist?ip=::/0", wantErr: "/0"},
		{name: "all IPv4 in mapped form", method: "POST", target: "/admin/whitelist?ip=::ffff:0:0/96", wantErr: "/0"},
		{name: "mapped prefix shorter than /96", method: "POST", target: "/admin/blacklist?ip=::ffff:0:0/80", wantErr: "IPv4-mapped"},
		{name: "zone", method: "POST", target: "/admin/blacklist?ip=fe80::1%25eth0", wantErr: "zone"},
		{name: "zone on delete", method: "DELETE", target: "/admin/whitelist?ip=fe80::1%25eth0", wantErr: "zone"},
		{name: "two ip parameters", method: "POST", target: "/admin/blacklist?ip=1.2.3.4&ip=5.6.7.8", wantErr: "more than one"},
		{name: "malformed query", method: "POST", target: "/admin/blacklist?ip=%zz", wantErr: "malformed query"},
		{name: "overlong", method: "POST", target: "/admin/blacklist?ip=" + strings.Repeat("1", 100), wantErr: "at most"},
		{name: "GET with ip", method: "GET", target: "/admin/blacklist?ip=1.2.3.4", wantErr: "GET lists"},
		{name: "deny own address", method: "POST", target: "/admin/blacklist?ip=198.51.100.7", wantErr: "your own address 198.51.100.7"},
		{name: "deny own range", method: "POST", target: "/admin/blacklist?ip=198.51.0.0/16", wantErr: "your own address"},
		{name: "deny own mapped form", method: "POST", target: "/admin/blacklist?ip=::ffff:198.51.100.7", wantErr: "your own address"},
		{name: "deny own IPv6", method: "POST", target: "/admin/blacklist?ip=2001:db8:1::/48", remote: "[2001:db8:1::9]:5000", wantErr: "your own address"},
		{name: "deny own address behind the edge proxy", method: "POST", target: "/admin/blacklist?ip=203.0.113.0/24", remote: "10.0.0.5:5000", xff: "203.0.113.9", wantErr: "your own address 203.0.113.9"},
		{name: "deny a trusted proxy", method: "POST", target: "/admin/blacklist?ip=10.0.0.5", wantErr: "trusted proxy range 10.0.0.0/24"},
		{name: "deny a range containing the trusted proxies", method: "POST", target: "/admin/blacklist?ip=10.0.0.0/8", wantErr: "trusted proxy"},
		{name: "deny IPv6 loopback proxy", method: "POST", target: "/admin/blacklist?ip=::/1", wantErr: "trusted proxy range ::1/128"},
		{name: "unblock a range", method: "DELETE", target: "/admin/blocked?ip=192.0.2.0/24", wantErr: "not a range"},
		{name: "unblock junk", method: "DELETE", target: "/admin/blocked?ip=nope", wantErr: "not a valid IP"},
		{name: "unblock missing ip", method: "DELETE", target: "/admin/blocked", wantErr: "missing ip"},
		{name: "blocked GET with ip", method: "GET", target: "/admin/blocked?ip=1.2.3.4", wantErr: "GET lists"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, envOpts{token: token, blocker: true})
			c := call{method: tc.method, target: tc.target, remote: tc.remote}
			if tc.xff != "" {
				c.header = map[string]string{"X-Forwarded-For": tc.xff}
			}
			rec := e.do(c)
			if rec.Code != http.StatusBadRequest {
				t.Fatalf("status %d, want 400; body %q", rec.Code, rec.Body)
			}
			if b := decode[errorBody](t, rec); !strings.Contains(b.Error, tc.wantErr) {
				t.Errorf("error %q, want it to contain %q", b.Error, tc.wantErr)
			}
			for _, k := range []iplist.Kind{iplist.Allow, iplist.Deny} {
				if n := e.lists.Len(k); n != 0 {
					t.Errorf("%v changed: %v", k, e.lists.Entries(k))
				}
			}
			if tc.method == "GET" {
				return
			}
			// Refused changes are audit-logged at warn and counted.
			var found bool
			for _, l := range e.logLines(t) {
				if l["msg"] == "admin change refused" && l["level"] == "WARN" && l["component"] == "admin" &&
					l["reason"] != "" && l["request_id"] == "req-1" && l["client_ip"] != "" {
					found = true
				}
			}
			if !found {
				t.Errorf("no audit line for the refused change: %s", e.logs)
			}
			list := strings.TrimPrefix(strings.SplitN(tc.target, "?", 2)[0], "/admin/")
			if got := e.counter(t, "admin_changes_total", map[string]string{"list": list, "action": "refused"}); got != 1 {
				t.Errorf("admin_changes_total{list=%q,action=refused} = %v, want 1", list, got)
			}
		})
	}
}

type changeBody struct {
	List    string `json:"list"`
	Action  string `json:"action"`
	IP      string `json:"ip"`
	Changed bool   `json:"changed"`
}

type listBody struct {
	List    string   `json:"list"`
	Entries []string `json:"entries"`
}

func TestListLifecycle(t *testing.T) {
	e := newEnv(t, envOpts{token: token, deny: []netip.Prefix{mustPrefix("192.0.2.0/24")}})
	probe := mustAddr("203.0.113.77")
	steps := []struct {
		name       string
		method     string
		target     string
		want       int
		wantBody   any // changeBody or listBody
		wantDenied bool
	}{
		{name: "boot entries listed", method: "GET", target: "/admin/blacklist", want: 200, wantBody: listBody{List: "blacklist", Entries: []string{"192.0.2.0/24"}}},
		{name: "empty whitelist is an empty array", method: "GET", target: "/admin/whitelist", want: 200, wantBody: listBody{List: "whitelist", Entries: []string{}}},
		{name: "add CIDR", method: "POST", target: "/admin/blacklist?ip=203.0.113.0/24", want: 200, wantBody: changeBody{List: "blacklist", Action: "add", IP: "203.0.113.0/24", Changed: true}, wantDenied: true},
		{name: "add again", method: "POST", target: "/admin/blacklist?ip=203.0.113.0/24", want: 200, wantBody: changeBody{List: "blacklist", Action: "add", IP: "203.0.113.0/24"}, wantDenied: true},
		{name: "host bits are masked", method: "POST", target: "/admin/blacklist?ip=203.0.113.9/24", want: 200, wantBody: changeBody{List: "blacklist", Action: "add", IP: "203.0.113.0/24"}, wantDenied: true},
		{name: "listed sorted", method: "GET", target: "/admin/blacklist", want: 200, wantBody: listBody{List: "blacklist", Entries: []string{"192.0.2.0/24", "203.0.113.0/24"}}, wantDenied: true},
		{name: "whitelist mapped form stored as IPv4", method: "POST", target: "/admin/whitelist?ip=::ffff:203.0.113.7", want: 200, wantBody: changeBody{List: "whitelist", Action: "add", IP: "203.0.113.7/32", Changed: true}, wantDenied: true},
		{name: "whitelist IPv6", method: "POST", target: "/admin/whitelist?ip=2001:DB8::/32", want: 200, wantBody: changeBody{List: "whitelist", Action: "add", IP: "2001:db8::/32", Changed: true}, wantDenied: true},
		{name: "whitelist listed", method: "GET", target: "/admin/whitelist", want: 200, wantBody: listBody{List: "whitelist", Entries: []string{"203.0.113.7/32", "2001:db8::/32"}}, wantDenied: true},
		{name: "remove a host inside the CIDR is not an entry", method: "DELETE", target: "/admin/blacklist?ip=203.0.113.77", want: 404, wantDenied: true},
		{name: "remove CIDR", method: "DELETE", target: "/admin/blacklist?ip=203.0.113.0/24", want: 200, wantBody: changeBody{List: "blacklist", Action: "remove", IP: "203.0.113.0/24", Changed: true}},
		{name: "remove again", method: "DELETE", target: "/admin/blacklist?ip=203.0.113.0/24", want: 404},
		{name: "remove whitelist entry by its IPv4 form", method: "DELETE", target: "/admin/whitelist?ip=203.0.113.7", want: 200, wantBody: changeBody{List: "whitelist", Action: "remove", IP: "203.0.113.7/32", Changed: true}},
		{name: "whitelisting the caller is fine", method: "POST", target: "/admin/whitelist?ip=198.51.100.7", want: 200, wantBody: changeBody{List: "whitelist", Action: "add", IP: "198.51.100.7/32", Changed: true}},
	}
	for _, s := range steps {
		rec := e.do(call{method: s.method, target: s.target})
		if rec.Code != s.want {
			t.Fatalf("%s: status %d, want %d; body %q", s.name, rec.Code, s.want, rec.Body)
		}
		switch want := s.wantBody.(type) {
		case changeBody:
			if got := decode[changeBody](t, rec); got != want {
				t.Errorf("%s: body %+v, want %+v", s.name, got, want)
			}
		case listBody:
			got := decode[listBody](t, rec)
			if got.List != want.List || got.Entries == nil || !slices.Equal(got.Entries, want.Entries) {
				t.Errorf("%s: body %s, want %+v", s.name, rec.Body, want)
			}
		}
		// The change is visible to the very next lookup.
		if d := e.lists.Denied(probe); d != s.wantDenied {
			t.Errorf("%s: Denied(%v) = %v, want %v", s.name, probe, d, s.wantDenied)
		}
	}
	for _, c := range []struct {
		list, action string
		want         float64
	}{
		{list: "blacklist", action: "add", want: 1}, {list: "blacklist", action: "remove", want: 1},
		{list: "whitelist", action: "add", want: 3}, {list: "whitelist", action: "remove", want: 1},
		{list: "blacklist", action: "refused", want: 0},
	} {
		if got := e.counter(t, "admin_changes_total", map[string]string{"list": c.list, "action": c.action}); got != c.want {
			t.Errorf("admin_changes_total{list=%q,action=%q} = %v, want %v", c.list, c.action, got, c.want)
		}
	}
}

func TestListCap(t *testing.T) {
	e := newEnv(t, envOpts{token: token})
	e.api.max = 2
	for i, want := range []int{200, 200, 400, 200} {
		target := fmt.Sprintf("/admin/whitelist?ip=192.0.2.%d", i)
		if i == 3 {
			target = "/admin/whitelist?ip=192.0.2.0" // already there: not an addition
		}
		if rec := e.do(call{method: "POST", target: target}); rec.Code != want {
			t.Errorf("POST %s: status %d, want %d; body %q", target, rec.Code, want, rec.Body)
		}
	}
}

type blockedBody struct {
	Blocked []struct {
		IP          string `json:"ip"`
		Until       string `json:"until"`
		SecondsLeft int64  `json:"seconds_left"`
	} `json:"blocked"`
}

func TestBlocked(t *testing.T) {
	e := newEnv(t, envOpts{token: token, blocker: true})
	e.blocker.blocks[mustAddr("203.0.113.9")] = t0.Add(90 * time.Second)
	e.blocker.blocks[mustAddr("198.51.100.1")] = t0.Add(1500 * time.Millisecond)
	e.blocker.blocks[mustAddr("2001:db8:1:2::")] = t0.Add(10 * time.Minute) // a /64 key
	e.blocker.blocks[mustAddr("192.0.2.1")] = t0.Add(-time.Second)          // expired, not yet collected

	rec := e.do(call{method: "GET", target: "/admin/blocked"})
	if rec.Code != 200 {
		t.Fatalf("GET status %d; body %q", rec.Code, rec.Body)
	}
	got := decode[blockedBody](t, rec)
	want := []struct {
		ip, until string
		left      int64
	}{
		{ip: "198.51.100.1", until: "2026-03-01T12:00:01Z", left: 2},
		{ip: "203.0.113.9", until: "2026-03-01T12:01:30Z", left: 90},
		{ip: "2001:db8:1:2::", until: "2026-03-01T12:10:00Z", left: 600},
	}
	if len(got.Blocked) != len(want) {
		t.Fatalf("blocked = %s, want %d entries", rec.Body, len(want))
	}
	for i, w := range want {
		b := got.Blocked[i]
		if b.IP != w.ip || b.Until != w.until || b.SecondsLeft != w.left {
			t.Errorf("blocked[%d] = %+v, want %+v", i, b, w)
		}
	}

	steps := []struct {
		name   string
		target string
		want   int
	}{
		{name: "lift a block", target: "/admin/blocked?ip=203.0.113.9", want: 200},
		{name: "lift it again", target: "/admin/blocked?ip=203.0.113.9", want: 404},
		{name: "never blocked", target: "/admin/blocked?ip=192.0.2.200", want: 404},
		{name: "IPv6 address inside a blocked /64", target: "/admin/blocked?ip=2001:db8:1:2::abcd", want: 200},
		{name: "mapped form of a blocked IPv4", target: "/admin/blocked?ip=::ffff:198.51.100.1", want: 200},
	}
	for _, s := range steps {
		rec := e.do(call{method: "DELETE", target: s.target})
		if rec.Code != s.want {
			t.Errorf("%s: status %d, want %d; body %q", s.name, rec.Code, s.want, rec.Body)
		}
	}
	if got := e.blocker.Blocked(t0); len(got) != 1 || got[0].IP != mustAddr("192.0.2.1") {
		t.Errorf("left blocked: %v, want only the expired 192.0.2.1", got)
	}
	if got := e.counter(t, "admin_changes_total", map[string]string{"list": "blocked", "action": "unblock"}); got != 3 {
		t.Errorf("admin_changes_total{list=blocked,action=unblock} = %v, want 3", got)
	}

	// Without a DDoS guard: nothing blocked, nothing to lift.
	e2 := newEnv(t, envOpts{token: token})
	if rec := e2.do(call{method: "GET", target: "/admin/blocked"}); rec.Code != 200 || strings.TrimSpace(rec.Body.String()) != `{"blocked":[]}` {
		t.Errorf("no guard: GET %d %q", rec.Code, rec.Body)
	}
	if rec := e2.do(call{method: "DELETE", target: "/admin/blocked?ip=1.2.3.4"}); rec.Code != 404 {
		t.Errorf("no guard: DELETE %d", rec.Code)
	}
}

func TestAuditLog(t *testing.T) {
	e := newEnv(t, envOpts{token: token, blocker: true})
	e.blocker.blocks[mustAddr("203.0.113.9")] = t0.Add(time.Minute)
	calls := []call{
		{method: "POST", target: "/admin/blacklist?ip=192.0.2.0/24"},
		{method: "DELETE", target: "/admin/blacklist?ip=192.0.2.0/24"},
		{method: "POST", target: "/admin/whitelist?ip=2001:db8::1", remote: "10.0.0.5:1", header: map[string]string{"X-Forwarded-For": "203.0.113.50"}},
		{method: "POST", target: "/admin/blacklist?ip=198.51.100.7"}, // own address: refused
		{method: "DELETE", target: "/admin/blocked?ip=203.0.113.9"},
		{method: "POST", target: "/admin/blacklist?ip=1.2.3.4", auth: []string{"Bearer wrong-" + token[:8]}},
	}
	for _, c := range calls {
		e.do(c)
	}
	want := []struct {
		level, msg, action, list, ip, clientIP, requestID string
	}{
		{level: "INFO", msg: "admin change", action: "add", list: "blacklist", ip: "192.0.2.0/24", clientIP: "198.51.100.7", requestID: "req-1"},
		{level: "INFO", msg: "admin change", action: "remove", list: "blacklist", ip: "192.0.2.0/24", clientIP: "198.51.100.7", requestID: "req-2"},
		{level: "INFO", msg: "admin change", action: "add", list: "whitelist", ip: "2001:db8::1/128", clientIP: "203.0.113.50", requestID: "req-3"},
		{level: "WARN", msg: "admin change refused", action: "add", list: "blacklist", ip: "198.51.100.7", clientIP: "198.51.100.7", requestID: "req-4"},
		{level: "INFO", msg: "admin change", action: "unblock", list: "blocked", ip: "203.0.113.9", clientIP: "198.51.100.7", requestID: "req-5"},
	}
	lines := e.logLines(t)
	if len(lines) != len(want)+1 {
		t.Fatalf("%d log lines, want %d:\n%s", len(lines), len(want)+1, e.logs)
	}
	for i, w := range want {
		l := lines[i]
		got := []any{l["level"], l["msg"], l["action"], l["list"], l["ip"], l["client_ip"], l["request_id"], l["component"]}
		exp := []any{w.level, w.msg, w.action, w.list, w.ip, w.clientIP, w.requestID, "admin"}
		if !slices.Equal(got, exp) {
			t.Errorf("line %d = %v\nwant       %v", i, got, exp)
		}
	}
	if last := lines[len(lines)-1]; last["msg"] != "admin call refused" || last["reason"] != "invalid" || last["level"] != "WARN" {
		t.Errorf("auth failure line = %v", last)
	}
	if strings.Contains(e.logs.String(), token) || strings.Contains(e.logs.String(), token[:8]) {
		t.Errorf("the log holds the token or part of a sent one:\n%s", e.logs)
	}
}

// Auth failures come from anyone: one warning per second at most, the rest
// at debug and counted in the next warning.
func TestAuthFailureLogSampling(t *testing.T) {
	e := newEnv(t, envOpts{token: token})
	for range 3 {
		e.do(call{method: "GET", target: "/admin/whitelist", noAuth: true})
	}
	e.now = e.now.Add(time.Second)
	e.do(call{method: "GET", target: "/admin/whitelist", auth: []string{"Bearer x"}})
	var levels []string
	var suppressed []any
	for _, l := range e.logLines(t) {
		levels = append(levels, l["level"].(string))
		suppressed = append(suppressed, l["suppressed"])
	}
	if !slices.Equal(levels, []string{"WARN", "DEBUG", "DEBUG", "WARN"}) {
		t.Errorf("levels %v", levels)
	}
	if suppressed[0] != float64(0) || suppressed[3] != float64(2) {
		t.Errorf("suppressed counts %v, want 0 then 2", suppressed)
	}
	for reason, want := range map[string]float64{"missing": 3, "invalid": 1, "duplicate": 0, "disabled": 0} {
		if got := e.counter(t, "admin_auth_failures_total", map[string]string{"reason": reason}); got != want {
			t.Errorf("admin_auth_failures_total{reason=%q} = %v, want %v", reason, got, want)
		}
	}
}

func TestNew(t *testing.T) {
	lists := iplist.NewLists(nil, nil)
	reg := prometheus.NewRegistry()
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{name: "no lists", opts: Options{Token: "x"}, wantErr: "Lists is required"},
		{name: "invalid trusted prefix", opts: Options{Lists: lists, Trusted: []netip.Prefix{{}}}, wantErr: "Trusted[0]"},
		{name: "negative cap", opts: Options{Lists: lists, MaxEntries: -1}, wantErr: "MaxEntries"},
		{name: "minimal", opts: Options{Lists: lists}},
		{name: "registry", opts: Options{Lists: lists, Registerer: reg}},
		{name: "same registry again reuses the counters", opts: Options{Lists: lists, Registerer: reg}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a, err := New(tc.opts)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want it to contain %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || a == nil {
				t.Fatalf("New: %v", err)
			}
			routes := a.Routes()
			for _, p := range []string{"/admin/whitelist", "/admin/blacklist", "/admin/blocked"} {
				if routes[p] == nil {
					t.Errorf("no route %s", p)
				}
			}
		})
	}
}

// Outside the gateway's chain (no request.Info) the handlers still work,
// taking the caller from RemoteAddr.
func TestWithoutRequestInfo(t *testing.T) {
	lists := iplist.NewLists(nil, nil)
	a, err := New(Options{Token: token, Lists: lists})
	if err != nil {
		t.Fatal(err)
	}
	h := a.Routes()["/admin/blacklist"]
	for _, tc := range []struct {
		name   string
		target string
		want   int
	}{
		{name: "own address refused", target: "/admin/blacklist?ip=192.0.2.1", want: 400},
		{name: "other address added", target: "/admin/blacklist?ip=192.0.2.2", want: 200},
	} {
		r := httptest.NewRequest("POST", tc.target, nil)
		r.RemoteAddr = "192.0.2.1:1"
		r.Header.Set("Authorization", "Bearer "+token)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tc.want {
			t.Errorf("%s: status %d, want %d; body %q", tc.name, rec.Code, tc.want, rec.Body)
		}
	}
}

// Admin writes race with lookups and with each other; run with -race.
func TestConcurrentChanges(t *testing.T) {
	e := newEnv(t, envOpts{token: token})
	api := e.api.Routes()["/admin/blacklist"]
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				ip := fmt.Sprintf("192.0.%d.%d", g, i)
				for _, m := range []string{"POST", "DELETE", "POST"} {
					r := httptest.NewRequest(m, "/admin/blacklist?ip="+ip, nil)
					r.RemoteAddr = "198.51.100.7:1"
					r.Header.Set("Authorization", "Bearer "+token)
					api.ServeHTTP(httptest.NewRecorder(), r)
					_ = e.lists.Denied(mustAddr(ip))
				}
			}
		})
	}
	wg.Wait()
	if n := e.lists.Len(iplist.Deny); n != 8*50 {
		t.Errorf("%d entries, want %d", n, 8*50)
	}
}

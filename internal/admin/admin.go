// Package admin serves the admin API (docs/endpoints.md): the allow/deny lists and the DDoS guard's blocks, behind a bearer
// token, with every change audit-logged.
package admin

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/iplist"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Block is one IP the DDoS guard has blocked, until when.
type Block struct {
	IP    netip.Addr
	Until time.Time
}

// Blocker is what the admin API needs of the DDoS guard.
type Blocker interface {
	// Blocked returns the blocks still in force at now.
	Blocked(now time.Time) []Block
	// Unblock lifts the block on ip and reports whether there was one.
	Unblock(ip netip.Addr) bool
}

// BlockerFuncs adapts two functions to Blocker.
type BlockerFuncs struct {
	BlockedFunc func(now time.Time) []Block
	UnblockFunc func(ip netip.Addr) bool
}

// Blocked calls BlockedFunc.
func (f BlockerFuncs) Blocked(now time.Time) []Block { return f.BlockedFunc(now) }

// Unblock calls UnblockFunc.
func (f BlockerFuncs) Unblock(ip netip.Addr) bool { return f.UnblockFunc(ip) }

var _ Blocker = BlockerFuncs{}

// DefaultMaxEntries caps each list when Options.MaxEntries is 0.
const DefaultMaxEntries = 100_000

// Options configures the admin API.
type Options struct {
	// Token is ADMIN_TOKEN. Empty turns the API off: every call gets 403,
	// whoever asks (a loopback peer may be an edge proxy relaying anyone).
	Token string
	// Lists are the gateway's allow/deny lists (required).
	Lists *iplist.Lists
	// Blocker is the DDoS guard; nil lists no blocks and lifts none.
	Blocker Blocker
	// Trusted is TRUSTED_PROXIES: no deny entry may overlap it.
	Trusted []netip.Prefix
	// Log is the base logger (component "admin" is added); nil discards.
	Log *slog.Logger
	// Registerer receives admin_changes_total and admin_auth_failures_total;
	// nil registers nothing.
	Registerer prometheus.Registerer
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// MaxEntries caps each list for additions through the API (the boot
	// lists are not capped); 0 is DefaultMaxEntries.
	MaxEntries int
}

// API is the admin API. Build it with New; its handlers are in Routes.
type API struct {
	enabled bool
	digest  [sha256.Size]byte // SHA-256 of the token: compared in constant time, whatever the length
	lists   *iplist.Lists
	blocker Blocker
	trusted []netip.Prefix
	log     *slog.Logger
	now     func() time.Time
	max     int
	csrf    *http.CrossOriginProtection

	changes      *prometheus.CounterVec // admin_changes_total{list,action}
	authFailures *prometheus.CounterVec // admin_auth_failures_total{reason}

	// Auth failures come from anyone who can reach the port: at most one
	// warning a second, the rest at debug and counted in the next warning.
	lastWarn   atomic.Int64
	suppressed atomic.Int64
}

// Metric label values; the sets are fixed, so cardinality is bounded.
const (
	listBlocked = "blocked"

	actionAdd     = "add"
	actionRemove  = "remove"
	actionUnblock = "unblock"
	actionRefused = "refused"

	reasonDisabled  = "disabled"
	reasonMissing   = "missing"
	reasonDuplicate = "duplicate"
	reasonInvalid   = "invalid"
)

// New validates o and returns the API.
func New(o Options) (*API, error) {
	if o.Lists == nil {
		return nil, errors.New("admin: Options.Lists is required")
	}
	var errs []error
	for i, p := range o.Trusted {
		if !p.IsValid() {
			errs = append(errs, fmt.Errorf("admin: Options.Trusted[%d] is not a valid prefix", i))
		}
	}
	if o.MaxEntries < 0 {
		errs = append(errs, fmt.Errorf("admin: Options.MaxEntries %d is negative", o.MaxEntries))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	a := &API{
		enabled: o.Token != "",
		digest:  sha256.Sum256([]byte(o.Token)),
		lists:   o.Lists,
		blocker: o.Blocker,
		trusted: o.Trusted,
		log:     o.Log,
		now:     o.Now,
		max:     o.MaxEntries,
		csrf:    http.NewCrossOriginProtection(),
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = telemetry.Component(a.log, "admin")
	if a.now == nil {
		a.now = time.Now
	}
	if a.max == 0 {
		a.max = DefaultMaxEntries
	}
	var err error
	if a.changes, err = telemetry.Register(o.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "admin_changes_total",
		Help: "Changes made through the admin API, by list (whitelist, blacklist, blocked) and action (add, remove, unblock, refused).",
	}, []string{"list", "action"})); err != nil {
		return nil, fmt.Errorf("admin: registering admin_changes_total: %w", err)
	}
	if a.authFailures, err = telemetry.Register(o.Registerer, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "admin_auth_failures_total",
		Help: "Admin API calls refused before any action, by reason (disabled, missing, duplicate, invalid).",
	}, []string{"reason"})); err != nil {
		return nil, fmt.Errorf("admin: registering admin_auth_failures_total: %w", err)
	}
	// Start every series at 0, so rate() and alerts see the first event.
	for _, l := range []string{iplist.Allow.String(), iplist.Deny.String()} {
		for _, act := range []string{actionAdd, actionRemove, actionRefused} {
			a.changes.WithLabelValues(l, act)
		}
	}
	a.changes.WithLabelValues(listBlocked, actionUnblock)
	a.changes.WithLabelValues(listBlocked, actionRefused)
	for _, r := range []string{reasonDisabled, reasonMissing, reasonDuplicate, reasonInvalid} {
		a.authFailures.WithLabelValues(r)
	}
	return a, nil
}

// Routes returns the handlers by exact path: /admin/whitelist,
// /admin/blacklist and /admin/blocked. They expect to run inside the
// gateway's chain (request.Info in the context) but work without it.
func (a *API) Routes() map[string]http.Handler {
	return map[string]http.Handler{
		"/admin/whitelist": a.guard("GET, POST, DELETE", func(w http.ResponseWriter, r *http.Request, c caller) {
			a.serveList(w, r, c, iplist.Allow)
		}),
		"/admin/blacklist": a.guard("GET, POST, DELETE", func(w http.ResponseWriter, r *http.Request, c caller) {
			a.serveList(w, r, c, iplist.Deny)
		}),
		"/admin/blocked": a.guard("GET, DELETE", a.serveBlocked),
	}
}

// Guard wraps h in the checks every admin call passes (API enabled, token,
// method in allow, cross-origin browser request), so admin endpoints that
// live elsewhere (the gateway's /admin/reload and /admin/config) share one
// authentication path and its metrics.
func (a *API) Guard(allow string, h http.Handler) http.Handler {
	return a.guard(allow, func(w http.ResponseWriter, r *http.Request, _ caller) { h.ServeHTTP(w, r) })
}

// caller is who is asking, for checks and the audit log.
type caller struct {
	ip     netip.Addr // resolved client IP
	ipText string
	peer   netip.Addr // TCP peer
	id     string     // request ID
}

func callerOf(r *http.Request) caller {
	if in := request.From(r.Context()); in != nil {
		c := caller{ip: in.ClientIP, ipText: in.ClientIPText, peer: in.PeerIP, id: in.ID}
		if c.ipText == "" && c.ip.IsValid() {
			c.ipText = c.ip.String()
		}
		return c
	}
	peer := realip.PeerAddr(r.RemoteAddr)
	return caller{ip: peer, ipText: peer.String(), peer: peer}
}

// guard runs the checks every admin call passes, in order: API enabled,
// token, method, cross-origin browser request; then h.
func (a *API) guard(allow string, h func(http.ResponseWriter, *http.Request, caller)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := callerOf(r)
		if !a.enabled {
			a.authFailed(r, c, reasonDisabled)
			gwerror.Write(w, r, http.StatusForbidden, "admin API disabled: set ADMIN_TOKEN")
			return
		}
		if reason := a.checkToken(r.Header); reason != "" {
			a.authFailed(r, c, reason)
			challenge := `Bearer realm="portcullis-admin"`
			msg := "admin token required"
			if reason != reasonMissing {
				// RFC 6750 §3.1: a token was sent but is not acceptable.
				challenge += `, error="invalid_token"`
				msg = "invalid admin token"
			}
			w.Header().Set("WWW-Authenticate", challenge)
			gwerror.Write(w, r, http.StatusUnauthorized, msg)
			return
		}
		if !methodIn(r.Method, allow) {
			w.Header().Set("Allow", allow)
			gwerror.Write(w, r, http.StatusMethodNotAllowed, "method not allowed; use "+allow)
			return
		}
		// A bearer token is not sent by browsers on their own, so CSRF needs a
		// leaked token anyway; refusing cross-site browser writes is cheap
		// defence in depth (research K.4).
		if err := a.csrf.Check(r); err != nil {
			a.refused(r, c, "", "", "cross-origin browser request")
			gwerror.Write(w, r, http.StatusForbidden, "cross-origin request refused")
			return
		}
		h(w, r, c)
	})
}

// checkToken returns "" when the request carries exactly one
// Authorization header holding the bearer token, else the failure reason.
func (a *API) checkToken(h http.Header) string {
	vals := h["Authorization"]
	switch {
	case len(vals) == 0:
		return reasonMissing
	case len(vals) > 1:
		// Never "first one wins".
		return reasonDuplicate
	}
	scheme, cred, ok := strings.Cut(vals[0], " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return reasonInvalid
	}
	// Digests of both sides: equal lengths, so the comparison time says
	// nothing about the token's length either.
	d := sha256.Sum256([]byte(strings.TrimLeft(cred, " ")))
	if subtle.ConstantTimeCompare(d[:], a.digest[:]) != 1 {
		return reasonInvalid
	}
	return ""
}

func methodIn(m, allow string) bool {
	for v := range strings.SplitSeq(allow, ", ") {
		if m == v {
			return true
		}
	}
	return false
}

func (a *API) authFailed(r *http.Request, c caller, reason string) {
	a.authFailures.WithLabelValues(reason).Inc()
	attrs := []slog.Attr{
		slog.String("reason", reason), slog.String("method", r.Method),
		slog.String("path", r.URL.Path), slog.String("client_ip", c.ipText), slog.String("request_id", c.id),
	}
	sec := a.now().Unix()
	if last := a.lastWarn.Load(); sec != last && a.lastWarn.CompareAndSwap(last, sec) {
		attrs = append(attrs, slog.Int64("suppressed", a.suppressed.Swap(0)))
		a.log.LogAttrs(r.Context(), slog.LevelWarn, "admin call refused", attrs...)
		return
	}
	a.suppressed.Add(1)
	a.log.LogAttrs(r.Context(), slog.LevelDebug, "admin call refused", attrs...)
}

// refused audit-logs a change refused after authentication, at warn.
func (a *API) refused(r *http.Request, c caller, list, rawIP, why string) {
	if list != "" {
		a.changes.WithLabelValues(list, actionRefused).Inc()
	}
	a.log.LogAttrs(r.Context(), slog.LevelWarn, "admin change refused",
		slog.String("action", actionOf(r.Method, list)), slog.String("list", list),
		slog.String("ip", truncate(rawIP, 64)), slog.String("reason", why),
		slog.String("client_ip", c.ipText), slog.String("request_id", c.id))
}

// audit logs a change (or a no-op) at info.
func (a *API) audit(r *http.Request, c caller, action, list, ip string, changed bool) {
	if changed {
		a.changes.WithLabelValues(list, action).Inc()
	}
	a.log.LogAttrs(r.Context(), slog.LevelInfo, "admin change",
		slog.String("action", action), slog.String("list", list), slog.String("ip", ip),
		slog.Bool("changed", changed),
		slog.String("client_ip", c.ipText), slog.String("request_id", c.id))
}

func actionOf(method, list string) string {
	switch {
	case method == http.MethodPost:
		return actionAdd
	case method == http.MethodDelete && list == listBlocked:
		return actionUnblock
	case method == http.MethodDelete:
		return actionRemove
	}
	return strings.ToLower(method)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// ipParam returns the single ip query parameter of a change. why is set
// when there is not exactly one.
func ipParam(r *http.Request) (raw string, why string) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return "", "malformed query string"
	}
	vals := q["ip"]
	switch {
	case len(vals) == 0:
		return "", "missing ip parameter (?ip=IP or CIDR)"
	case len(vals) > 1:
		return "", "more than one ip parameter; send one change per request"
	}
	return vals[0], ""
}

// noIPOnGet refuses a GET that carries ?ip=: GET only reads, and a caller
// who expected it to change the list must not believe it did.
func noIPOnGet(w http.ResponseWriter, r *http.Request) bool {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err == nil && !q.Has("ip") {
		return false
	}
	gwerror.Write(w, r, http.StatusBadRequest, "GET lists and takes no ip; POST adds, DELETE removes")
	return true
}

type listAnswer struct {
	List    string   `json:"list"`
	Entries []string `json:"entries"`
}

type changeAnswer struct {
	List    string `json:"list"`
	Action  string `json:"action"`
	IP      string `json:"ip"`
	Changed bool   `json:"changed"`
}

func (a *API) serveList(w http.ResponseWriter, r *http.Request, c caller, k iplist.Kind) {
	list := k.String()
	if r.Method == http.MethodGet {
		if noIPOnGet(w, r) {
			return
		}
		entries := a.lists.Entries(k)
		out := listAnswer{List: list, Entries: make([]string, len(entries))}
		for i, p := range entries {
			out.Entries[i] = p.String()
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	raw, why := ipParam(r)
	var p netip.Prefix
	if why == "" {
		var err error
		if p, err = parseIPOrCIDR(raw); err != nil {
			why = err.Error()
		}
	}
	if why == "" && r.Method == http.MethodPost && k == iplist.Deny {
		why = a.denySafety(p, c)
	}
	if why == "" && r.Method == http.MethodPost && a.lists.Len(k) >= a.max && !slices.Contains(a.lists.Entries(k), p) {
		// A soft cap (concurrent additions may pass it by a few); adding an
		// entry that is already there stays a harmless no-op.
		why = fmt.Sprintf("the %s is full (%d entries); remove entries or use wider CIDRs", list, a.max)
	}
	if why != "" {
		a.refused(r, c, list, raw, why)
		gwerror.Write(w, r, http.StatusBadRequest, "bad ip: "+why)
		return
	}
	ans := changeAnswer{List: list, IP: p.String()}
	switch r.Method {
	case http.MethodPost:
		ans.Action = actionAdd
		ans.Changed = a.lists.Add(k, p)
	case http.MethodDelete:
		ans.Action = actionRemove
		ans.Changed = a.lists.Remove(k, p)
	}
	a.audit(r, c, ans.Action, list, ans.IP, ans.Changed)
	if ans.Action == actionRemove && !ans.Changed {
		gwerror.Write(w, r, http.StatusNotFound, ans.IP+" is not an entry of the "+list+" (remove the exact entry GET shows)")
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// denySafety returns why p must not go on the deny list, or "": it must
// not cover the caller (an admin locking themselves out) nor overlap a
// trusted proxy (blocking the edge proxy blocks everyone behind it).
func (a *API) denySafety(p netip.Prefix, c caller) string {
	for _, self := range []netip.Addr{c.ip, c.peer} {
		if self.IsValid() && p.Contains(self.Unmap()) {
			return fmt.Sprintf("%s contains your own address %s; denying it would lock you out", p, self.Unmap())
		}
	}
	for _, t := range a.trusted {
		if p.Overlaps(t) {
			return fmt.Sprintf("%s overlaps the trusted proxy range %s (TRUSTED_PROXIES); denying it would block every client behind that proxy", p, t)
		}
	}
	return ""
}

type blockAnswer struct {
	IP          string `json:"ip"`
	Until       string `json:"until"`
	SecondsLeft int64  `json:"seconds_left"`
}

func (a *API) serveBlocked(w http.ResponseWriter, r *http.Request, c caller) {
	now := a.now()
	if r.Method == http.MethodGet {
		if noIPOnGet(w, r) {
			return
		}
		var blocks []Block
		if a.blocker != nil {
			blocks = a.blocker.Blocked(now)
		}
		out := struct {
			Blocked []blockAnswer `json:"blocked"`
		}{Blocked: make([]blockAnswer, 0, len(blocks))}
		blocks = sortBlocks(blocks)
		for _, b := range blocks {
			left := b.Until.Sub(now)
			if left <= 0 {
				continue
			}
			out.Blocked = append(out.Blocked, blockAnswer{
				IP:          b.IP.String(),
				Until:       b.Until.UTC().Format(time.RFC3339),
				SecondsLeft: int64((left + time.Second - 1) / time.Second),
			})
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	raw, why := ipParam(r)
	var ip netip.Addr
	if why == "" {
		p, err := parseIPOrCIDR(raw)
		switch {
		case err != nil:
			why = err.Error()
		case !p.IsSingleIP():
			why = "blocks are per IP; give one address, not a range"
		default:
			ip = p.Addr()
		}
	}
	if why != "" {
		a.refused(r, c, listBlocked, raw, why)
		gwerror.Write(w, r, http.StatusBadRequest, "bad ip: "+why)
		return
	}
	lifted := false
	if a.blocker != nil {
		lifted = a.blocker.Unblock(ip)
		// The guard counts IPv6 clients per /64, so its block
		// may be held under the /64's key rather than this address.
		if k := realip.Key(ip); !lifted && k != ip {
			lifted = a.blocker.Unblock(k)
		}
	}
	a.audit(r, c, actionUnblock, listBlocked, ip.String(), lifted)
	if !lifted {
		gwerror.Write(w, r, http.StatusNotFound, ip.String()+" is not blocked")
		return
	}
	writeJSON(w, http.StatusOK, changeAnswer{List: listBlocked, Action: actionUnblock, IP: ip.String(), Changed: true})
}

// sortBlocks orders blocks by address, for a stable answer. It sorts a copy:
// the slice may be the guard's.
func sortBlocks(bs []Block) []Block {
	bs = slices.Clone(bs)
	slices.SortFunc(bs, func(x, y Block) int { return x.IP.Compare(y.IP) })
	return bs
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		// Only our own plain structs are marshalled.
		panic(fmt.Sprintf("admin: marshalling answer: %v", err))
	}
	b = append(b, '\n')
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

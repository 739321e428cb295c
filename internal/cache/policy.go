package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Directives is what the cache reads from one Cache-Control header.
type Directives struct {
	NoStore, NoCache, Private, NoTransform bool
	// MaxAge and SMaxAge are -1 when absent.
	MaxAge, SMaxAge int64
}

// ParseCacheControl reads the directives of h's Cache-Control lines.
// Unknown directives are ignored; a directive with a malformed number is
// treated as present with value 0 (the safe reading: not fresh).
func ParseCacheControl(h http.Header) Directives {
	d := Directives{MaxAge: -1, SMaxAge: -1}
	for _, line := range h["Cache-Control"] {
		for f := range strings.SplitSeq(line, ",") {
			name, val, _ := strings.Cut(strings.TrimSpace(f), "=")
			switch strings.ToLower(strings.TrimSpace(name)) {
			case "no-store":
				d.NoStore = true
			case "no-cache":
				d.NoCache = true // also the field-qualified form: conservative
			case "private":
				d.Private = true
			case "no-transform":
				d.NoTransform = true
			case "max-age":
				d.MaxAge = seconds(val)
			case "s-maxage":
				d.SMaxAge = seconds(val)
			}
		}
	}
	return d
}

// maxLifetime caps any lifetime an answer asks for.
const maxLifetime = 365 * 24 * time.Hour

// expiresIn is the lifetime an Expires header gives: Expires minus the
// answer's Date (its arrival when Date is missing or invalid); 0 for an
// invalid Expires ("0", "-1", garbage) or a past one, which RFC 9111
// §5.3 says mean "already expired".
func expiresIn(h http.Header, now time.Time) time.Duration {
	exp, err := http.ParseTime(h.Get("Expires"))
	if err != nil {
		return 0
	}
	date := now
	if d, err := http.ParseTime(h.Get("Date")); err == nil {
		date = d
	}
	return min(max(exp.Sub(date), 0), maxLifetime)
}

func seconds(v string) int64 {
	n, err := strconv.ParseInt(strings.Trim(strings.TrimSpace(v), `"`), 10, 64)
	if err != nil || n < 0 {
		return 0
	}
	return min(n, int64(maxLifetime/time.Second))
}

// credentialHeaders mark a request as personal: its answer may depend on
// who asked, so a shared cache neither serves nor stores it.
var credentialHeaders = []string{"Authorization", "Proxy-Authorization", "Cookie", "X-Api-Key"}

// HasCredentials reports whether a request carries credentials (any of
// Authorization, Proxy-Authorization, Cookie, X-API-Key) or one of the
// extra canonical header names in private (CACHE_PRIVATE_HEADERS): a
// response to it may depend on who asked.
func HasCredentials(h http.Header, private []string) bool {
	for _, k := range credentialHeaders {
		if len(h[k]) > 0 {
			return true
		}
	}
	for _, k := range private {
		if len(h[k]) > 0 {
			return true
		}
	}
	return false
}

// SkipLookup reports whether the client asked for a fresh answer
// (Cache-Control: no-cache or max-age=0, or Pragma: no-cache). A shared
// cache may ignore it (RFC 9111 §5.2.1); the gateway honours it only when
// CACHE_CLIENT_REVALIDATE says so.
func SkipLookup(h http.Header) bool {
	if len(h["Cache-Control"]) == 0 {
		for _, p := range h["Pragma"] {
			if strings.Contains(strings.ToLower(p), "no-cache") {
				return true
			}
		}
		return false
	}
	d := ParseCacheControl(h)
	return d.NoCache || d.MaxAge == 0
}

// RequestNoStore reports Cache-Control: no-store on a request: nothing of
// its answer may be stored.
func RequestNoStore(h http.Header) bool {
	return len(h["Cache-Control"]) > 0 && ParseCacheControl(h).NoStore
}

// storableStatus are the statuses a shared cache may store here.
func storableStatus(code int) bool {
	switch code {
	case http.StatusOK, http.StatusNonAuthoritativeInfo, http.StatusNoContent,
		http.StatusMovedPermanently, http.StatusNotFound:
		return true
	}
	return false
}

// Freshness decides whether a response may be stored and for how long:
// ttl > 0 means storable. The lifetime is explicit when the answer says it
// (RFC 9111 §4.2.1): s-maxage, else max-age, else Expires minus Date (an
// Expires that is invalid, "0" or past means already stale). An answer
// with none of them is stored for routeTTL, which the operator sets to
// vouch for the route (0 = not stored). The upstream's Age is taken off,
// and returned as age. now is when the answer arrived.
func Freshness(status int, h http.Header, routeTTL time.Duration, now time.Time) (ttl, age time.Duration) {
	if !storableStatus(status) || len(h["Set-Cookie"]) > 0 || len(h["Trailer"]) > 0 {
		return 0, 0
	}
	if _, star := ParseVary(h); star {
		return 0, 0
	}
	d := ParseCacheControl(h)
	if d.NoStore || d.Private || d.NoCache {
		return 0, 0
	}
	ttl = routeTTL
	switch {
	case d.SMaxAge >= 0:
		ttl = time.Duration(d.SMaxAge) * time.Second
	case d.MaxAge >= 0:
		ttl = time.Duration(d.MaxAge) * time.Second
	case len(h["Expires"]) > 0:
		ttl = expiresIn(h, now)
	}
	if a := h.Get("Age"); a != "" {
		age = time.Duration(seconds(a)) * time.Second
	}
	return ttl - age, age
}

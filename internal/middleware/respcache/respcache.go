// Package respcache is the response-cache step of a route: it answers from
// the shared store when it can (X-Cache: HIT, Age), coalesces concurrent
// misses into one upstream request, and stores what RFC 9111's
// shared-cache rules and the cache step of docs/request-path.md allow
// (X-Cache: MISS). Requests it must not touch pass through with X-Cache:
// BYPASS. What is storable, the keys, the stores and the state all routes
// share (cache.Shared) are internal/cache's.
package respcache

import (
	"net/http"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/request"
)

// Header values, prebuilt so the hot path does not allocate them.
var (
	hitValue    = []string{"HIT"}
	missValue   = []string{"MISS"}
	bypassValue = []string{"BYPASS"}
	ageValues   = func() [][]string {
		v := make([][]string, 601)
		for i := range v {
			v[i] = []string{strconv.Itoa(i)}
		}
		return v
	}()
)

func ageHeader(secs int64) []string {
	if secs < int64(len(ageValues)) {
		return ageValues[secs]
	}
	return []string{strconv.FormatInt(secs, 10)}
}

type step struct {
	s *cache.Shared
	// ttl is the lifetime of answers without explicit freshness
	// (cache_ttl_secs, else CACHE_TTL); 0 = such answers are not stored.
	ttl time.Duration
	// authenticated is the route's cache_authenticated: answers to requests
	// with credentials may be shared.
	authenticated bool
	next          http.Handler
}

// New returns the cache step of one route.
func New(s *cache.Shared, ttl time.Duration, authenticated bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return &step{s: s, ttl: ttl, authenticated: authenticated, next: next}
	}
}

func (c *step) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := request.From(r.Context())
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	default:
		c.bypass(w, r)
		if isUnsafe(r.Method) && in.Status() >= 200 && in.Status() < 400 {
			// RFC 9111 §4.4: a successful unsafe request invalidates what
			// is stored for its URI.
			c.s.Store().Delete(c.key(r, in))
		}
		return
	}
	if len(r.Header["Range"]) > 0 || len(r.Header["Upgrade"]) > 0 || r.ContentLength != 0 ||
		(!c.authenticated && (in.AuthMethod != "" || cache.HasCredentials(r.Header, c.s.Settings().PrivateHeaders))) {
		// Credentials: the auth step may have removed the header it
		// verified, so an authenticated caller is known by AuthMethod.
		// A GET with a body (a search API's query) may be answered by
		// what the body says, which the key does not hold.
		c.bypass(w, r)
		return
	}
	key := c.key(r, in)
	if c.s.Settings().ClientRevalidate && cache.SkipLookup(r.Header) {
		if r.Method == http.MethodHead || cache.RequestNoStore(r.Header) {
			// Nothing may be stored from it: a HEAD's answer has no body
			// (storing it would serve GETs an empty one).
			c.bypass(w, r)
			return
		}
		// The client wants a fresh answer; it may still refresh the entry.
		c.s.Stats().Bypasses.Add(1)
		in.Cache = "BYPASS"
		c.fetch(w, r, key, nil, bypassValue)
		return
	}
	if e, ok := c.lookup(r, key); ok {
		c.serve(w, r, e)
		return
	}
	if r.Method == http.MethodHead || cache.RequestNoStore(r.Header) {
		// Nothing to store from a HEAD (no body) or a no-store request.
		c.s.Stats().Misses.Add(1)
		in.Cache = "MISS"
		w.Header()["X-Cache"] = missValue
		c.next.ServeHTTP(w, r)
		return
	}
	fl, leader := c.s.Flights().Join(key)
	if !leader {
		e, variant := fl.Wait(r.Context(), c.s.Settings().BodyWait)
		if e != nil && variant == variantOf(key, e, r.Header) {
			c.serve(w, r, e)
			return
		}
		// The leader's answer was not storable, failed, took too long,
		// or varies on a header this request sends differently: fetch
		// our own.
		fl = nil
	}
	c.s.Stats().Misses.Add(1)
	in.Cache = "MISS"
	c.fetch(w, r, key, fl, missValue)
}

func isUnsafe(m string) bool {
	return m == http.MethodPost || m == http.MethodPut || m == http.MethodPatch || m == http.MethodDelete
}

func (c *step) bypass(w http.ResponseWriter, r *http.Request) {
	c.s.Stats().Bypasses.Add(1)
	request.From(r.Context()).Cache = "BYPASS"
	w.Header()["X-Cache"] = bypassValue
	c.next.ServeHTTP(w, r)
}

// key is the request's primary key; the scheme is the one the client used
// as far as a trusted edge proxy says.
func (c *step) key(r *http.Request, in *request.Info) string {
	scheme := "http"
	if r.TLS != nil || (in.PeerTrusted && r.Header.Get("X-Forwarded-Proto") == "https") {
		scheme = "https"
	}
	path := in.Path
	if path == "" {
		path = r.URL.Path
	}
	return cache.Key(scheme, r.Host, path, r.URL.RawQuery)
}

// lookup finds the fresh entry for r, following a variants marker.
func (c *step) lookup(r *http.Request, key string) (*cache.Entry, bool) {
	e, ok := c.s.Store().Get(r.Context(), key)
	if !ok {
		return nil, false
	}
	if e.IsMarker() {
		if e, ok = c.s.Store().Get(r.Context(), cache.VariantKey(key, e.Vary, r.Header)); !ok || e.IsMarker() {
			return nil, false
		}
	}
	return e, true
}

func variantOf(key string, e *cache.Entry, h http.Header) string {
	if len(e.Vary) == 0 {
		return key
	}
	return cache.VariantKey(key, e.Vary, h)
}

// serve answers from e: the stored headers, X-Cache: HIT, Age, and a 304
// when the client's validators match.
func (c *step) serve(w http.ResponseWriter, r *http.Request, e *cache.Entry) {
	c.s.Stats().Hits.Add(1)
	request.From(r.Context()).Cache = "HIT"
	h := w.Header()
	merge(h, e.Header)
	h["X-Cache"] = hitValue
	h["Age"] = ageHeader(e.Age(time.Now()))
	if e.Status == http.StatusOK && notModified(r.Header, e.Header) {
		delete(h, "Content-Length")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.WriteHeader(e.Status)
	if r.Method != http.MethodHead && len(e.Body) > 0 {
		_, _ = w.Write(e.Body)
	}
}

// merge adds src's headers to dst as ReverseProxy's copy would (values
// appended after any already set, e.g. Vary: Origin from CORS). Stored
// slices are shared, never written: they are clipped, so an append copies.
func merge(dst, src http.Header) {
	for k, vs := range src {
		if old, ok := dst[k]; ok {
			dst[k] = append(old[:len(old):len(old)], vs...)
		} else {
			dst[k] = vs
		}
	}
}

// notModified evaluates If-None-Match (weak comparison), else
// If-Modified-Since, against a stored 200's validators (RFC 9110 §13.2.2).
func notModified(req, resp http.Header) bool {
	if inm := req["If-None-Match"]; len(inm) > 0 {
		return etagMatches(inm, resp.Get("Etag"))
	}
	ims := req.Get("If-Modified-Since")
	lm := resp.Get("Last-Modified")
	if ims == "" || lm == "" {
		return false
	}
	t, err := http.ParseTime(ims)
	if err != nil {
		return false
	}
	m, err := http.ParseTime(lm)
	return err == nil && !m.After(t)
}

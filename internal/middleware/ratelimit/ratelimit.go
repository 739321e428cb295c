// Package ratelimit is the rate-limit step: the per-client default limit
// and a route's own, each a limiter.Limit (the buckets live in
// internal/limiter). Over the limit a request gets 429 with Retry-After,
// and every limited answer carries RateLimit-Limit, -Remaining and -Reset
// (draft-ietf-httpapi-ratelimit-headers).
package ratelimit

import (
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/request"
)

// ErrLimited is the request's error (request.Info.Err) when it was refused
// with 429.
var ErrLimited = errors.New("rate limit exceeded")

// New returns the per-client default limit step: rps tokens per second
// (MAX_REQUESTS_PER_SECOND, > 0), bursts of up to burst requests
// (MAX_BURST_SIZE, ≥ 1). Allow-listed clients are not limited. A trusted
// proxy that sent no usable X-Forwarded-For is its own client here and is
// limited like any other: exempting it would exempt every local process,
// and every client of a proxy that forgot the header.
func New(rps float64, burst int, s *limiter.Limits) (func(http.Handler) http.Handler, error) {
	return step(rps, burst, s, false)
}

// NewRoute returns a route's limit step (rate_limit_rps,
// rate_limit_burst), run after routing on top of the default, with its own
// buckets. When both limits answer, the RateLimit-* headers describe the
// one closer to running out.
func NewRoute(rps float64, burst int, s *limiter.Limits) (func(http.Handler) http.Handler, error) {
	return step(rps, burst, s, true)
}

// step checks the limit now; each chain it wraps gets buckets of its own.
func step(rps float64, burst int, s *limiter.Limits, route bool) (func(http.Handler) http.Handler, error) {
	if s == nil {
		return nil, errors.New("ratelimit: nil Limits")
	}
	if err := limiter.Check(rps, burst); err != nil {
		return nil, err
	}
	return func(next http.Handler) http.Handler {
		l, _ := s.New(rps, burst, route)
		return newHandler(l, next)
	}, nil
}

// handler enforces one limit in front of next.
type handler struct {
	l     *limiter.Limit
	next  http.Handler
	limit []string // RateLimit-Limit value, shared read-only
}

func newHandler(l *limiter.Limit, next http.Handler) *handler {
	return &handler{l: l, next: next, limit: []string{strconv.Itoa(l.Burst())}}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	in := request.From(r.Context())
	var client netip.Addr
	var arrival time.Time
	if in != nil {
		if in.Allowlisted {
			h.next.ServeHTTP(w, r)
			return
		}
		client, arrival = in.ClientIP, in.Start
	} else {
		client = realip.PeerAddr(r.RemoteAddr) // outside the gateway's chain
	}
	if !client.IsValid() {
		// Only a listener without IP peers (a unix socket) gets here; there
		// is no client to tell apart.
		h.next.ServeHTTP(w, r)
		return
	}
	limits := h.l.Limits()
	now := limits.At(arrival)
	key := realip.Key(client)
	d, ok := h.l.AllowShared(r.Context(), h.scope(in), key)
	if !ok {
		d = h.l.Allow(key, now)
	}
	hdr := w.Header()
	h.setHeaders(hdr, &d)
	if d.Allowed {
		h.next.ServeHTTP(w, r)
		return
	}
	limits.Refused()
	hdr["Retry-After"] = intValue(max(ceilSeconds(d.RetryAfter), 1))
	if in != nil {
		in.Err = ErrLimited
	}
	h.logRejection(r, in, key, now, &d)
	gwerror.Write(w, r, http.StatusTooManyRequests, "too many requests")
}

// scope is the bucket's scope in the shared store: "" for the default
// limit, the matched route prefix for a route's.
func (h *handler) scope(in *request.Info) string {
	switch {
	case !h.l.Route():
		return ""
	case in == nil:
		return "?"
	}
	return in.Endpoint
}

// setHeaders writes the RateLimit-* fields. A route's limit replaces the
// default's fields only when it is the one closer to running out.
func (h *handler) setHeaders(hdr http.Header, d *limiter.Decision) {
	if h.l.Route() && d.Allowed {
		if cur := hdr["Ratelimit-Remaining"]; len(cur) == 1 {
			if n, err := strconv.Atoi(cur[0]); err == nil && n <= d.Remaining {
				return
			}
		}
	}
	hdr["Ratelimit-Limit"] = h.limit
	hdr["Ratelimit-Remaining"] = intValue(d.Remaining)
	hdr["Ratelimit-Reset"] = intValue(ceilSeconds(d.Reset))
}

// logRejection logs the first rejection of a client per minute, at debug:
// an attack must not flood the log; the counter counts them all.
func (h *handler) logRejection(r *http.Request, in *request.Info, key netip.Addr, now time.Time, d *limiter.Decision) {
	limits := h.l.Limits()
	log := limits.Log()
	if !log.Enabled(r.Context(), slog.LevelDebug) || !limits.LogRejection(key, now) {
		return
	}
	attrs := []slog.Attr{
		slog.String("key", keyText(key)),
		slog.Int("limit", h.l.Burst()),
		slog.Int64("retry_after_s", max(ceilSeconds(d.RetryAfter), 1)),
		slog.Bool("route_limit", h.l.Route()),
	}
	if in != nil {
		attrs = append(attrs, slog.String("client_ip", in.ClientIPText), slog.String("request_id", in.ID),
			slog.String("route", in.Endpoint))
	}
	log.LogAttrs(r.Context(), slog.LevelDebug, "rate limited", attrs...)
}

// keyText shows an IPv6 key as the /64 it stands for.
func keyText(k netip.Addr) string {
	if k.Is6() {
		return netip.PrefixFrom(k, 64).String()
	}
	return k.String()
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// smallInts holds the decimal text of 0..len-1, so header values are not
// allocated per request. It is never written after init.
var smallInts = func() (a [1024]string) {
	for i := range a {
		a[i] = strconv.Itoa(i)
	}
	return a
}()

// intValue returns a one-element header value for n. Small values share a
// read-only backing array with a capacity of one, as request.Info.IDValues
// does: Header.Add appends to a copy, Header.Set replaces the slice; nobody
// may write to the element in place.
func intValue[T int | int64](n T) []string {
	if n >= 0 && int64(n) < int64(len(smallInts)) {
		return smallInts[n : n+1 : n+1]
	}
	return []string{strconv.FormatInt(int64(n), 10)}
}

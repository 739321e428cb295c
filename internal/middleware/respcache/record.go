package respcache

import (
	"bufio"
	"net"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/request"
)

// fetch sends r upstream through next, streaming the answer to the client
// while recording it, and stores it when it may be stored. A flight leader
// (fl != nil) publishes the stored entry to the requests waiting on it.
func (c *step) fetch(w http.ResponseWriter, r *http.Request, key string, fl *cache.Flight, xcache []string) {
	rec := &recorder{w: w, hdr: make(http.Header, 12), c: c, xcache: xcache, key: key, fl: fl}
	// The entry stored must be a full answer, so the client's validators
	// are not sent upstream; the recorder evaluates them itself (a 304 for
	// this client, a 200 for the store), as nginx's proxy_cache does.
	rec.inm, rec.ims = r.Header["If-None-Match"], r.Header["If-Modified-Since"]
	if rec.inm != nil || rec.ims != nil {
		r.Header.Del("If-None-Match")
		r.Header.Del("If-Modified-Since")
	}
	var stored *cache.Entry
	variant := ""
	// Deferred: a panic (an upstream body cut short aborts the handler)
	// must not leave waiters waiting. The recorder may have released them
	// already (an answer it does not record).
	defer func() { rec.finish(stored, variant) }()
	defer rec.release()
	c.next.ServeHTTP(rec, r)
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	in := request.From(r.Context())
	if !rec.recording || in.Err != nil {
		return
	}
	if cl := rec.hdr.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(rec.body)) {
		return // the body was cut short
	}
	stored, variant = c.store(r, key, rec)
}

// store builds the entry from a recorded response and stores it: under key
// itself, or, when the response varies, under its variant key with a
// marker at key naming the headers it varies on.
func (c *step) store(r *http.Request, key string, rec *recorder) (*cache.Entry, string) {
	now := time.Now()
	h := rec.hdr
	delete(h, "Age")
	delete(h, "X-Cache")
	// An upstream that echoes the request ID would otherwise hand this
	// request's ID to every client served from the entry.
	delete(h, "X-Request-Id")
	if rec.status != http.StatusNoContent {
		h["Content-Length"] = []string{strconv.Itoa(len(rec.body))}
	}
	vary, _ := cache.ParseVary(h)
	if len(h["Content-Encoding"]) > 0 && !slices.Contains(vary, "Accept-Encoding") {
		// An upstream that encodes but forgot Vary: never hand its
		// gzip to a client that did not ask for it.
		vary = append(vary, "Accept-Encoding")
		slices.Sort(vary)
	}
	e := &cache.Entry{
		Status:  rec.status,
		Header:  h,
		Body:    rec.body,
		Stored:  now.Add(-rec.age),
		Expires: now.Add(rec.ttl),
		Vary:    vary,
	}
	if len(vary) == 0 {
		c.s.Store().Set(key, e)
		return e, key
	}
	variant := cache.VariantKey(key, vary, r.Header)
	c.s.Store().Set(key, &cache.Entry{Stored: now, Expires: e.Expires, Vary: vary})
	c.s.Store().Set(variant, e)
	return e, variant
}

// recorder stands between the proxy and the client on a miss. The proxy
// writes the upstream's headers into a map of their own, so what is stored
// is the upstream's answer only (not the request ID, CORS or rate-limit
// headers of this request); they are merged into the client's headers when
// the status is written.
type recorder struct {
	w      http.ResponseWriter
	hdr    http.Header
	c      *step
	xcache []string

	inm, ims []string // the client's validators, withheld from upstream

	// fl is the flight this miss leads, nil if none or once finished.
	key string
	fl  *cache.Flight

	wrote, discard, recording bool
	status                    int
	ttl, age                  time.Duration
	body                      []byte
	reserved                  int64 // bytes reserved from the shared recording budget
}

// reserve counts n more bytes against the shared recording budget and
// reports whether they fit.
func (rec *recorder) reserve(n int64) bool {
	if !rec.c.s.Reserve(n) {
		return false
	}
	rec.reserved += n
	return true
}

// release returns the recorder's bytes to the budget.
func (rec *recorder) release() {
	rec.c.s.Release(rec.reserved)
	rec.reserved = 0
}

func (rec *recorder) stopRecording() {
	rec.recording, rec.body = false, nil
	rec.release()
	rec.finish(nil, "")
}

// finish publishes the outcome to the requests waiting on this miss, once:
// nil as soon as the answer will not be stored, so they do not wait out
// a download or a stream they would not be given.
func (rec *recorder) finish(e *cache.Entry, variant string) {
	if rec.fl != nil {
		rec.c.s.Flights().Finish(rec.key, rec.fl, e, variant)
		rec.fl = nil
	}
}

func (rec *recorder) Header() http.Header {
	if rec.wrote {
		return rec.w.Header() // trailers, after the header is sent
	}
	return rec.hdr
}

func (rec *recorder) WriteHeader(code int) {
	if rec.wrote {
		return
	}
	if code < 200 {
		// 1xx (103 Early Hints): passed on with its own headers, which
		// ReverseProxy clears from ours afterwards; clear them from the
		// client's map too, so they do not leak into the final answer
		// (restoring what the gateway had set under the same names).
		dst := rec.w.Header()
		saved := make(http.Header, len(rec.hdr))
		for k := range rec.hdr {
			if v, ok := dst[k]; ok {
				saved[k] = v
			}
		}
		merge(dst, rec.hdr)
		rec.w.WriteHeader(code)
		for k := range rec.hdr {
			delete(dst, k)
		}
		for k, v := range saved {
			dst[k] = v
		}
		return
	}
	rec.wrote, rec.status = true, code
	h := rec.hdr
	cache.ClipHeader(h)
	if rec.ttl, rec.age = cache.Freshness(code, h, rec.c.ttl, time.Now()); rec.ttl > 0 {
		rec.recording = true
		if cl, err := strconv.ParseInt(h.Get("Content-Length"), 10, 64); err == nil {
			if cl > rec.c.s.Settings().MaxObject || !rec.reserve(cl) {
				rec.recording = false
			} else {
				rec.body = make([]byte, 0, cl)
			}
		}
	}
	if !rec.recording {
		rec.finish(nil, "")
	} else if rec.fl != nil {
		rec.fl.Recording()
	}
	dst := rec.w.Header()
	merge(dst, h)
	dst["X-Cache"] = rec.xcache
	if code == http.StatusOK && (rec.inm != nil || rec.ims != nil) &&
		notModified(http.Header{"If-None-Match": rec.inm, "If-Modified-Since": rec.ims}, h) {
		rec.discard = true
		delete(dst, "Content-Length")
		rec.w.WriteHeader(http.StatusNotModified)
		return
	}
	rec.w.WriteHeader(code)
}

func (rec *recorder) Write(p []byte) (int, error) {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.recording {
		n := int64(len(rec.body) + len(p))
		switch {
		case n > rec.c.s.Settings().MaxObject:
			rec.stopRecording() // too large: stream only
		case n > rec.reserved && !rec.reserve(n-rec.reserved):
			rec.stopRecording() // too much buffered by all misses at once
		default:
			rec.body = append(rec.body, p...)
		}
	}
	if rec.discard {
		return len(p), nil
	}
	return rec.w.Write(p)
}

// FlushError lets streamed answers through as they arrive.
func (rec *recorder) FlushError() error {
	if !rec.wrote {
		rec.WriteHeader(http.StatusOK)
	}
	if rec.discard {
		return nil
	}
	return http.NewResponseController(rec.w).Flush()
}

func (rec *recorder) Flush() { _ = rec.FlushError() }

// Hijack is not expected (upgrades bypass the cache) but kept working.
func (rec *recorder) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(rec.w).Hijack()
}

// Unwrap exposes the client's writer for deadlines.
func (rec *recorder) Unwrap() http.ResponseWriter { return rec.w }

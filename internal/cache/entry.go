// Package cache is the gateway's shared HTTP response cache: what may be
// stored and for how long (RFC 9111 shared-cache rules), the key a request
// maps to, and two stores behind one interface — an in-process store
// bounded in bytes and Redis, shared by every replica — and the state all
// routes share (Shared: the store, the counters, the misses in flight, the
// recording budget). The HTTP step that uses it lives in
// internal/middleware/respcache.
package cache

import (
	"encoding/binary"
	"errors"
	"net/http"
	"slices"
	"time"
)

// Entry is one stored response. Header holds the upstream's end-to-end
// headers only (no hop-by-hop headers, no Age, nothing the gateway adds);
// its value slices are clipped, so appending to one never writes into a
// stored entry. Entries are shared by concurrent readers and never mutated
// after they are stored.
type Entry struct {
	Status int
	Header http.Header
	Body   []byte
	// Stored is when the response was generated, as far as this cache
	// knows: the time it arrived minus the Age the upstream reported.
	Stored time.Time
	// Expires is when the entry stops being fresh.
	Expires time.Time
	// Vary lists the request headers (canonical names) the response varies
	// on. An entry with Vary set and Status 0 is a variants marker: the
	// responses themselves are stored under VariantKey keys.
	Vary []string
}

// IsMarker reports whether e only records the Vary list of a key.
func (e *Entry) IsMarker() bool { return e.Status == 0 }

// Fresh reports whether e may still be served at now.
func (e *Entry) Fresh(now time.Time) bool { return now.Before(e.Expires) }

// Age is the Age header value of e at now, in whole seconds (RFC 9111 §4.2.3).
func (e *Entry) Age(now time.Time) int64 {
	if a := now.Sub(e.Stored); a > 0 {
		return int64(a / time.Second)
	}
	return 0
}

// Size approximates the memory e holds, in bytes: the weight of the memory
// store's byte bound.
func (e *Entry) Size() int {
	n := 96 + len(e.Body)
	for k, vs := range e.Header {
		n += len(k) + 16
		for _, v := range vs {
			n += len(v) + 16
		}
	}
	for _, v := range e.Vary {
		n += len(v) + 16
	}
	return n
}

// ClipHeader makes every value slice's capacity equal its length, so a
// reader's append copies instead of writing into the stored array: what an
// Entry's Header must be before the entry is shared.
func ClipHeader(h http.Header) {
	for k, vs := range h {
		h[k] = slices.Clip(vs)
	}
}

const encodingVersion = 1

// errCorrupt is returned for bytes that are not an encoded entry: a Redis
// value written by something else, or truncated.
var errCorrupt = errors.New("cache: corrupt entry")

// Marshal encodes e for a remote store.
func Marshal(e *Entry) []byte {
	b := make([]byte, 0, e.Size()+32)
	b = append(b, encodingVersion)
	b = binary.AppendUvarint(b, uint64(e.Status))
	b = binary.AppendVarint(b, e.Stored.UnixNano())
	b = binary.AppendVarint(b, e.Expires.UnixNano())
	b = binary.AppendUvarint(b, uint64(len(e.Vary)))
	for _, v := range e.Vary {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Header)))
	for k, vs := range e.Header {
		b = appendString(b, k)
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendString(b, v)
		}
	}
	return append(binary.AppendUvarint(b, uint64(len(e.Body))), e.Body...)
}

func appendString(b []byte, s string) []byte {
	return append(binary.AppendUvarint(b, uint64(len(s))), s...)
}

// Unmarshal decodes bytes made by Marshal. It never panics on foreign or
// truncated input: it returns errCorrupt.
func Unmarshal(b []byte) (*Entry, error) {
	d := decoder{b: b}
	if v := d.byte(); v != encodingVersion {
		return nil, errCorrupt
	}
	e := &Entry{
		Status:  int(d.uvarint(999)),
		Stored:  time.Unix(0, d.varint()),
		Expires: time.Unix(0, d.varint()),
	}
	if n := d.uvarint(64); n > 0 {
		e.Vary = make([]string, n)
		for i := range e.Vary {
			e.Vary[i] = d.string()
		}
	}
	nh := d.uvarint(1024)
	e.Header = make(http.Header, nh)
	for range nh {
		k := d.string()
		vs := make([]string, d.uvarint(1024))
		for i := range vs {
			vs[i] = d.string()
		}
		e.Header[k] = vs
	}
	n := d.uvarint(uint64(len(d.b)))
	e.Body = d.take(n)
	if d.err || len(d.b) != 0 {
		return nil, errCorrupt
	}
	return e, nil
}

// decoder reads Marshal's format; any fault sets err and yields zeros.
type decoder struct {
	b   []byte
	err bool
}

func (d *decoder) byte() byte {
	if len(d.b) == 0 {
		d.err = true
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) uvarint(limit uint64) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 || v > limit {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = true
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) take(n uint64) []byte {
	if uint64(len(d.b)) < n {
		d.err = true
		d.b = nil
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) string() string { return string(d.take(d.uvarint(1 << 20))) }

package cache

import (
	"net/http"
	"net/textproto"
	"slices"
	"strings"
)

// Key is the primary cache key of a request (docs/request-path.md, the cache step): method (HEAD shares GET's entries), scheme, host,
// the cleaned path that was routed, and the query string with its parameters
// in a stable order. The query is not decoded: two spellings the upstream
// might read differently never share an entry; only the order of differently
// named parameters is normalised (a=1&b=2 and b=2&a=1), and repeated names
// keep their order.
func Key(scheme, host, path, rawQuery string) string {
	var b strings.Builder
	b.Grow(len("GET ://?") + len(scheme) + len(host) + len(path) + len(rawQuery))
	b.WriteString("GET ")
	b.WriteString(scheme)
	b.WriteString("://")
	for i := 0; i < len(host); i++ { // lower-case without an allocation
		c := host[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		b.WriteByte(c)
	}
	writePath(&b, path)
	if rawQuery != "" {
		b.WriteByte('?')
		writeQuery(&b, rawQuery)
	}
	return b.String()
}

// writePath writes the (decoded) clean path with '%' and '?' escaped, so a
// '?' decoded from "%3F" is never read as the start of the query: "/p%3Fa=1"
// and "/p?a=1" are different resources and must not share an entry.
func writePath(b *strings.Builder, path string) {
	if !strings.ContainsAny(path, "%?") {
		b.WriteString(path)
		return
	}
	for i := 0; i < len(path); i++ {
		switch c := path[i]; c {
		case '%':
			b.WriteString("%25")
		case '?':
			b.WriteString("%3F")
		default:
			b.WriteByte(c)
		}
	}
}

func writeQuery(b *strings.Builder, q string) {
	if !strings.Contains(q, "&") {
		b.WriteString(q)
		return
	}
	parts := strings.Split(q, "&")
	parts = slices.DeleteFunc(parts, func(s string) bool { return s == "" })
	slices.SortStableFunc(parts, func(x, y string) int { return strings.Compare(paramName(x), paramName(y)) })
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('&')
		}
		b.WriteString(p)
	}
}

func paramName(p string) string {
	if i := strings.IndexByte(p, '='); i >= 0 {
		return p[:i]
	}
	return p
}

// ParseVary returns the canonical, sorted, de-duplicated header names of a
// response's Vary header, and star=true for `Vary: *` (not storable).
func ParseVary(h http.Header) (names []string, star bool) {
	for _, line := range h["Vary"] {
		for f := range strings.SplitSeq(line, ",") {
			f = strings.TrimSpace(f)
			switch {
			case f == "":
			case f == "*":
				return nil, true
			default:
				names = append(names, textproto.CanonicalMIMEHeaderKey(f))
			}
		}
	}
	slices.Sort(names)
	return slices.Compact(names), false
}

// VariantKey extends a primary key with the request's values of the
// headers the response varies on, normalised so that equivalent requests
// share the entry.
func VariantKey(primary string, vary []string, req http.Header) string {
	var b strings.Builder
	b.WriteString(primary)
	for _, name := range vary {
		b.WriteByte('\n')
		b.WriteString(name)
		b.WriteByte(':')
		vs := req[name]
		if name == "Accept-Encoding" {
			writeCodings(&b, vs)
			continue
		}
		for i, v := range vs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strings.TrimSpace(v))
		}
	}
	return b.String()
}

// writeCodings writes the content codings a client accepts (q > 0),
// lower-cased and sorted: "gzip, br" and "br,gzip;q=1" are the same
// request to an upstream that varies on Accept-Encoding.
func writeCodings(b *strings.Builder, vs []string) {
	var codings []string
	for _, v := range vs {
		for f := range strings.SplitSeq(v, ",") {
			name, params, _ := strings.Cut(f, ";")
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || zeroQ(params) {
				continue
			}
			codings = append(codings, name)
		}
	}
	slices.Sort(codings)
	b.WriteString(strings.Join(slices.Compact(codings), ","))
}

func zeroQ(params string) bool {
	for p := range strings.SplitSeq(params, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
		if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
			v = strings.TrimSpace(v)
			return strings.Trim(v, "0.") == "" // q=0, q=0.0, q=0.000
		}
	}
	return false
}

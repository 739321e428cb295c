package router

import (
	"errors"
	"fmt"
)

// ErrBadPath means the request path cannot be routed safely; the caller
// answers 400. Errors from CleanPath wrap it with the detail.
var ErrBadPath = errors.New("bad request path")

// MaxPathBytes is the longest escaped path CleanPath accepts.
const MaxPathBytes = 8 << 10

// stackBuf is the size of the on-stack scratch buffer used by the slow path;
// longer paths take one extra allocation.
const stackBuf = 512

// CleanPath takes the request's escaped path (r.URL.EscapedPath() or the raw
// request-target path) and returns the decoded, cleaned path that routing,
// auth and forwarding must all use.
//
// Percent-decoding is done exactly once, before dot segments are resolved, so
// "/a/%2e%2e/b" is "/b" while "/a/%252e%252e/b" is the literal "/a/%2e%2e/b".
// "." and ".." are resolved without ever going above "/", runs of "/" collapse,
// and a trailing "/" is kept when the input had one (as net/http's ServeMux
// does: "/a/b/.." is "/a", "/a/b/../" is "/a/").
//
// It fails with ErrBadPath for: a path not starting with "/" (including "*"),
// one longer than MaxPathBytes, an invalid escape, an encoded "/", "\" or NUL
// (%2F, %5C, %00: backends disagree on whether they separate segments), a raw
// "\" and any control byte (< 0x20 or 0x7f) before or after decoding.
//
// A path with no '%', no "//", no "/." and no '\' is returned as is, without
// allocating.
func CleanPath(escaped string) (string, error) {
	n := len(escaped)
	if n == 0 || escaped[0] != '/' {
		return "", fmt.Errorf("%w: path must start with \"/\"", ErrBadPath)
	}
	if n > MaxPathBytes {
		return "", fmt.Errorf("%w: path longer than %d bytes", ErrBadPath, MaxPathBytes)
	}
	dirty := false
	for i := 0; i < n; i++ {
		switch c := escaped[i]; {
		case c == '%':
			dirty = true
		case c == '\\':
			return "", fmt.Errorf("%w: backslash at byte %d", ErrBadPath, i)
		case c == ';':
			// Path parameters: Tomcat and Spring read "/a/..;/b" as "/b"
			// and strip ";jsessionid=…", so what such a backend serves
			// would differ from what was routed and authorised.
			return "", fmt.Errorf("%w: semicolon at byte %d", ErrBadPath, i)
		case c < 0x20 || c == 0x7f:
			return "", fmt.Errorf("%w: control byte %#02x at byte %d", ErrBadPath, c, i)
		case c == '/' && i+1 < n && (escaped[i+1] == '/' || escaped[i+1] == '.'):
			dirty = true
		}
	}
	if !dirty {
		return escaped, nil
	}

	var stack [stackBuf]byte
	var buf []byte
	if n <= len(stack) {
		buf = stack[:0]
	} else {
		buf = make([]byte, 0, n)
	}
	buf, err := decode(buf, escaped)
	if err != nil {
		return "", err
	}
	return string(clean(buf, escaped[n-1] == '/')), nil
}

// decode appends the percent-decoding of s (already checked for raw
// backslashes and control bytes) to buf, refusing escapes of separators and
// control bytes.
func decode(buf []byte, s string) ([]byte, error) {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '%' {
			buf = append(buf, c)
			continue
		}
		if i+2 >= len(s) {
			return nil, fmt.Errorf("%w: truncated escape at byte %d", ErrBadPath, i)
		}
		hi, ok1 := unhex(s[i+1])
		lo, ok2 := unhex(s[i+2])
		if !ok1 || !ok2 {
			return nil, fmt.Errorf("%w: invalid escape %q at byte %d", ErrBadPath, s[i:i+3], i)
		}
		c = hi<<4 | lo
		switch {
		case c == '/' || c == '\\' || c == ';':
			return nil, fmt.Errorf("%w: encoded separator %q at byte %d", ErrBadPath, s[i:i+3], i)
		case c < 0x20 || c == 0x7f:
			return nil, fmt.Errorf("%w: encoded control byte %q at byte %d", ErrBadPath, s[i:i+3], i)
		}
		buf = append(buf, c)
		i += 2
	}
	return buf, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// clean resolves dot segments and collapses slashes in the rooted path p, in
// place (the write index never passes the read index), following path.Clean.
// trailing asks for a final "/" to be kept.
func clean(p []byte, trailing bool) []byte {
	n := len(p)
	w := 1 // p[0] is '/' and stays
	for r := 1; r < n; {
		switch {
		case p[r] == '/':
			r++
		case p[r] == '.' && (r+1 == n || p[r+1] == '/'):
			r++
		case p[r] == '.' && r+1 < n && p[r+1] == '.' && (r+2 == n || p[r+2] == '/'):
			r += 2
			// Back up to the previous '/'; at the root ".." is dropped.
			for w > 1 {
				w--
				if p[w] == '/' {
					break
				}
			}
		default:
			if w > 1 {
				p[w] = '/'
				w++
			}
			for ; r < n && p[r] != '/'; r++ {
				p[w] = p[r]
				w++
			}
		}
	}
	if trailing && w > 1 {
		// The input ended in '/', which was never copied, so w < n.
		p[w] = '/'
		w++
	}
	return p[:w]
}

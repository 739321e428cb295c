// Package router matches cleaned request paths to routes by longest prefix on
// path-segment boundaries; it is pure and does no I/O.
package router

import (
	"fmt"
	"strings"
)

// Entry is one route prefix and the caller's value for it.
type Entry[T any] struct {
	Prefix string
	Value  T
}

// Table is an immutable longest-prefix table, safe for concurrent use.
type Table[T any] struct {
	entries  []Entry[T]
	byPrefix map[string]*Entry[T] // every prefix but "/"
	root     *Entry[T]            // the "/" catch-all, if any
	maxLen   int                  // longest prefix in byPrefix
}

// New builds a table from entries, which it copies. Prefixes must already be
// normalised: "/" or "/a/b" — decoded, no trailing "/", no empty, "." or ".."
// segment, no "\" or control byte. A malformed or duplicate prefix is an error.
func New[T any](entries []Entry[T]) (*Table[T], error) {
	t := &Table[T]{
		entries:  append([]Entry[T](nil), entries...),
		byPrefix: make(map[string]*Entry[T], len(entries)),
	}
	for i := range t.entries {
		e := &t.entries[i]
		if err := validPrefix(e.Prefix); err != nil {
			return nil, fmt.Errorf("route %d: prefix %q: %w", i, e.Prefix, err)
		}
		if e.Prefix == "/" {
			if t.root != nil {
				return nil, fmt.Errorf("route %d: duplicate prefix %q", i, e.Prefix)
			}
			t.root = e
			continue
		}
		if _, dup := t.byPrefix[e.Prefix]; dup {
			return nil, fmt.Errorf("route %d: duplicate prefix %q", i, e.Prefix)
		}
		t.byPrefix[e.Prefix] = e
		t.maxLen = max(t.maxLen, len(e.Prefix))
	}
	return t, nil
}

func validPrefix(p string) error {
	if p == "/" {
		return nil
	}
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("must start with \"/\"")
	}
	if strings.HasSuffix(p, "/") {
		return fmt.Errorf("must not end with \"/\"")
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return fmt.Errorf("contains %q", c)
		}
	}
	for seg := range strings.SplitSeq(p[1:], "/") {
		switch seg {
		case "", ".", "..":
			return fmt.Errorf("has a %q segment", seg)
		}
	}
	return nil
}

// Match returns the entry whose prefix is the longest match of cleanPath (the
// output of CleanPath) on a segment boundary: "/api/studio" matches
// "/api/studio", "/api/studio/" and "/api/studio/x" but not "/api/studiox".
// A "/" entry matches every path. It does not allocate: it probes the path's
// own prefixes at each "/" from the longest down, one map lookup each.
// The returned entry belongs to the table and must not be modified.
func (t *Table[T]) Match(cleanPath string) (e *Entry[T], ok bool) {
	p := cleanPath
	if len(p) > t.maxLen {
		// Nothing longer than maxLen can match; cut at the last boundary
		// that could (p[maxLen] == '/' still allows p[:maxLen]).
		p = p[:t.maxLen+1]
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return t.root, t.root != nil
		}
		p = p[:i]
	}
	for len(p) > 1 {
		if e, ok := t.byPrefix[p]; ok {
			return e, true
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return t.root, t.root != nil
}

// Len is the number of routes in the table.
func (t *Table[T]) Len() int { return len(t.entries) }

// StripPrefix returns cleanPath without prefix, always starting with "/":
// "/api/x" less "/api/x" is "/", "/api/x/y" less "/api/x" is "/y", and any
// path less "/" is itself. prefix must be the one Match returned for cleanPath;
// if cleanPath does not start with it, cleanPath is returned unchanged.
func StripPrefix(cleanPath, prefix string) string {
	if prefix == "/" || !strings.HasPrefix(cleanPath, prefix) {
		return cleanPath
	}
	switch rest := cleanPath[len(prefix):]; {
	case rest == "":
		return "/"
	case rest[0] != '/':
		// Not a segment boundary: prefix did not match cleanPath.
		return cleanPath
	default:
		return rest
	}
}

package router

import (
	"fmt"
	"testing"
)

// seedPrefixes are the seed's nine routes.
var seedPrefixes = []string{
	"/api/studio", "/api/studio2", "/api/ai", "/api/admin", "/api/core",
	"/api/node", "/api/llm", "/api/llm2", "/api/agent",
}

func mustTable(t testing.TB, prefixes ...string) *Table[string] {
	t.Helper()
	entries := make([]Entry[string], len(prefixes))
	for i, p := range prefixes {
		entries[i] = Entry[string]{Prefix: p, Value: "route:" + p}
	}
	tbl, err := New(entries)
	if err != nil {
		t.Fatalf("New(%q): %v", prefixes, err)
	}
	return tbl
}

func TestMatch(t *testing.T) {
	seed := mustTable(t, seedPrefixes...)
	withRoot := mustTable(t, append([]string{"/", "/api/v1/deep/nested"}, seedPrefixes...)...)
	onlyRoot := mustTable(t, "/")
	empty := mustTable(t)

	tests := []struct {
		name   string
		table  *Table[string]
		path   string
		want   string // matched prefix
		wantOK bool
	}{
		{name: "exact", table: seed, path: "/api/studio", want: "/api/studio", wantOK: true},
		{name: "trailing slash", table: seed, path: "/api/studio/", want: "/api/studio", wantOK: true},
		{name: "below", table: seed, path: "/api/studio/x/y", want: "/api/studio", wantOK: true},
		{name: "not on segment boundary", table: seed, path: "/api/studiox", wantOK: false},
		{name: "not on boundary below", table: seed, path: "/api/studiox/y", wantOK: false},
		{name: "longest wins studio2", table: seed, path: "/api/studio2/x", want: "/api/studio2", wantOK: true},
		{name: "longest wins llm2", table: seed, path: "/api/llm2/v1/chat/completions", want: "/api/llm2", wantOK: true},
		{name: "llm not llm2", table: seed, path: "/api/llm/v1", want: "/api/llm", wantOK: true},
		{name: "parent of routes", table: seed, path: "/api", wantOK: false},
		{name: "parent with slash", table: seed, path: "/api/", wantOK: false},
		{name: "no match", table: seed, path: "/other/x", wantOK: false},
		{name: "root path no catch-all", table: seed, path: "/", wantOK: false},
		{name: "catch-all", table: withRoot, path: "/other/x", want: "/", wantOK: true},
		{name: "catch-all root path", table: withRoot, path: "/", want: "/", wantOK: true},
		{name: "catch-all for non-boundary", table: withRoot, path: "/api/studiox", want: "/", wantOK: true},
		{name: "specific over catch-all", table: withRoot, path: "/api/ai/x", want: "/api/ai", wantOK: true},
		{name: "deep prefix", table: withRoot, path: "/api/v1/deep/nested/x", want: "/api/v1/deep/nested", wantOK: true},
		{name: "deep prefix partial", table: withRoot, path: "/api/v1/deep/nestedx", want: "/", wantOK: true},
		{name: "path longer than every prefix", table: seed, path: "/api/ai/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/b", want: "/api/ai", wantOK: true},
		{name: "long segment over maxLen", table: seed, path: "/api/aiaaaaaaaaaaaaaaaaaaaaaaaaaa", wantOK: false},
		{name: "only root", table: onlyRoot, path: "/x/y", want: "/", wantOK: true},
		{name: "empty table", table: empty, path: "/x", wantOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, ok := tt.table.Match(tt.path)
			if ok != tt.wantOK {
				t.Fatalf("Match(%q) ok = %v, want %v (entry %+v)", tt.path, ok, tt.wantOK, e)
			}
			if !ok {
				if e != nil {
					t.Fatalf("Match(%q) = %+v with ok=false", tt.path, e)
				}
				return
			}
			if e.Prefix != tt.want || e.Value != "route:"+tt.want {
				t.Fatalf("Match(%q) = %+v, want prefix %q", tt.path, e, tt.want)
			}
		})
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name     string
		prefixes []string
	}{
		{name: "duplicate", prefixes: []string{"/a", "/b", "/a"}},
		{name: "duplicate root", prefixes: []string{"/", "/"}},
		{name: "trailing slash", prefixes: []string{"/a/"}},
		{name: "no leading slash", prefixes: []string{"a"}},
		{name: "empty", prefixes: []string{""}},
		{name: "double slash", prefixes: []string{"/a//b"}},
		{name: "dot segment", prefixes: []string{"/a/./b"}},
		{name: "dotdot segment", prefixes: []string{"/a/.."}},
		{name: "backslash", prefixes: []string{"/a\\b"}},
		{name: "control", prefixes: []string{"/a\nb"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			entries := make([]Entry[int], len(tt.prefixes))
			for i, p := range tt.prefixes {
				entries[i] = Entry[int]{Prefix: p, Value: i}
			}
			if _, err := New(entries); err == nil {
				t.Fatalf("New(%q) succeeded, want an error", tt.prefixes)
			}
		})
	}
}

func TestNewCopiesEntries(t *testing.T) {
	entries := []Entry[string]{{Prefix: "/a", Value: "a"}}
	tbl, err := New(entries)
	if err != nil {
		t.Fatal(err)
	}
	entries[0] = Entry[string]{Prefix: "/b", Value: "b"}
	if e, ok := tbl.Match("/a/x"); !ok || e.Value != "a" {
		t.Fatalf("Match after caller mutated its slice = %+v, %v", e, ok)
	}
}

func TestStripPrefix(t *testing.T) {
	tests := []struct {
		name   string
		path   string
		prefix string
		want   string
	}{
		{name: "exact", path: "/api/x", prefix: "/api/x", want: "/"},
		{name: "below", path: "/api/x/y/z", prefix: "/api/x", want: "/y/z"},
		{name: "trailing slash", path: "/api/x/", prefix: "/api/x", want: "/"},
		{name: "root prefix", path: "/api/x", prefix: "/", want: "/api/x"},
		{name: "root both", path: "/", prefix: "/", want: "/"},
		{name: "not a prefix", path: "/other", prefix: "/api", want: "/other"},
		{name: "not on boundary", path: "/apix", prefix: "/api", want: "/apix"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := StripPrefix(tt.path, tt.prefix); got != tt.want {
				t.Fatalf("StripPrefix(%q, %q) = %q, want %q", tt.path, tt.prefix, got, tt.want)
			}
		})
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	tbl := benchTable(t)
	if allocs := testing.AllocsPerRun(100, func() {
		if _, ok := tbl.Match("/api/llm2/v1/chat/completions"); !ok {
			t.Fatal("no match")
		}
	}); allocs != 0 {
		t.Fatalf("Match allocated %v times", allocs)
	}
}

// benchTable is the seed's nine routes plus 50 more.
func benchTable(tb testing.TB) *Table[string] {
	prefixes := append([]string(nil), seedPrefixes...)
	for i := range 50 {
		prefixes = append(prefixes, fmt.Sprintf("/svc/team%d/service%d", i%7, i))
	}
	return mustTable(tb, prefixes...)
}

func BenchmarkMatch(b *testing.B) {
	tbl := benchTable(b)
	const path = "/api/llm2/v1/chat/completions"
	b.ReportAllocs()
	for b.Loop() {
		if e, ok := tbl.Match(path); !ok || e.Prefix != "/api/llm2" {
			b.Fatalf("Match(%q) = %+v, %v", path, e, ok)
		}
	}
}

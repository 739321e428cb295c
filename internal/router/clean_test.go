package router

import (
	"errors"
	"net/url"
	"path"
	"strings"
	"testing"
)

func TestCleanPath(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		wantErr bool
	}{
		{name: "plain", in: "/api/studio/x", want: "/api/studio/x"},
		{name: "root", in: "/", want: "/"},
		{name: "trailing slash kept", in: "/api/", want: "/api/"},
		{name: "dotdot traversal", in: "/api/public/../secure/x", want: "/api/secure/x"},
		{name: "encoded dotdot lower", in: "/api/public/%2e%2e/secure/x", want: "/api/secure/x"},
		{name: "encoded dotdot mixed case", in: "/api/public/%2E%2e/secure", want: "/api/secure"},
		{name: "encoded single dot", in: "/api/%2e/x", want: "/api/x"},
		{name: "half encoded dotdot", in: "/api/public/.%2e/secure", want: "/api/secure"},
		{name: "encoded slash", in: "/api/public%2F..%2Fsecure/x", wantErr: true},
		{name: "encoded slash lower", in: "/api/public%2f..%2fsecure/x", wantErr: true},
		{name: "double slashes", in: "//api//secure/x", want: "/api/secure/x"},
		{name: "raw backslash", in: "/api/public\\..\\secure", wantErr: true},
		{name: "encoded backslash", in: "/api/public%5C..%5Csecure", wantErr: true},
		{name: "encoded backslash lower", in: "/api/public%5c..%5csecure", wantErr: true},
		{name: "encoded NUL", in: "/api/public%00/x", wantErr: true},
		{name: "encoded control", in: "/api/%0d%0aX-Injected:%201", wantErr: true},
		{name: "encoded DEL", in: "/api/%7f", wantErr: true},
		{name: "raw control", in: "/api/\tx", wantErr: true},
		{name: "raw DEL", in: "/api/\x7f", wantErr: true},
		{name: "invalid escape", in: "/x%zz", wantErr: true},
		{name: "truncated escape", in: "/x%2", wantErr: true},
		{name: "lone percent", in: "/x%", wantErr: true},
		{name: "above root", in: "/../../etc/passwd", want: "/etc/passwd"},
		{name: "encoded above root", in: "/%2e%2e/%2E%2E/etc/passwd", want: "/etc/passwd"},
		{name: "dot segment", in: "/a/./b/", want: "/a/b/"},
		{name: "trailing dotdot", in: "/a/b/..", want: "/a"},
		{name: "trailing dotdot slash", in: "/a/b/../", want: "/a/"},
		{name: "trailing dot", in: "/a/.", want: "/a"},
		{name: "only dotdot", in: "/..", want: "/"},
		{name: "only dotdot slash", in: "/../", want: "/"},
		{name: "double encoding decoded once", in: "/a/%252e%252e/b", want: "/a/%2e%2e/b"},
		{name: "double encoded slash stays literal", in: "/a%252Fb", want: "/a%2Fb"},
		{name: "encoded letter", in: "/%41pi", want: "/Api"},
		{name: "unicode", in: "/caf%C3%A9/x", want: "/café/x"},
		{name: "dots inside names", in: "/a/..b/c../.d/...", want: "/a/..b/c../.d/..."},
		{name: "hidden file", in: "/a/.well-known/x", want: "/a/.well-known/x"},
		{name: "encoded space", in: "/a%20b", want: "/a b"},
		{name: "empty", in: "", wantErr: true},
		{name: "asterisk", in: "*", wantErr: true},
		{name: "relative", in: "api/x", wantErr: true},
		{name: "absolute URI", in: "http://evil/x", wantErr: true},
		{name: "too long", in: "/" + strings.Repeat("a", MaxPathBytes), wantErr: true},
		{name: "longest allowed", in: "/" + strings.Repeat("a", MaxPathBytes-1), want: "/" + strings.Repeat("a", MaxPathBytes-1)},
		{name: "long dirty beyond stack buffer", in: "/" + strings.Repeat("a/", 400) + "..", want: "/" + strings.Repeat("a/", 398) + "a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := CleanPath(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrBadPath) {
					t.Fatalf("CleanPath(%q) = %q, %v; want ErrBadPath", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("CleanPath(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestCleanPathFastPathReturnsInput(t *testing.T) {
	in := "/api/llm2/v1/chat/completions"
	if allocs := testing.AllocsPerRun(100, func() {
		if _, err := CleanPath(in); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 {
		t.Fatalf("fast path allocated %v times", allocs)
	}
}

// FuzzCleanPath checks the invariants every routable path must hold, and that
// cleaning is idempotent through a re-escape (what the proxy forwards).
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{
		"/", "/api/public/../secure/x", "/api/public/%2e%2e/secure/x", "//api//secure/x",
		"/../../etc/passwd", "/a/./b/", "/a/b/..", "/a/%252e%252e/b", "/%41pi",
		"/caf%C3%A9", "/a/.%2e", "/a%25", "/.", "/..%2f", "/a/%2E/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := CleanPath(in)
		if err != nil {
			if !errors.Is(err, ErrBadPath) {
				t.Fatalf("CleanPath(%q) error %v does not wrap ErrBadPath", in, err)
			}
			return
		}
		switch {
		case !strings.HasPrefix(out, "/"):
			t.Fatalf("CleanPath(%q) = %q: does not start with /", in, out)
		case strings.Contains(out, "/../"), strings.Contains(out, "/./"), strings.Contains(out, "//"):
			t.Fatalf("CleanPath(%q) = %q: not clean", in, out)
		case strings.HasSuffix(out, "/.."), strings.HasSuffix(out, "/."):
			t.Fatalf("CleanPath(%q) = %q: ends in a dot segment", in, out)
		case strings.ContainsAny(out, "\\\x00"):
			t.Fatalf("CleanPath(%q) = %q: contains a separator or NUL", in, out)
		}
		for i := 0; i < len(out); i++ {
			if c := out[i]; c < 0x20 || c == 0x7f {
				t.Fatalf("CleanPath(%q) = %q: control byte %#x", in, out, c)
			}
		}
		// Differential check against the standard library's decoder and
		// cleaner, with net/http's trailing-slash rule.
		decoded, err := url.PathUnescape(in)
		if err != nil {
			t.Fatalf("CleanPath(%q) = %q but url.PathUnescape fails: %v", in, out, err)
		}
		want := path.Clean(decoded)
		if strings.HasSuffix(in, "/") && want != "/" {
			want += "/"
		}
		if out != want {
			t.Fatalf("CleanPath(%q) = %q, path.Clean of decoded = %q", in, out, want)
		}
		re := (&url.URL{Path: out}).EscapedPath()
		if len(re) > MaxPathBytes {
			return // re-escaping can triple the length past the limit
		}
		again, err := CleanPath(re)
		if err != nil || again != out {
			t.Fatalf("CleanPath(%q) = %q; re-escaped %q cleans to %q, %v", in, out, re, again, err)
		}
	})
}

func BenchmarkCleanPath(b *testing.B) {
	benchmarks := []struct {
		name string
		in   string
	}{
		{name: "fast", in: "/api/llm2/v1/chat/completions"},
		{name: "dirty", in: "//api/public/%2e%2e/llm2/./v1/chat/completions/"},
	}
	for _, bm := range benchmarks {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := CleanPath(bm.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

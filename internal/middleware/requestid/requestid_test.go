package requestid

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/request"
)

func TestValid(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{name: "empty", id: "", want: false},
		{name: "128 chars", id: strings.Repeat("a", MaxLen), want: true},
		{name: "129 chars", id: strings.Repeat("a", MaxLen+1), want: false},
		{name: "lower case", id: "abcxyz", want: true},
		{name: "upper case", id: "ABCXYZ", want: true},
		{name: "digits", id: "0123456789", want: true},
		{name: "dot", id: "a.b", want: true},
		{name: "underscore", id: "a_b", want: true},
		{name: "dash", id: "a-b", want: true},
		{name: "all classes", id: "Az09._-", want: true},
		{name: "space", id: "a b", want: false},
		{name: "semicolon", id: "a;b", want: false},
		{name: "comma", id: "a,b", want: false},
		{name: "slash", id: "a/b", want: false},
		{name: "quote", id: `a"b`, want: false},
		{name: "unicode", id: "abcé", want: false},
		{name: "unicode lookalike dash", id: "a\u2010b", want: false},
		{name: "NUL", id: "a\x00b", want: false},
		{name: "CR LF", id: "a\r\nX-Injected: 1", want: false},
		{name: "tab", id: "a\tb", want: false},
		{name: "DEL", id: "a\x7fb", want: false},
		{name: "high byte", id: "a\xffb", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Valid(tc.id); got != tc.want {
				t.Errorf("Valid(%q) = %v, want %v", tc.id, got, tc.want)
			}
		})
	}
}

func TestGeneratorNextUnique(t *testing.T) {
	g := NewGenerator()
	seen := make(map[string]struct{}, 10000)
	for range 10000 {
		id := g.Next()
		if !Valid(id) {
			t.Fatalf("generated id %q is not Valid", id)
		}
		if _, dup := seen[id]; dup {
			t.Fatalf("duplicate id %q", id)
		}
		seen[id] = struct{}{}
	}
}

func TestGeneratorNextConcurrent(t *testing.T) {
	g := NewGenerator()
	const workers, each = 16, 1000
	ids := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for range each {
				ids[w] = append(ids[w], g.Next())
			}
		})
	}
	wg.Wait()
	seen := make(map[string]struct{}, workers*each)
	for _, list := range ids {
		for _, id := range list {
			if _, dup := seen[id]; dup {
				t.Fatalf("duplicate id %q under concurrency", id)
			}
			seen[id] = struct{}{}
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("got %d ids, want %d", len(seen), workers*each)
	}
}

func TestGeneratorsDiffer(t *testing.T) {
	a, b := NewGenerator(), NewGenerator()
	if a.Next() == b.Next() {
		t.Fatal("two generators (two processes) produced the same first id")
	}
}

func TestMiddleware(t *testing.T) {
	tests := []struct {
		name string
		ids  []string // client-sent X-Request-ID values
		keep bool     // the client's id is kept
	}{
		{name: "no header", ids: nil},
		{name: "valid id kept", ids: []string{"client-id_1.2"}, keep: true},
		{name: "128-char id kept", ids: []string{strings.Repeat("x", 128)}, keep: true},
		{name: "129-char id replaced", ids: []string{strings.Repeat("x", 129)}},
		{name: "empty id replaced", ids: []string{""}},
		{name: "id with space replaced", ids: []string{"a b"}},
		{name: "id with semicolon replaced", ids: []string{"a;b"}},
		{name: "unicode id replaced", ids: []string{"idé"}},
		{name: "duplicated header replaced", ids: []string{"first", "second"}},
		{name: "duplicated identical header replaced", ids: []string{"same", "same"}},
	}
	g := NewGenerator()
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var seenInfo, seenHeader []string
			h := New(g)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seenInfo = []string{request.From(r.Context()).ID}
				seenHeader = r.Header[Header]
			}))
			r := httptest.NewRequest(http.MethodGet, "/x", nil)
			for _, id := range tc.ids {
				r.Header.Add("X-Request-ID", id)
			}
			rec := httptest.NewRecorder()
			in, r := request.New(rec, r, time.Now(), 0)
			h.ServeHTTP(in.Writer(), r)

			id := in.ID
			if tc.keep && id != tc.ids[0] {
				t.Fatalf("client id %q not kept, got %q", tc.ids[0], id)
			}
			if !tc.keep {
				for _, c := range tc.ids {
					if id == c {
						t.Fatalf("client id %q kept, want a new one", c)
					}
				}
				if !Valid(id) {
					t.Fatalf("new id %q is not Valid", id)
				}
			}
			if len(seenInfo) != 1 || seenInfo[0] != id {
				t.Errorf("handler saw Info.ID %v, want %q", seenInfo, id)
			}
			if len(seenHeader) != 1 || seenHeader[0] != id {
				t.Errorf("handler saw r.Header[%s] = %q, want exactly [%q]", Header, seenHeader, id)
			}
			if got := rec.Result().Header[Header]; len(got) != 1 || got[0] != id {
				t.Errorf("response %s = %q, want exactly [%q]", Header, got, id)
			}
		})
	}
}

package middleware

import (
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// TestPathIsTheDocumentedOne: the steps docs/request-path.md numbers under
// "How a request is handled" are Path, in Path's order, so the documentation
// and the code cannot drift apart.
func TestPathIsTheDocumentedOne(t *testing.T) {
	b, err := os.ReadFile("../../docs/request-path.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "## How a request is handled")
	if start < 0 {
		t.Fatal(`docs/request-path.md has no "How a request is handled" section`)
	}
	section := doc[start:]
	if end := strings.Index(section[3:], "\n## "); end >= 0 {
		section = section[:end+3]
	}
	var got []string
	for _, m := range regexp.MustCompile(`(?m)^(\d+)\. \*\*([^*]+?)[.:]?\*\*`).FindAllStringSubmatch(section, -1) {
		got = append(got, m[2])
	}
	if !slices.Equal(got, Path) {
		t.Errorf("docs/request-path.md steps:\n %q\nPath:\n %q", got, Path)
	}
}

// TestChainRefusesStepsOutOfOrder: a step placed against Path's order is a
// build error, so order.go cannot drift from Path either.
func TestChainRefusesStepsOutOfOrder(t *testing.T) {
	id := func(h http.Handler) http.Handler { return h }
	last := step{"Route", func(http.Handler) http.Handler { return http.NotFoundHandler() }}
	if _, err := chain([]step{{"Envelope", id}, {"Rate limit", id}}, last); err != nil {
		t.Errorf("in order: %v", err)
	}
	if _, err := chain([]step{{"Rate limit", id}, {"Envelope", id}}, last); err == nil {
		t.Error("Rate limit before Envelope was accepted")
	}
	if _, err := chain([]step{{"Load shedding", id}}, step{"Own endpoints", last.wrap}); err == nil {
		t.Error("Own endpoints after Load shedding was accepted")
	}
	if _, err := chain([]step{{"Envelop", id}}, last); err == nil {
		t.Error("a step named outside Path was accepted")
	}
}

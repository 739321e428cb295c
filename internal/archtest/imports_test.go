package archtest

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/portcullis/portcullis/"

// imports maps each package directory of the module (relative, e.g.
// "internal/proxy") to the module's packages its non-test files import.
func imports(t *testing.T) map[string][]string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	err = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (name == "e2e" || name == "tools" || name == "testdata" || strings.HasPrefix(name, ".")) {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, filepath.Dir(path))
		rel = filepath.ToSlash(rel)
		for _, is := range f.Imports {
			p, _ := strconv.Unquote(is.Path.Value)
			if dep, ok := strings.CutPrefix(p, module); ok && !slices.Contains(out[rel], dep) {
				out[rel] = append(out[rel], dep)
			}
		}
		if _, ok := out[rel]; !ok {
			out[rel] = nil
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 20 {
		t.Fatalf("found only %d packages under %s: wrong root?", len(out), root)
	}
	return out
}

// maxGatewayImports bounds what internal/gateway wires directly.
const maxGatewayImports = 14

func isStep(pkg string) bool { return strings.HasPrefix(pkg, "internal/middleware/") }

// foundations import no other package of the module but those listed:
// everything else builds on them.
var foundations = map[string][]string{
	"internal/config":    nil,
	"internal/router":    nil,
	"internal/framing":   nil,
	"internal/iplist":    nil,
	"internal/realip":    nil,
	"internal/request":   nil,
	"internal/upstream":  nil,
	"internal/telemetry": nil,
	"internal/gwerror":   {"internal/request"},
	"internal/overview":  {"internal/sysmetrics"},
}

func TestImportRules(t *testing.T) {
	all := imports(t)
	for pkg, deps := range all {
		for _, dep := range deps {
			switch {
			case dep == "internal/gateway" && pkg != "cmd/gateway":
				t.Errorf("%s imports internal/gateway: only the command wires the gateway", pkg)
			case dep == "internal/middleware" && pkg != "internal/gateway":
				t.Errorf("%s imports internal/middleware: only the gateway builds the request path", pkg)
			case isStep(dep) && isStep(pkg):
				t.Errorf("step %s imports step %s: steps are independent; order.go composes them", pkg, dep)
			case isStep(dep) && pkg != "internal/middleware":
				t.Errorf("%s imports the step %s: shared state belongs in a package of its own", pkg, dep)
			}
		}
		if allowed, ok := foundations[pkg]; ok {
			for _, dep := range deps {
				if !slices.Contains(allowed, dep) {
					t.Errorf("%s is a foundation but imports %s", pkg, dep)
				}
			}
		}
	}
	// The gateway is the composition root: listeners and lifecycle. What
	// it wires is built by the packages named for their jobs, so the list
	// of what it imports stays short enough to read at a glance.
	if n := len(all["internal/gateway"]); n > maxGatewayImports {
		t.Errorf("internal/gateway imports %d packages of the module (at most %d): %v; build the new part in a package of its own",
			n, maxGatewayImports, all["internal/gateway"])
	}
	if _, err := os.Stat("../../docs/ARCHITECTURE.md"); err != nil {
		t.Errorf("the import rules are explained in docs/ARCHITECTURE.md: %v", err)
	}
}

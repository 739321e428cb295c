// Package testsvc starts real services (redis-server, PostgreSQL, Jaeger,
// the Pebble ACME server) for tests, each private to the test that asked
// for it, on ephemeral 127.0.0.1 ports.
//
// Binaries are found with exec.LookPath and, for PostgreSQL, also under
// /usr/lib/postgresql/*/bin (Debian's layout). When one is missing the test
// fails (never skips) and says to run scripts/test-deps.sh.
package testsvc

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
)

// installHint ends every "binary not found" failure.
const installHint = "run scripts/test-deps.sh"

// findBinary returns the path of the named executable: PATH first, then the
// extra glob patterns (newest version last, so it is preferred).
func findBinary(name string, globs ...string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, g := range globs {
		matches, _ := filepath.Glob(filepath.Join(g, name))
		slices.SortFunc(matches, compareVersionPaths)
		for i := len(matches) - 1; i >= 0; i-- {
			if p, err := exec.LookPath(matches[i]); err == nil {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not found in PATH or %v: %s", name, globs, installHint)
}

// compareVersionPaths orders /usr/lib/postgresql/9/bin before …/15/bin.
func compareVersionPaths(a, b string) int {
	va, ea := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(a))))
	vb, eb := strconv.Atoi(filepath.Base(filepath.Dir(filepath.Dir(b))))
	if ea == nil && eb == nil {
		return va - vb
	}
	return bytes.Compare([]byte(a), []byte(b))
}

// freePort asks the kernel for an unused TCP port on 127.0.0.1. Another
// process may take it before the service binds it: callers retry.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// randomSuffix returns n random bytes as lowercase hex.
func randomSuffix(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// tail returns at most the last n bytes of s, for error messages.
func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// fatalf fails the test from any helper.
func fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Fatalf("testsvc: "+format, args...)
}

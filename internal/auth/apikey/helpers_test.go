package apikey

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"
)

// hexOf is the lowercase hex SHA-256 of key, as stores hold it.
func hexOf(key string) string {
	sum := sha256.Sum256([]byte(key))
	return hex.EncodeToString(sum[:])
}

// nameOf is the default name of a key without one.
func nameOf(key string) string { return "key:" + hexOf(key)[:12] }

// newClock is an injected clock tests advance instead of sleeping.
func newClock() *testutil.Clock { return testutil.NewClock(time.Now()) }

// logSink captures a Store's slog output for assertions.
type logSink struct {
	mu     sync.Mutex
	b      bytes.Buffer
	secret []string
}

func (l *logSink) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logSink) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// forbid records keys whose material must never be logged.
func (l *logSink) forbid(keys ...string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.secret = append(l.secret, keys...)
}

// count returns how many log lines contain s.
func (l *logSink) count(s string) int { return strings.Count(l.String(), s) }

// captureLogs returns a debug-level logger into a sink; at cleanup it fails
// the test if a forbidden key, its full digest, or more than a short prefix
// of the digest (16 hex characters) appears in the output.
func captureLogs(t *testing.T) (*slog.Logger, *logSink) {
	t.Helper()
	sink := &logSink{}
	t.Cleanup(func() {
		out := sink.String()
		sink.mu.Lock()
		defer sink.mu.Unlock()
		for _, k := range sink.secret {
			h := hexOf(k)
			if strings.Contains(out, k) || strings.Contains(out, h[:16]) {
				t.Errorf("key material of %q (or its digest) appears in the logs:\n%s", k[:min(4, len(k))]+"…", out)
			}
		}
	})
	return slog.New(slog.NewTextHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})), sink
}

// newStore builds a Store whose background work ends with the test.
func newStore(t testing.TB, o Options) *Store {
	t.Helper()
	s, err := New(t.Context(), o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return s
}

// counter reads a counter from reg by name and label set.
func counter(t testing.TB, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	metric:
		for _, m := range f.GetMetric() {
			for _, lp := range m.GetLabel() {
				if labels[lp.GetName()] != lp.GetValue() {
					continue metric
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	t.Fatalf("metric %s%v not found", name, labels)
	return 0
}

// eventually polls cond every 10ms until it holds or within passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// lookupStep is one row of a sequential lookup table: do (optional) runs
// first, then key is looked up and compared.
type lookupStep struct {
	name    string
	do      func(t *testing.T)
	key     string
	want    Identity
	wantErr error
	// within, when set, bounds the lookup's duration.
	within time.Duration
}

// runSteps runs steps in order as subtests; a failed step stops the rest.
func runSteps(t *testing.T, s *Store, steps []lookupStep) {
	t.Helper()
	for _, st := range steps {
		ok := t.Run(st.name, func(t *testing.T) {
			if st.do != nil {
				st.do(t)
			}
			start := time.Now()
			got, err := s.Lookup(context.Background(), st.key)
			took := time.Since(start)
			if !errors.Is(err, st.wantErr) || got != st.want { // errors.Is(nil, nil) is true
				t.Fatalf("Lookup = %+v, %v; want %+v, %v", got, err, st.want, st.wantErr)
			}
			if st.within > 0 && took > st.within {
				t.Fatalf("Lookup took %v, want at most %v", took, st.within)
			}
		})
		if !ok {
			t.FailNow()
		}
	}
}

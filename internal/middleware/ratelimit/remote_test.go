package ratelimit

import (
	"context"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/limiter"
	"github.com/portcullis/portcullis/internal/request"
)

// scriptedRemote answers from a script, recording what it was asked.
type scriptedRemote struct {
	mu     sync.Mutex
	answer limiter.Decision
	ok     bool
	asked  []string // scope|key
}

func (s *scriptedRemote) Allow(_ context.Context, scope string, key netip.Addr, interval, tau time.Duration) (limiter.Decision, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked = append(s.asked, scope+"|"+key.String())
	return s.answer, s.ok
}

func TestRemoteDecidesAndLocalTakesOverWhenItCannot(t *testing.T) {
	f := newFixture(t)
	remote := &scriptedRemote{}
	var err error
	f.shared, err = limiter.NewLimits(limiter.Config{MaxTrackedIPs: 64, Now: f.clock.Now, Registerer: prometheus.NewRegistry(), Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	h := envelope(f.limiter(t, 1, 2, ok))

	// The shared store refuses: 429 with its Retry-After, whatever the
	// local bucket (full) would say.
	remote.answer, remote.ok = limiter.Decision{Allowed: false, RetryAfter: 3 * time.Second, Reset: 3 * time.Second}, true
	check(t, "remote refuses", send(h, "192.0.2.1"), "2", want{status: http.StatusTooManyRequests, remaining: "0", reset: "3", retryAfter: "3"})

	// The shared store allows: its Remaining is shown.
	remote.answer = limiter.Decision{Allowed: true, Remaining: 1, Reset: time.Second}
	check(t, "remote allows", send(h, "192.0.2.1"), "2", want{status: http.StatusOK, remaining: "1", reset: "1"})

	// The shared store is unavailable: the local bucket decides (burst 2).
	remote.ok = false
	check(t, "local 1", send(h, "192.0.2.1"), "2", want{status: http.StatusOK, remaining: "1", reset: "1"})
	check(t, "local 2", send(h, "192.0.2.1"), "2", want{status: http.StatusOK, remaining: "0", reset: "1"})
	check(t, "local 3", send(h, "192.0.2.1"), "2", want{status: http.StatusTooManyRequests, remaining: "0", reset: "1", retryAfter: "1"})

	if remote.asked[0] != "|192.0.2.1" {
		t.Fatalf("per-IP limiter asked %q, want empty scope and the client key", remote.asked[0])
	}
}

func TestRemoteRouteLimiterScopesByRoute(t *testing.T) {
	f := newFixture(t)
	remote := &scriptedRemote{answer: limiter.Decision{Allowed: true, Remaining: 4}, ok: true}
	var err error
	f.shared, err = limiter.NewLimits(limiter.Config{MaxTrackedIPs: 64, Now: f.clock.Now, Remote: remote})
	if err != nil {
		t.Fatal(err)
	}
	rl := mustHandler(t, f.shared, 1, 5, ok, true)
	setRoute := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		request.From(r.Context()).Endpoint = "/api/billing"
		rl.ServeHTTP(w, r)
	})
	send(envelope(setRoute), "2001:db8::1")
	if len(remote.asked) != 1 || remote.asked[0] != "/api/billing|2001:db8::" {
		t.Fatalf("asked %v, want the route prefix as scope and the /64 as key", remote.asked)
	}
}

package respcache

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/cache"
	"github.com/portcullis/portcullis/internal/request"
)

// serveStep runs the step as the gateway does (request.Info in the
// context) on a real server.
func serveStep(t *testing.T, s *cache.Shared, next http.HandlerFunc) *httptest.Server {
	t.Helper()
	step := New(s, time.Minute, false)(next)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		step.ServeHTTP(in.Writer(), r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func newCache(t *testing.T, o cache.Options) *cache.Shared {
	mem, err := cache.NewMemory(1 << 20)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mem.Close)
	if o.MaxObject == 0 {
		o.MaxObject = 1 << 20
	}
	return cache.NewShared(mem, &cache.Stats{}, o)
}

func fetch(t *testing.T, url string) (string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		return "", "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.Header.Get("X-Cache"), string(b)
}

func TestRecordingBudgetBoundsWhatMissesBuffer(t *testing.T) {
	s := newCache(t, cache.Options{MaxRecording: 100}) // smaller than the answer: nothing can be recorded
	var hits atomic.Int64
	srv := serveStep(t, s, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		io.WriteString(w, strings.Repeat("x", 300))
	})
	for range 3 {
		if x, body := fetch(t, srv.URL+"/big"); x != "MISS" || len(body) != 300 {
			t.Fatalf("X-Cache %q, %d bytes", x, len(body))
		}
	}
	if hits.Load() != 3 {
		t.Errorf("upstream saw %d requests: an answer over the budget was stored", hits.Load())
	}
	if n := s.Recording(); n != 0 {
		t.Errorf("%d bytes still counted as recording after every miss ended", n)
	}
}

func TestTruncatedAnswerIsNotStored(t *testing.T) {
	s := newCache(t, cache.Options{})
	srv := serveStep(t, s, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only part")
		panic(http.ErrAbortHandler) // as ReverseProxy does when the upstream body breaks
	})
	fetch(t, srv.URL+"/cut")
	if x, _ := fetch(t, srv.URL+"/cut"); x == "HIT" {
		t.Fatal("a truncated answer was stored")
	}
	if n := s.Recording(); n != 0 {
		t.Errorf("%d bytes still counted as recording after an aborted miss", n)
	}
}

func TestAbortedLeaderReleasesWaiters(t *testing.T) {
	s := newCache(t, cache.Options{})
	var calls atomic.Int64
	release := make(chan struct{})
	srv := serveStep(t, s, func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			<-release
			panic(http.ErrAbortHandler) // the leader fails
		}
		io.WriteString(w, "fetched by a waiter")
	})
	var wg sync.WaitGroup
	results := make([]string, 5)
	for i := range results {
		wg.Go(func() { _, results[i] = fetch(t, srv.URL+"/x") })
		if i == 0 {
			for calls.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	}
	time.Sleep(50 * time.Millisecond) // let the others join the flight
	close(release)
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("waiters still waiting after their leader failed")
	}
	ok := 0
	for _, r := range results[1:] {
		if r == "fetched by a waiter" {
			ok++
		}
	}
	if ok != 4 {
		t.Errorf("%d of 4 waiters got an answer after the leader failed: %q", ok, results)
	}
}

// TestWaitersDoNotWaitOutALongLeader: waiters coalesced behind a leader
// must not wait for the whole of an answer that will not be stored (a
// private one, a download over CACHE_MAX_OBJECT_BYTES, an event stream),
// nor for long on a stored one whose body crawls (a slow upstream, or a
// leader whose client reads slowly on purpose).
func TestWaitersDoNotWaitOutALongLeader(t *testing.T) {
	for _, tc := range []struct {
		name string
		hdr  map[string]string
	}{
		{"not storable", map[string]string{"Cache-Control": "private"}},
		{"too large", map[string]string{"Content-Length": "2000000"}},
		{"storable, body crawling", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newCache(t, cache.Options{BodyWait: 100 * time.Millisecond})
			var calls atomic.Int64
			release := make(chan struct{})
			srv := serveStep(t, s, func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) > 1 {
					io.WriteString(w, "own answer")
					return
				}
				for k, v := range tc.hdr {
					w.Header().Set(k, v)
				}
				w.WriteHeader(http.StatusOK)
				io.WriteString(w, "first part")
				w.(http.Flusher).Flush()
				select {
				case <-release:
				case <-r.Context().Done():
				}
				panic(http.ErrAbortHandler)
			})
			defer close(release)
			go fetch(t, srv.URL+"/x") // the leader
			for calls.Load() == 0 {
				time.Sleep(time.Millisecond)
			}
			var wg sync.WaitGroup
			results := make([]string, 3)
			for i := range results {
				wg.Go(func() { _, results[i] = fetch(t, srv.URL+"/x") })
			}
			done := make(chan struct{})
			go func() { wg.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(3 * time.Second):
				t.Fatal("waiters still waiting on a leader that has not finished")
			}
			for _, r := range results {
				if r != "own answer" {
					t.Errorf("waiter got %q", r)
				}
			}
		})
	}
}

func TestEarlyHintsLeaveTheGatewaysHeaders(t *testing.T) {
	s := newCache(t, cache.Options{})
	step := New(s, time.Minute, false)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.Header().Set("X-Request-Id", "upstream-echo")
		w.WriteHeader(http.StatusEarlyHints)
		clear(w.Header()) // as ReverseProxy does after a 1xx
		io.WriteString(w, "final")
	}))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		in, r := request.New(w, r, time.Now(), 0)
		w.Header().Set("X-Request-Id", "gateway-id")
		step.ServeHTTP(in.Writer(), r)
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL + "/hints")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "gateway-id" {
		t.Errorf("X-Request-Id after a 103: %q, want the gateway's", got)
	}
	if resp.Header.Get("Link") != "" {
		t.Error("a 103's header leaked into the final answer")
	}
}

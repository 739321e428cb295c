package shed

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestShedsBeyondMax(t *testing.T) {
	tests := []struct {
		name  string
		max   int
		extra int // requests sent while max are blocked inside
	}{
		{name: "max 1", max: 1, extra: 1},
		{name: "max 2, third request shed", max: 2, extra: 1},
		{name: "max 5, three extra shed", max: 5, extra: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			release := make(chan struct{})
			entered := make(chan struct{}, tc.max)
			h := New(tc.max, reg)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/block" {
					entered <- struct{}{}
					<-release
				}
				_, _ = io.WriteString(w, "ok")
			}))
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				in, r := request.New(w, r, time.Now(), 0)
				in.ID = "req-1"
				h.ServeHTTP(in.Writer(), r)
			}))
			defer srv.Close()

			var wg sync.WaitGroup
			for range tc.max {
				wg.Go(func() {
					resp, err := http.Get(srv.URL + "/block")
					if err != nil {
						t.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						t.Errorf("blocked request status = %d, want 200", resp.StatusCode)
					}
				})
			}
			for range tc.max {
				<-entered
			}
			for range tc.extra {
				resp, err := http.Get(srv.URL + "/fast")
				if err != nil {
					t.Fatal(err)
				}
				var body struct {
					Error     string `json:"error"`
					RequestID string `json:"request_id"`
				}
				err = json.NewDecoder(resp.Body).Decode(&body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
					t.Fatalf("over the cap: status %d, Retry-After %q; want 503, 1", resp.StatusCode, resp.Header.Get("Retry-After"))
				}
				if err != nil || body.RequestID != "req-1" || resp.Header.Get("Content-Type") != "application/json" {
					t.Errorf("503 body: %+v, %v, Content-Type %q", body, err, resp.Header.Get("Content-Type"))
				}
			}
			if got := testutil.MetricValue(t, reg, "load_shed_requests_total"); got != float64(tc.extra) {
				t.Errorf("load_shed_requests_total = %v, want %d", got, tc.extra)
			}
			close(release)
			wg.Wait()
			// Released: requests pass again, up to the cap and beyond it
			// one after another.
			for range tc.max + 2 {
				resp, err := http.Get(srv.URL + "/fast")
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("after release: status %d, want 200", resp.StatusCode)
				}
			}
		})
	}
}

func TestDisabledAndNilRegistry(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})
	tests := []struct {
		name string
		max  int
		reg  prometheus.Registerer
	}{
		{name: "max 0 is off", max: 0},
		{name: "nil registry", max: 3},
		{name: "registered twice on one registry", max: 3, reg: func() prometheus.Registerer {
			r := prometheus.NewRegistry()
			New(1, r)(next)
			return r
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := New(tc.max, tc.reg)(next)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil))
			if rec.Code != http.StatusOK {
				t.Errorf("status %d", rec.Code)
			}
		})
	}
}

package route

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/proxy"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/upstream"
)

func TestRouteMatchesTheCleanPath(t *testing.T) {
	target, _ := url.Parse("http://127.0.0.1:1")
	mk := func(prefix string) config.Route {
		return config.Route{Prefix: prefix, Targets: []config.Target{{URL: target, Weight: 1}}, Algo: "round-robin", MaxBodyBytes: 1, Timeout: time.Second}
	}
	wrap := func(rc config.Route, _ http.Handler) (http.Handler, error) {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, rc.Prefix+" "+request.From(r.Context()).Path)
		}), nil
	}
	snap, err := routetable.Build([]config.Route{mk("/api"), mk("/api/studio")}, upstream.NewRegistry(upstream.BreakerSettings{}), &proxy.Engine{Log: slog.New(slog.DiscardHandler)}, wrap)
	if err != nil {
		t.Fatal(err)
	}
	var table routetable.Holder
	table.Store(snap)
	h := New(&table, nil)
	for _, tc := range []struct {
		target, want, endpoint string
		code                   int
	}{
		{target: "/api/studio/x", want: "/api/studio /api/studio/x", endpoint: "/api/studio", code: 200},
		{target: "/api/studiox", want: "/api /api/studiox", endpoint: "/api", code: 200},
		{target: "/api/studio/../x", want: "/api /api/x", endpoint: "/api", code: 200},
		{target: "/api/%2e%2e/etc", endpoint: "unmatched", code: 404},
		{target: "/api/a%2fb", endpoint: "unmatched", code: 400},
		{target: "/other", endpoint: "unmatched", code: 404},
	} {
		w := httptest.NewRecorder()
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.URL, _ = url.ParseRequestURI(tc.target)
		in, r := request.New(w, r, time.Now(), 0)
		h.ServeHTTP(w, r)
		if w.Code != tc.code || in.Endpoint != tc.endpoint || (tc.want != "" && w.Body.String() != tc.want) {
			t.Errorf("%s: %d %q endpoint %q; want %d %q %q", tc.target, w.Code, w.Body.String(), in.Endpoint, tc.code, tc.want, tc.endpoint)
		}
	}
}

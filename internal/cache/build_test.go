package cache

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestBuildChoosesTheStore(t *testing.T) {
	live, _ := testsvc.Redis(t)
	dead := testutil.DeadAddr(t)
	tests := []struct {
		name      string
		env       map[string]string
		wantStore string // "" = caching off
		wantLog   string
	}{
		{name: "caching off", env: map[string]string{"ENABLE_CACHING": "false"}},
		{name: "memory", env: map[string]string{"CACHE_BACKEND": "memory"}, wantStore: "memory", wantLog: "response cache ready"},
		{name: "auto with Redis up", env: map[string]string{"CACHE_BACKEND": "auto", "REDIS_ADDR": live}, wantStore: "redis"},
		{name: "auto with Redis down falls back to memory", env: map[string]string{"CACHE_BACKEND": "auto", "REDIS_ADDR": dead},
			wantStore: "memory", wantLog: "using the memory cache"},
		{name: "redis with Redis down keeps Redis, serving without it until it is back", env: map[string]string{"CACHE_BACKEND": "redis", "REDIS_ADDR": dead},
			wantStore: "redis", wantLog: "serving without the cache until it is"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"ENABLE_CACHING": "true"}
			for k, v := range tc.env {
				env[k] = v
			}
			cfg, err := config.Load(func(k string) (string, bool) { v, ok := env[k]; return v, ok }, nil)
			if err != nil {
				t.Fatal(err)
			}
			logs := &testutil.SyncBuffer{}
			reg := prometheus.NewRegistry()
			s, closeAll, err := Build(context.Background(), &cfg.Static, slog.New(slog.NewJSONHandler(logs, nil)), reg)
			if err != nil {
				t.Fatal(err)
			}
			defer closeAll()
			// The metrics exist whether caching is on or not.
			if v := testutil.MetricValue(t, reg, "cache_hits_total"); v != 0 {
				t.Errorf("cache_hits_total = %v at boot", v)
			}
			switch {
			case tc.wantStore == "" && s != nil:
				t.Fatalf("caching off built a %s cache", s.Store().Name())
			case tc.wantStore == "":
				return
			case s == nil:
				t.Fatal("no cache built")
			case s.Store().Name() != tc.wantStore:
				t.Errorf("store %s, want %s", s.Store().Name(), tc.wantStore)
			}
			if !strings.Contains(logs.String(), tc.wantLog) {
				t.Errorf("log lacks %q:\n%s", tc.wantLog, logs)
			}
			if set := s.Settings(); set.MaxObject != cfg.CacheMaxObjectBytes || set.ClientRevalidate != cfg.CacheClientRevalidate {
				t.Errorf("settings %+v do not follow the configuration", *set)
			}
		})
	}
}

package cache

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestRedisStoreSurvivesAnOutage(t *testing.T) {
	srv := testsvc.RestartableRedis(t)
	rdb := NewRedisClient(srv.Addr, "", 0)
	defer rdb.Close()
	logs := &testutil.SyncBuffer{}
	stats := &Stats{}
	s := NewRedis(rdb, stats, slog.New(slog.NewJSONHandler(logs, nil)))
	ctx := context.Background()

	e := &Entry{Status: 200, Header: http.Header{"Content-Type": {"text/plain"}}, Body: []byte("hello"),
		Stored: time.Now(), Expires: time.Now().Add(time.Minute)}
	s.Set("k", e)
	waitFor(t, func() bool { _, ok := s.Get(ctx, "k"); return ok })
	got, _ := s.Get(ctx, "k")
	if string(got.Body) != "hello" || got.Header.Get("Content-Type") != "text/plain" {
		t.Fatalf("got %+v", got)
	}

	srv.Stop()
	var worst time.Duration
	for range 200 {
		start := time.Now()
		if _, ok := s.Get(ctx, "k"); ok {
			t.Fatal("hit from a dead Redis")
		}
		worst = max(worst, time.Since(start))
	}
	if worst > RedisTimeout+50*time.Millisecond {
		t.Errorf("a lookup against a dead Redis took %v (timeout %v)", worst, RedisTimeout)
	}
	if stats.Errors.Load() == 0 {
		t.Error("errors not counted")
	}
	if n := strings.Count(logs.String(), "redis cache unreachable"); n != 1 {
		t.Errorf("%d outage warnings, want exactly 1:\n%s", n, logs.String())
	}

	srv.Start()
	s.Set("k2", e)
	waitFor(t, func() bool { s.Set("k2", e); _, ok := s.Get(ctx, "k2"); return ok })
	if !strings.Contains(logs.String(), "redis cache reachable again") {
		t.Error("recovery not logged")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

package cache

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

func TestRedisStoreSurvivesAnOutage(t *testing.T) {
	srv := testsvc.RestartableRedis(t)
	rdb := redisconn.New(redisconn.Server{Addr: srv.Addr}, redisconn.ForCache(RedisTimeout))
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

// slowProxy forwards TCP to addr, holding every client→server chunk for
// delay: a real Redis that answers, but slowly.
func slowProxy(t *testing.T, addr string, delay time.Duration) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				up, err := net.Dial("tcp", addr)
				if err != nil {
					return
				}
				defer up.Close()
				go io.Copy(c, up)
				buf := make([]byte, 32<<10)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					time.Sleep(delay)
					if _, err := up.Write(buf[:n]); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

func TestSlowRedisTripsTheBreaker(t *testing.T) {
	addr, _ := testsvc.Redis(t)
	rdb := redisconn.New(redisconn.Server{Addr: slowProxy(t, addr, 3*RedisSlow)}, redisconn.ForCache(RedisTimeout))
	defer rdb.Close()
	logs := &testutil.SyncBuffer{}
	s := NewRedis(rdb, &Stats{}, slog.New(slog.NewJSONHandler(logs, nil)))
	slow := 0
	for range 50 {
		began := time.Now()
		s.Get(context.Background(), "k")
		if time.Since(began) > RedisSlow {
			slow++
		}
	}
	// The first lookups pay the slowness; then the breaker skips Redis,
	// apart from one probe a second.
	if slow > redisTrip+2 {
		t.Errorf("%d of 50 lookups paid a slow Redis; the breaker should have opened after %d", slow, redisTrip)
	}
	if !strings.Contains(logs.String(), "redis cache unreachable or slow") {
		t.Error("a slow Redis was not reported")
	}
}

func TestClientsHangingUpDoNotTripTheBreaker(t *testing.T) {
	addr, _ := testsvc.Redis(t)
	rdb := redisconn.New(redisconn.Server{Addr: addr}, redisconn.ForCache(RedisTimeout))
	defer rdb.Close()
	logs := &testutil.SyncBuffer{}
	stats := &Stats{}
	s := NewRedis(rdb, stats, slog.New(slog.NewJSONHandler(logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for range 10 {
		s.Get(ctx, "k")
	}
	if strings.Contains(logs.String(), "unreachable") || stats.Errors.Load() != 0 {
		t.Fatalf("clients that left were blamed on Redis: %d errors, logs %s", stats.Errors.Load(), logs.String())
	}
	e := &Entry{Status: 200, Body: []byte("x"), Stored: time.Now(), Expires: time.Now().Add(time.Minute)}
	s.Set("k", e)
	waitFor(t, func() bool { _, ok := s.Get(context.Background(), "k"); return ok })
}

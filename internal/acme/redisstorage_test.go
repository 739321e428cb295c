package acme

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testsvc"
	"github.com/portcullis/portcullis/internal/testutil"
)

// redisClient is a client of a private redis-server.
func redisClient(t *testing.T) *redis.Client {
	t.Helper()
	addr, _ := testsvc.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

func TestRedisStorageFiles(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb := redisClient(t)
	s := NewRedisStorage(rdb, RedisStorageOptions{KeyPrefix: "t:"})
	tree := []string{
		"acme/ca/users/a.json",
		"acme/ca/users/b.json",
		"certificates/ca/site/site.crt",
		"certificates/ca/site/site.key",
		"certificates/ca/other/other.crt",
		// Siblings that share the prefix "certificates" without being under it.
		"certificates-x/y",
		"certificates.z",
		"certificatesA",
		"top.txt",
	}
	before := time.Now().Add(-time.Second)
	for _, k := range tree {
		if err := s.Store(ctx, k, []byte("value of "+k)); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("load", func(t *testing.T) {
		got, err := s.Load(ctx, "certificates/ca/site/site.key")
		if err != nil || string(got) != "value of certificates/ca/site/site.key" {
			t.Fatalf("Load = %q, %v", got, err)
		}
		if err := s.Store(ctx, "top.txt", []byte("new")); err != nil {
			t.Fatal(err)
		}
		if got, _ := s.Load(ctx, "top.txt"); string(got) != "new" {
			t.Errorf("Load after overwrite = %q", got)
		}
		for _, k := range []string{"missing", "certificates", "certificates/ca"} {
			if _, err := s.Load(ctx, k); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Load(%q) = %v, want fs.ErrNotExist (certmagic relies on it)", k, err)
			}
		}
	})

	t.Run("exists", func(t *testing.T) {
		for k, want := range map[string]bool{
			"top.txt":                       true,
			"certificates":                  true, // a directory
			"certificates/ca/site":          true,
			"certificates/ca/site/site.crt": true,
			"certificates/ca/sit":           false,
			"certificates/ca/site/site":     false,
			"missing":                       false,
		} {
			if got := s.Exists(ctx, k); got != want {
				t.Errorf("Exists(%q) = %v, want %v", k, got, want)
			}
		}
	})

	t.Run("stat", func(t *testing.T) {
		fi, err := s.Stat(ctx, "certificates/ca/site/site.crt")
		if err != nil {
			t.Fatal(err)
		}
		if !fi.IsTerminal || fi.Key != "certificates/ca/site/site.crt" || fi.Size != int64(len("value of certificates/ca/site/site.crt")) ||
			fi.Modified.Before(before) || fi.Modified.After(time.Now().Add(time.Second)) {
			t.Errorf("Stat(file) = %+v", fi)
		}
		dir, err := s.Stat(ctx, "certificates/ca")
		if err != nil || dir.IsTerminal || dir.Key != "certificates/ca" {
			t.Errorf("Stat(dir) = %+v, %v", dir, err)
		}
		if _, err := s.Stat(ctx, "missing/key"); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Stat(missing) = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("list", func(t *testing.T) {
		tests := []struct {
			dir       string
			recursive bool
			want      []string
		}{
			{dir: "certificates", want: []string{"certificates/ca"}},
			{dir: "certificates/ca", want: []string{"certificates/ca/other", "certificates/ca/site"}},
			{dir: "certificates/ca/site/", want: []string{"certificates/ca/site/site.crt", "certificates/ca/site/site.key"}},
			{dir: "certificates", recursive: true, want: []string{
				"certificates/ca",
				"certificates/ca/other",
				"certificates/ca/other/other.crt",
				"certificates/ca/site",
				"certificates/ca/site/site.crt",
				"certificates/ca/site/site.key",
			}},
			{dir: "", want: []string{"acme", "certificates", "certificates-x", "certificates.z", "certificatesA", "top.txt"}},
			{dir: "top.txt", want: nil}, // a stored key lists as empty, as a file does
		}
		for _, tt := range tests {
			got, err := s.List(ctx, tt.dir, tt.recursive)
			if err != nil || !slices.Equal(got, tt.want) {
				t.Errorf("List(%q, %v) = %q, %v; want %q", tt.dir, tt.recursive, got, err, tt.want)
			}
		}
		if _, err := s.List(ctx, "missing", false); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("List(missing) = %v, want fs.ErrNotExist", err)
		}
	})

	t.Run("delete", func(t *testing.T) {
		if err := s.Delete(ctx, "certificates/ca/site"); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"certificates/ca/site", "certificates/ca/site/site.crt", "certificates/ca/site/site.key"} {
			if s.Exists(ctx, k) {
				t.Errorf("%s exists after its directory was deleted", k)
			}
		}
		if !s.Exists(ctx, "certificates/ca/other/other.crt") || !s.Exists(ctx, "certificates-x/y") {
			t.Error("Delete removed keys outside the directory")
		}
		if err := s.Delete(ctx, "top.txt"); err != nil || s.Exists(ctx, "top.txt") {
			t.Errorf("Delete(file): %v, exists %v", err, s.Exists(ctx, "top.txt"))
		}
		if err := s.Delete(ctx, "missing"); err != nil {
			t.Errorf("Delete(missing) = %v, want nil", err)
		}
	})

	t.Run("namespaced", func(t *testing.T) {
		other := NewRedisStorage(rdb, RedisStorageOptions{KeyPrefix: "u:"})
		if other.Exists(ctx, "certificates") {
			t.Error("a storage with another prefix sees these keys")
		}
		keys, err := rdb.Keys(ctx, "*").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, "t:") {
				t.Errorf("key %q outside the prefix", k)
			}
		}
	})
}

func TestRedisStorageLockExcludesUntilUnlock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb := redisClient(t)
	o := RedisStorageOptions{KeyPrefix: "t:", LockTTL: 300 * time.Millisecond, LockPoll: 20 * time.Millisecond}
	a, b := NewRedisStorage(rdb, o), NewRedisStorage(rdb, o) // two replicas

	if err := a.Lock(ctx, "issue_cert_gw"); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_gw"); ok || err != nil {
		t.Fatalf("TryLock while held = %v, %v; want false", ok, err)
	}
	if ok, err := b.TryLock(ctx, "issue_cert_other"); !ok || err != nil {
		t.Fatalf("TryLock of another name = %v, %v; want true", ok, err)
	}
	if err := b.Unlock(ctx, "issue_cert_other"); err != nil {
		t.Fatal(err)
	}

	got := make(chan error, 1)
	go func() { got <- b.Lock(ctx, "issue_cert_gw") }()
	// Three TTLs: the holder's renewals keep the lock well past its TTL.
	select {
	case err := <-got:
		t.Fatalf("second Lock returned while the first holder held it: %v", err)
	case <-time.After(3 * o.LockTTL):
	}
	if pttl := rdb.PTTL(ctx, "t:lock:issue_cert_gw").Val(); pttl <= 0 {
		t.Errorf("held lock's PTTL = %v, want renewed", pttl)
	}
	if err := a.Unlock(ctx, "issue_cert_gw"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("second Lock still waiting after Unlock")
	}
	if err := b.Unlock(ctx, "issue_cert_gw"); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, "t:lock:issue_cert_gw").Val(); n != 0 {
		t.Error("lock key left after the last Unlock")
	}
	if err := b.Unlock(ctx, "issue_cert_gw"); err == nil {
		t.Error("Unlock of a lock not held succeeded")
	}
}

func TestRedisStorageLockWaitEndsWithContext(t *testing.T) {
	t.Parallel()
	rdb := redisClient(t)
	o := RedisStorageOptions{LockPoll: 20 * time.Millisecond}
	a, b := NewRedisStorage(rdb, o), NewRedisStorage(rdb, o)
	if err := a.Lock(t.Context(), "n"); err != nil {
		t.Fatal(err)
	}
	defer a.Unlock(context.Background(), "n")
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := b.Lock(ctx, "n")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v, want the context's deadline", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Lock returned %v after its context ended", d)
	}
}

func TestRedisStorageLockOfVanishedHolderExpires(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb := redisClient(t)
	s := NewRedisStorage(rdb, RedisStorageOptions{KeyPrefix: "t:", LockPoll: 20 * time.Millisecond})
	// What a replica that died while ordering leaves behind: its token,
	// with the TTL it last renewed, and nobody renewing it.
	const ttl = 400 * time.Millisecond
	if err := rdb.Set(ctx, "t:lock:issue_cert_gw", "dead-replica", ttl).Err(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := s.Lock(ctx, "issue_cert_gw"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < ttl/2 || d > 5*time.Second {
		t.Errorf("Lock took %v, want about the stale lock's TTL %v", d, ttl)
	}
	if err := s.Unlock(ctx, "issue_cert_gw"); err != nil {
		t.Fatal(err)
	}
}

func TestRedisStorageUnlockNeverDeletesAnotherHoldersLock(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	rdb := redisClient(t)
	logs := &testutil.SyncBuffer{}
	s := NewRedisStorage(rdb, RedisStorageOptions{
		KeyPrefix: "t:",
		LockTTL:   300 * time.Millisecond,
		Log:       telemetry.NewLogger(logs, slog.LevelDebug),
	})
	if err := s.Lock(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	// Our lock expired (a long pause) and another replica took it.
	if err := rdb.Set(ctx, "t:lock:n", "other-replica", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	// The renewal notices on its next turn and stops.
	deadline := time.Now().Add(5 * time.Second)
	for logs.CountMsg("lock lost: it expired before it was renewed") == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("the renewal did not notice the lost lock:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := s.Unlock(ctx, "n"); err == nil || !strings.Contains(err.Error(), "expired") {
		t.Errorf("Unlock of a lost lock = %v, want an error saying it expired", err)
	}
	if v := rdb.Get(ctx, "t:lock:n").Val(); v != "other-replica" {
		t.Errorf("the other holder's lock is %q after our Unlock", v)
	}
	if ttl := rdb.PTTL(ctx, "t:lock:n").Val(); ttl < 30*time.Second {
		t.Errorf("the other holder's lock TTL is %v: our renewal touched it", ttl)
	}
}

package gateway

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/testsvc"
)

func digestOf(k string) string { s := sha256.Sum256([]byte(k)); return hex.EncodeToString(s[:]) }

// TestAPIKeysFromEverySource puts one key in each source (env, file, a real
// redis-server, a real PostgreSQL) and checks each through the gateway, then
// takes Redis down: key auth that needs it fails closed with 503 while JWT-
// free env keys keep working.
func TestAPIKeysFromEverySource(t *testing.T) {
	up, _ := serve(t, echoHandler("private"))
	redisAddr, stopRedis := testsvc.Redis(t)
	dsn := testsvc.Postgres(t)

	rdb := redis.NewClient(&redis.Options{Addr: redisAddr})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.HSet(ctx, "portcullis:apikeys", digestOf("redis-key"), "from-redis", digestOf("leaked-redis-key"), "leaked").Err(); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "keys")
	os.WriteFile(file, []byte("# operators\nfrom-file:"+digestOf("file-key")+"\nleaked:"+digestOf("leaked-file-key")+"\n"), 0o600)

	gw := start(t, map[string]string{
		"API_KEYS":              "env-key,leaked-env-key",
		"API_KEYS_FILE":         file,
		"API_KEYS_REDIS":        "true",
		"REDIS_ADDR":            redisAddr,
		"API_KEYS_DATABASE_URL": dsn,
		"SERVICE_ROUTES":        routes(`{"prefix":"/api","target_url":"` + up + `","require_auth":true}`),
	})
	// The gateway migrated the table at boot; add a key and a revoked one.
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `INSERT INTO api_keys (name, key_sha256) VALUES ('from-pg', $1), ('old', $2)`, digestOf("pg-key"), digestOf("revoked-key")); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `UPDATE api_keys SET revoked_at = now() - interval '1 minute' WHERE name = 'old'`); err != nil {
		t.Fatal(err)
	}
	// Leaked keys revoked in PostgreSQL, while an old copy lingers in
	// API_KEYS, the key file and Redis: the revocation wins.
	for _, k := range []string{"leaked-env-key", "leaked-file-key", "leaked-redis-key"} {
		if _, err := conn.Exec(ctx, `INSERT INTO api_keys (name, key_sha256, revoked_at) VALUES ('leaked', $1, now() - interval '1 minute')`, digestOf(k)); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		key, user string
		status    int
	}{
		{key: "env-key", user: "key:" + digestOf("env-key")[:12], status: 200},
		{key: "file-key", user: "from-file", status: 200},
		{key: "redis-key", user: "from-redis", status: 200},
		{key: "pg-key", user: "from-pg", status: 200},
		{key: "revoked-key", status: 401},
		{key: "leaked-env-key", status: 401},
		{key: "leaked-file-key", status: 401},
		{key: "leaked-redis-key", status: 401},
		{key: "guess", status: 401},
	}
	for _, tc := range tests {
		resp, body := get(t, gw.URL+"/api/x", "X-API-Key", tc.key)
		if resp.StatusCode != tc.status {
			t.Errorf("key %s: %d, want %d: %s", tc.key, resp.StatusCode, tc.status, body)
			continue
		}
		if tc.status == 200 {
			e := decodeEcho(t, body)
			if e.Header.Get("X-User-Id") != tc.user || e.Header.Get("X-Auth-Method") != "api-key" || e.Header.Get("X-Api-Key") != "" {
				t.Errorf("key %s: upstream saw user %q method %q key %q", tc.key, e.Header.Get("X-User-Id"), e.Header.Get("X-Auth-Method"), e.Header.Get("X-Api-Key"))
			}
		}
	}

	// Redis goes away mid-run: an unknown key can no longer be ruled out,
	// so key auth fails closed (503), quickly; local keys still work.
	stopRedis()
	t0 := time.Now()
	resp, _ := get(t, gw.URL+"/api/x", "X-API-Key", "never-seen-key")
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("key lookup with Redis down: %d, want 503", resp.StatusCode)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Errorf("a lookup with Redis down took %v", d)
	}
	if resp, _ := get(t, gw.URL+"/api/x", "X-API-Key", "env-key"); resp.StatusCode != 200 {
		t.Errorf("env key with Redis down: %d", resp.StatusCode)
	}
	_, m := get(t, gw.OpsURL+"/metrics")
	if !strings.Contains(string(m), `auth_failures_total{reason="store_error"} 1`) || !strings.Contains(string(m), `auth_failures_total{reason="revoked"} 4`) {
		t.Errorf("auth_failures_total does not count store_error and revoked")
	}
	if strings.Contains(gw.Logs.String(), "redis-key") || strings.Contains(gw.Logs.String(), digestOf("pg-key")) {
		t.Error("key material in the logs")
	}
}

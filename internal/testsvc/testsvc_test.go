package testsvc

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestRedisStartsAndStops(t *testing.T) {
	t.Parallel()
	addr, stop := Redis(t)
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("addr = %q, want 127.0.0.1:port", addr)
	}
	if err := pingRedis(addr); err != nil {
		t.Fatalf("PING after start: %v", err)
	}
	stop()
	stop() // twice is fine
	if err := pingRedis(addr); err == nil {
		t.Fatal("PING answered after stop")
	}
}

func TestRedisInstancesArePrivate(t *testing.T) {
	t.Parallel()
	a, _ := Redis(t)
	b, _ := Redis(t)
	if a == b {
		t.Fatalf("two Redis calls returned the same address %s", a)
	}
}

func TestPostgresThrowawayDatabase(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dsn := Postgres(t)
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var db string
	if err := conn.QueryRow(ctx, "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	// A private cluster (no local server) hands out its "postgres" database.
	if !strings.HasPrefix(db, "pctest_") && db != "postgres" {
		t.Fatalf("current_database() = %q, want pctest_<random>", db)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (x int)"); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresFallsBackToPrivateCluster(t *testing.T) {
	t.Parallel()
	// Port 1 on loopback refuses connections: no "machine's server".
	dsn := postgres(t, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pingPostgres(ctx, dsn); err != nil {
		t.Fatalf("private cluster %s: %v", dsn, err)
	}
	if strings.Contains(dsn, ":1/") || strings.Contains(dsn, ":5432/") {
		t.Fatalf("dsn %q is not a private cluster's", dsn)
	}
}

func TestPostgresFromEnv(t *testing.T) {
	// Not parallel: t.Setenv. The variable points at a private cluster, so the
	// test does not depend on the machine's server.
	admin, _ := PostgresServer(t)
	t.Setenv(PGEnv, admin)
	dsn := Postgres(t)
	if !strings.Contains(dsn, "/pctest_") || !strings.HasPrefix(dsn, strings.TrimSuffix(admin, "/postgres?sslmode=disable")) {
		t.Fatalf("dsn %q: want a pctest_ database on %s", dsn, admin)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pingPostgres(ctx, dsn); err != nil {
		t.Fatal(err)
	}
}

func TestPostgresServerPrivateCluster(t *testing.T) {
	t.Parallel()
	dsn, stop := PostgresServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := pingPostgres(ctx, dsn); err != nil {
		t.Fatalf("ping: %v", err)
	}
	stop()
	stop()
	if err := pingPostgres(ctx, dsn); err == nil {
		t.Fatal("server still answers after stop")
	}
}

func TestWithDatabase(t *testing.T) {
	tests := []struct {
		name, dsn, want string
	}{
		{name: "url", dsn: "postgres://u@h:5432/postgres?sslmode=disable", want: "postgres://u@h:5432/db1?sslmode=disable"},
		{name: "url no path", dsn: "postgresql://u@h", want: "postgresql://u@h/db1"},
		{name: "keyword", dsn: "host=h user=u dbname=postgres", want: "host=h user=u dbname=postgres dbname=db1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := withDatabase(tt.dsn, "db1")
			if err != nil || got != tt.want {
				t.Fatalf("withDatabase(%q) = %q, %v; want %q", tt.dsn, got, err, tt.want)
			}
			cfg, err := pgx.ParseConfig(got)
			if err != nil {
				t.Fatalf("pgx.ParseConfig(%q): %v", got, err)
			}
			if cfg.Database != "db1" {
				t.Fatalf("pgx.ParseConfig(%q): database %q, want db1", got, cfg.Database)
			}
		})
	}
}

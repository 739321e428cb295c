package testsvc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// PGEnv names the variable holding a DSN of a PostgreSQL server tests may
// create throwaway databases on (a superuser, or a role with CREATEDB).
const PGEnv = "PORTCULLIS_TEST_PG"

// localPG is the machine's own server, tried when PGEnv is unset (Debian's
// postgresql package with trust auth for local TCP, as on CI machines).
const localPG = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable&connect_timeout=3"

// pgBinGlob is where Debian installs the server binaries (not in PATH).
const pgBinGlob = "/usr/lib/postgresql/*/bin"

// Postgres returns a DSN to a fresh throwaway database. It uses the server at
// $PORTCULLIS_TEST_PG, or 127.0.0.1:5432 (user postgres, trust) when that
// answers, creating database "pctest_<random>" and dropping it in t.Cleanup
// (close your pools first: Cleanup runs last-registered first, and the drop
// uses WITH (FORCE) anyway). Otherwise it starts a private cluster with
// PostgresServer. If PORTCULLIS_TEST_PG is set but unusable, or neither way
// works, the test fails with the reason.
func Postgres(t testing.TB) (dsn string) {
	t.Helper()
	return postgres(t, localPG)
}

// postgres is Postgres with the machine's server at local.
func postgres(t testing.TB, local string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if admin := os.Getenv(PGEnv); admin != "" {
		dsn, err := createDatabase(ctx, t, admin)
		if err != nil {
			fatalf(t, "%s (%s) is set but unusable: %v", PGEnv, redactDSN(admin), err)
		}
		return dsn
	}
	dsn, err := createDatabase(ctx, t, local)
	if err == nil {
		return dsn
	}
	t.Logf("testsvc: no usable PostgreSQL at %s (%v); starting a private cluster", redactDSN(local), err)
	dsn, _ = PostgresServer(t)
	return dsn
}

// createDatabase creates pctest_<random> through adminDSN, registers its drop
// in t.Cleanup, and returns adminDSN pointed at the new database.
func createDatabase(ctx context.Context, t testing.TB, adminDSN string) (string, error) {
	name := "pctest_" + randomSuffix(8)
	dsn, err := withDatabase(adminDSN, name)
	if err != nil {
		return "", err
	}
	conn, err := pgx.Connect(ctx, adminDSN)
	if err != nil {
		return "", err
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("creating database %s: %w", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, adminDSN)
		if err != nil {
			t.Errorf("testsvc: dropping database %s: %v", name, err)
			return
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("testsvc: dropping database %s: %v", name, err)
		}
	})
	return dsn, nil
}

// withDatabase returns dsn (URL or keyword/value form) with its database
// replaced by name.
func withDatabase(dsn, name string) (string, error) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", fmt.Errorf("parsing DSN: %w", err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// Keyword/value form: a later keyword overrides an earlier one.
	return dsn + " dbname=" + name, nil
}

// redactDSN drops a URL DSN's password for log lines.
func redactDSN(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.Scheme != "" {
		return u.Redacted()
	}
	return "the configured server"
}

// PostgresServer starts a private PostgreSQL cluster (initdb + pg_ctl) in its
// own temp dir on an ephemeral 127.0.0.1 port, with trust auth for user
// postgres and durability off (fsync=off), and stops it in t.Cleanup. It
// returns a DSN for database "postgres" and a stop function a test may call to
// simulate an outage (an immediate shutdown); calling stop twice is fine.
// PostgreSQL refuses to run as root: as uid 0 it runs the tools through
// `runuser -u postgres --` with the temp dir owned by postgres.
func PostgresServer(t testing.TB) (dsn string, stop func()) {
	t.Helper()
	initdb, err := findBinary("initdb", pgBinGlob)
	if err != nil {
		fatalf(t, "%v", err)
	}
	pgctl, err := findBinary("pg_ctl", pgBinGlob)
	if err != nil {
		fatalf(t, "%v", err)
	}
	var prefix []string // the command prefix that drops root
	dir, err := os.MkdirTemp("", "pctest-pg-")
	if err != nil {
		fatalf(t, "%v", err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if os.Geteuid() == 0 {
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			fatalf(t, "running as root needs runuser (util-linux) to start PostgreSQL as user postgres: %v", err)
		}
		pgUser, err := user.Lookup("postgres")
		if err != nil {
			fatalf(t, "running as root needs a 'postgres' user to start PostgreSQL (%v): %s", err, installHint)
		}
		uid, _ := strconv.Atoi(pgUser.Uid)
		gid, _ := strconv.Atoi(pgUser.Gid)
		if err := os.Chown(dir, uid, gid); err != nil {
			fatalf(t, "%v", err)
		}
		prefix = []string{runuser, "-u", "postgres", "--"}
	}
	run := func(args ...string) (string, error) {
		all := append(append([]string{}, prefix...), args...)
		cmd := exec.Command(all[0], all[1:]...)
		cmd.Dir = dir // readable by postgres, unlike the test's own cwd
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	data := filepath.Join(dir, "data")
	if out, err := run(initdb, "-D", data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--no-locale", "--no-sync"); err != nil {
		fatalf(t, "initdb: %v: %s", err, tail(out, 2000))
	}
	logFile := filepath.Join(dir, "server.log")
	var port int
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if port, err = freePort(); err != nil {
			fatalf(t, "%v", err)
		}
		opts := strings.Join([]string{
			"-p", strconv.Itoa(port),
			"-c", "listen_addresses=127.0.0.1",
			"-c", "unix_socket_directories=" + dir,
			"-c", "fsync=off",
			"-c", "synchronous_commit=off",
			"-c", "full_page_writes=off",
			"-c", "shared_buffers=16MB",
			"-c", "max_connections=100",
		}, " ")
		out, err := run(pgctl, "-D", data, "-l", logFile, "-w", "-t", strconv.Itoa(int(startTimeout/time.Second)), "-o", opts, "start")
		if err == nil {
			lastErr = nil
			break
		}
		serverLog, _ := os.ReadFile(logFile)
		lastErr = fmt.Errorf("pg_ctl start: %v: %s %s", err, out, tail(string(serverLog), 2000))
		if !strings.Contains(string(serverLog), "already in use") {
			break
		}
	}
	if lastErr != nil {
		fatalf(t, "%v", lastErr)
	}

	var once sync.Once
	stop = func() {
		once.Do(func() {
			if out, err := run(pgctl, "-D", data, "-m", "immediate", "-w", "stop"); err != nil {
				t.Logf("testsvc: pg_ctl stop: %v: %s", err, out)
			}
		})
	}
	t.Cleanup(stop)

	dsn = "postgres://postgres@" + net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) + "/postgres?sslmode=disable"
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	if err := pingPostgres(ctx, dsn); err != nil {
		fatalf(t, "private PostgreSQL on port %d does not answer: %v", port, err)
	}
	return dsn, stop
}

// pingPostgres connects once and runs SELECT 1.
func pingPostgres(ctx context.Context, dsn string) error {
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	var one int
	if err := conn.QueryRow(ctx, "SELECT 1").Scan(&one); err != nil {
		return err
	}
	if one != 1 {
		return errors.New("SELECT 1 did not return 1")
	}
	return nil
}

package e2e

import (
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

const adminToken = "e2e-admin-token-0123456789abcdef"

// waitLog waits until the gateway's stdout holds a line with every one of
// parts, and returns that line.
func (p *proc) waitLog(t *testing.T, within time.Duration, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		for _, line := range strings.Split(p.logs(), "\n") {
			ok := true
			for _, s := range parts {
				ok = ok && strings.Contains(line, s)
			}
			if ok {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line with %q within %v", parts, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countLog(p *proc, parts ...string) int {
	n := 0
	for _, line := range strings.Split(p.logs(), "\n") {
		ok := true
		for _, s := range parts {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

// TestSIGHUPReloadsConfigFile sends SIGHUP to the real binary: the file is
// read again and applied, an invalid one is refused with the old routes
// still serving and config_reload_success 0, and the signal never kills
// the process (its default action would).
func TestSIGHUPReloadsConfigFile(t *testing.T) {
	a := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	b := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "b") })
	path := filepath.Join(t.TempDir(), "gateway.yaml")
	write := func(content string) {
		t.Helper()
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("routes:\n  - {prefix: /one, target_url: '" + a + "'}\n")
	p := startGateway(t, "CONFIG_FILE="+path, "ADMIN_TOKEN="+adminToken)
	if code, body := get(t, p.url("/one/x")); code != 200 || body != "a" {
		t.Fatalf("boot route: %d %q", code, body)
	}
	hup := func() {
		t.Helper()
		if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}

	// SIGHUP with the file unchanged: a reload, and the process lives.
	hup()
	p.waitLog(t, 5*time.Second, `"msg":"configuration reloaded"`, `"trigger":"SIGHUP"`)

	// An invalid file: refused, logged with its problem, old routes serve.
	write("routes:\n  - {prefix: /two, target_url: '" + b + "', colour: red}\n")
	hup()
	line := p.waitLog(t, 5*time.Second, `"msg":"configuration refused; the previous one keeps serving"`, `"trigger":"SIGHUP"`)
	if !strings.Contains(line, `CONFIG_FILE.routes[0]: unknown field \"colour\"`) || !strings.Contains(line, `"component":"config"`) {
		t.Errorf("refusal line: %s", line)
	}
	if code, body := get(t, p.url("/one/x")); code != 200 || body != "a" {
		t.Errorf("old route after a refused file: %d %q", code, body)
	}
	if code, body := get(t, p.opsURL("/metrics")); code != 200 || !strings.Contains(body, "\nconfig_reload_success 0\n") {
		t.Errorf("config_reload_success after a refused file:\n%s", body)
	}

	// A valid new file.
	write("routes:\n  - {prefix: /two, target_url: '" + b + "'}\n")
	hup()
	p.waitLog(t, 5*time.Second, `"msg":"configuration reloaded"`, `"trigger":"SIGHUP"`, `"added":["/two"]`)
	if code, body := get(t, p.url("/two/x")); code != 200 || body != "b" {
		t.Errorf("new route: %d %q", code, body)
	}
	if code, _ := get(t, p.url("/one/x")); code != 404 {
		t.Errorf("removed route: %d", code)
	}
	if code, body := get(t, p.opsURL("/metrics")); !strings.Contains(body, "\nconfig_reload_success 1\n") {
		t.Errorf("config_reload_success after a good reload (%d):\n%s", code, body)
	}
	if n := countLog(p, `"trigger":"SIGHUP"`, `"msg":"configuration `); n != 3 {
		t.Errorf("%d SIGHUP reload lines, want 3", n)
	}

	// Still a healthy process that stops cleanly.
	p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d after SIGTERM", code)
	}
}

// TestSIGHUPWithoutConfigFileIsHarmless pins that SIGHUP never kills a
// gateway that has no file to reload.
func TestSIGHUPWithoutConfigFileIsHarmless(t *testing.T) {
	a := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "a") })
	p := startGateway(t, `SERVICE_ROUTES=[{"prefix":"/one","target_url":"`+a+`"}]`)
	p.cmd.Process.Signal(syscall.SIGHUP)
	p.waitLog(t, 5*time.Second, `"msg":"SIGHUP ignored: CONFIG_FILE is not set`)
	if code, body := get(t, p.url("/one/x")); code != 200 || body != "a" {
		t.Errorf("after SIGHUP: %d %q", code, body)
	}
}

// TestInvalidConfigFileStopsBoot pins that a bad CONFIG_FILE stops the
// boot with one line naming CONFIG_FILE, and that validate reads the file.
func TestInvalidConfigFileStopsBoot(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("routes:\n  - {prefix: /a, target_url: 'http://127.0.0.1:1', colour: red}\n"), 0o600)
	good := filepath.Join(dir, "good.json")
	os.WriteFile(good, []byte(`{"routes":[{"prefix":"/a","target_url":"http://127.0.0.1:1"}]}`), 0o600)
	for _, tc := range []struct {
		name, file, want string
	}{
		{name: "unknown member", file: bad, want: `config: CONFIG_FILE.routes[0]: unknown field "colour"`},
		{name: "missing file", file: filepath.Join(dir, "absent.yaml"), want: "config: CONFIG_FILE: open " + filepath.Join(dir, "absent.yaml")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runOnce(t, t.TempDir(), []string{"CONFIG_FILE=" + tc.file, "GATEWAY_PORT=127.0.0.1:0", "DASHBOARD=off"})
			lines := strings.Split(strings.TrimSpace(stderr), "\n")
			if code != 2 || len(lines) != 1 || !strings.HasPrefix(lines[0], tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant one line starting with %q", code, stderr, tc.want)
			}
		})
	}
	code, stdout, stderr := runOnce(t, t.TempDir(), []string{"CONFIG_FILE=" + good}, "validate")
	if code != 0 || !strings.Contains(stdout, "1 routes (CONFIG_FILE)") {
		t.Errorf("validate: exit %d\n%s%s", code, stdout, stderr)
	}
}

// TestSIGHUPDuringBootIsNotFatal: a SIGHUP that arrives while the gateway
// is still booting (here: waiting up to 5 s to migrate a PostgreSQL key
// store that accepts and never answers) must not kill it, as SIGHUP's
// default action would.
func TestSIGHUPDuringBootIsNotFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept and stay silent
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	p := launch(t, "API_KEYS_DATABASE_URL=postgres://u:p@"+ln.Addr().String()+"/keys?sslmode=disable")
	time.Sleep(time.Second) // inside the boot's wait for PostgreSQL
	select {
	case <-p.exited:
		t.Fatal("the gateway exited before the signal")
	default:
	}
	if p.addr != "" {
		t.Fatal("the boot was over before the signal: the test proves nothing")
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	p.waitListening(t, 10*time.Second)
	if code, _ := get(t, p.url("/livez")); code != 200 {
		t.Fatalf("/livez %d after a SIGHUP during boot", code)
	}
}

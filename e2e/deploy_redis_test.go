package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestRedisEvictionKeepsSharedState runs a real redis-server with the
// eviction policy of each deployment (Kubernetes and Compose), fills it
// past maxmemory with what a public client can make the gateway write
// (cache entries, which carry a TTL), and checks that the keys without a
// TTL survive: the cluster's allow/deny lists and the API_KEYS_REDIS hash.
// With allkeys-*, a client requesting many distinct cacheable URLs evicts
// the deny list, and the next list change leaves every replica with an
// (almost) empty one.
func TestRedisEvictionKeepsSharedState(t *testing.T) {
	k8s := deployRead(t, "deploy/k8s/redis.yaml")
	compose := deployRead(t, "docker-compose.yml")
	// As a redis.conf line (Kubernetes's ConfigMap, Compose's stdin) or an
	// argument.
	policy := regexp.MustCompile(`maxmemory-policy[\s"-]*([a-z][a-z-]+)`)
	for name, src := range map[string]string{"deploy/k8s/redis.yaml": k8s, "docker-compose.yml": compose} {
		t.Run(name, func(t *testing.T) {
			m := policy.FindStringSubmatch(src)
			if m == nil {
				t.Fatalf("%s sets no --maxmemory-policy (Redis's default noeviction fails cache writes once full, which is fine, but say so)", name)
			}
			c := startRedis(t, "--maxmemory", "2mb", "--maxmemory-policy", m[1])
			c.do(t, "SADD", "portcullis:list:deny", "203.0.113.0/24")
			c.do(t, "HSET", "portcullis:apikeys", "abcdef", "alice")
			value := strings.Repeat("x", 8<<10)
			for i := range 2000 { // ~16 MiB of cache entries into 2 MiB
				c.do(t, "SET", "portcullis:cache:"+strconv.Itoa(i), value, "PX", "300000")
			}
			for _, k := range []string{"portcullis:list:deny", "portcullis:apikeys"} {
				if got := c.do(t, "EXISTS", k); got != "1" {
					t.Errorf("maxmemory-policy %s evicted %s once the cache filled Redis", m[1], k)
				}
			}
		})
	}
}

type redisConn struct {
	conn net.Conn
	r    *bufio.Reader
}

// startRedis runs redis-server on a free loopback port, without persistence.
func startRedis(t *testing.T, args ...string) *redisConn {
	t.Helper()
	port := deployFreePort(t)
	all := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", t.TempDir()}, args...)
	cmd := exec.Command(deployLookPath(t, "redis-server"), all...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return dialRedis(t, port, nil)
}

// dialRedis connects to the redis on a loopback port, waiting for it to
// listen; exited, when closed, reports that the server died first.
func dialRedis(t *testing.T, port int, exited <-chan struct{}) *redisConn {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		conn, err := net.Dial("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err == nil {
			t.Cleanup(func() { conn.Close() })
			return &redisConn{conn: conn, r: bufio.NewReader(conn)}
		}
		select {
		case <-exited:
			t.Fatalf("redis exited before listening on %d", port)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("redis-server did not listen: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startRedisCommand runs a deployment's own Redis command line (argv, with
// only paths and the port moved to the test's) and waits for it to listen
// on port. It returns a connection and the process's pid.
func startRedisCommand(t *testing.T, argv, env []string, port int) (*redisConn, int) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = t.TempDir()
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH")}, env...)
	var out deploySyncBuf
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("redis output:\n%s", out.String())
		}
	})
	return dialRedis(t, port, exited), cmd.Process.Pid
}

// checkRedisPassword asserts that the redis at c refuses commands until
// AUTH with password, and that the process's command line (what `ps`
// shows) is redis-server's own, without the password.
func checkRedisPassword(t *testing.T, c *redisConn, pid int, password string) {
	t.Helper()
	if got := c.raw(t, "PING"); !strings.HasPrefix(got, "-NOAUTH") {
		t.Errorf("PING before AUTH: %q, want NOAUTH", got)
	}
	if got := c.raw(t, "AUTH", "not-"+password); !strings.HasPrefix(got, "-WRONGPASS") {
		t.Errorf("AUTH with a wrong password: %q", got)
	}
	if got := c.do(t, "AUTH", password); got != "OK" {
		t.Errorf("AUTH with the Secret's password: %q", got)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(cmdline), "redis-server") {
		t.Errorf("pid %d runs %q: the shell did not exec redis-server (it would not get SIGTERM)", pid, cmdline)
	}
	if strings.Contains(string(cmdline), password) {
		t.Errorf("the password is on redis-server's command line: %q", cmdline)
	}
}

// do sends one command and returns a simple, integer or bulk reply as text;
// an error reply fails the test, except OOM.
func (c *redisConn) do(t *testing.T, args ...string) string {
	t.Helper()
	r := c.raw(t, args...)
	if strings.HasPrefix(r, "-") {
		// OOM once nothing may be evicted: the cache write fails, the
		// gateway counts a cache error and serves on.
		if strings.HasPrefix(r, "-OOM") {
			return "OOM"
		}
		t.Fatalf("%v: %s", args, r)
	}
	return r
}

// raw is do, returning an error reply as its "-..." line.
func (c *redisConn) raw(t *testing.T, args ...string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := c.conn.Write([]byte(b.String())); err != nil {
		t.Fatal(err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	line = strings.TrimRight(line, "\r\n")
	switch line[0] {
	case '+', ':':
		return line[1:]
	case '-':
		return line
	case '$':
		n, _ := strconv.Atoi(line[1:])
		if n < 0 {
			return ""
		}
		buf := make([]byte, n+2)
		if _, err := io.ReadFull(c.r, buf); err != nil {
			t.Fatal(err)
		}
		return string(buf[:n])
	}
	t.Fatalf("%v: unexpected reply %q", args, line)
	return ""
}

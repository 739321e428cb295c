package testsvc

import (
	"bufio"
	"fmt"
	"github.com/portcullis/portcullis/internal/testutil"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// startTimeout bounds how long a service may take to answer after its start.
const startTimeout = 15 * time.Second

// Redis starts a private redis-server on an ephemeral 127.0.0.1 port (no
// persistence: --save "" --appendonly no, its own temp dir), waits until it
// answers PING, and stops it in t.Cleanup. It returns "127.0.0.1:port" and a
// stop function a test may call to simulate an outage mid-run; calling stop
// more than once is fine. If redis-server is not installed the test fails
// with a hint to run scripts/test-deps.sh (it never skips).
func Redis(t testing.TB) (addr string, stop func()) {
	t.Helper()
	bin, err := findBinary("redis-server")
	if err != nil {
		fatalf(t, "%v", err)
	}
	dir := t.TempDir()
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		addr, stop, err := startRedis(bin, dir)
		if err == nil {
			t.Cleanup(stop)
			return addr, stop
		}
		lastErr = err
	}
	fatalf(t, "starting redis-server: %v", lastErr)
	return "", nil
}

// startRedis makes one attempt on a fresh port; a lost race for the port
// shows as an early exit and the caller retries.
func startRedis(bin, dir string) (string, func(), error) {
	port, err := freePort()
	if err != nil {
		return "", nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no",
		"--protected-mode", "no",
		"--logfile", "",
	)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return "", nil, err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()

	var once sync.Once
	stop := func() {
		once.Do(func() {
			_ = cmd.Process.Signal(os.Kill)
			<-exited
		})
	}

	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return "", nil, fmt.Errorf("redis-server exited at start: %s", tail(out.String(), 2000))
		default:
		}
		if pingRedis(addr) == nil {
			return addr, stop, nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	stop()
	return "", nil, fmt.Errorf("redis-server did not answer PING on %s within %v: %s", addr, startTimeout, tail(out.String(), 2000))
}

// pingRedis sends an inline PING and expects +PONG.
func pingRedis(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	return nil
}

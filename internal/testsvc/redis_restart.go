package testsvc

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// RedisServer is a private redis-server a test can stop and start again on
// the same address, to play an outage and a recovery (Redis restarted
// without persistence comes back empty, as a real one configured like this
// would).
type RedisServer struct {
	Addr string

	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
}

// RestartableRedis starts a redis-server like Redis does and returns it;
// it is stopped in t.Cleanup.
func RestartableRedis(t testing.TB) *RedisServer {
	t.Helper()
	bin, err := findBinary("redis-server")
	if err != nil {
		fatalf(t, "%v", err)
	}
	s := &RedisServer{t: t, bin: bin, dir: t.TempDir()}
	var lastErr error
	for attempt := 0; attempt < 5; attempt++ {
		if s.port, err = freePort(); err != nil {
			fatalf(t, "%v", err)
		}
		if lastErr = s.start(); lastErr == nil {
			s.Addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
			t.Cleanup(s.Stop)
			return s
		}
	}
	fatalf(t, "starting redis-server: %v", lastErr)
	return nil
}

// Stop kills the server (SIGKILL: an outage, not a shutdown) and waits for
// it to exit. Stopping a stopped server is fine.
func (s *RedisServer) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Signal(os.Kill)
	<-s.exited
	s.cmd = nil
}

// Start starts the server again on the same address, empty. It fails the
// test if the port cannot be bound within a few seconds.
func (s *RedisServer) Start() {
	s.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := s.start()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			fatalf(s.t, "restarting redis-server on %s: %v", s.Addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (s *RedisServer) start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return nil
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(s.bin,
		"--port", strconv.Itoa(s.port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", s.dir,
		"--daemonize", "no", "--protected-mode", "no", "--logfile", "")
	cmd.Dir = s.dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	deadline := time.Now().Add(startTimeout)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited at start: %s", tail(out.String(), 2000))
		default:
		}
		if pingRedis(addr) == nil {
			s.cmd, s.exited = cmd, exited
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	_ = cmd.Process.Signal(os.Kill)
	<-exited
	return fmt.Errorf("redis-server did not answer PING on %s within %v: %s", addr, startTimeout, tail(out.String(), 2000))
}

package acme

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/testutil"
)

// replicaEnv, set to a replicaConfig in JSON, makes the test binary run as
// another gateway replica instead of the tests. A replica needs a process of
// its own: certmagic keeps the challenges it presents in process-wide
// memory, so a second Manager in the test's process would answer from that
// memory and never prove that a replica answers, from Redis, a challenge
// another one started.
const replicaEnv = "PORTCULLIS_ACME_TEST_REPLICA"

// replicaConfig is what a replica process needs to manage one domain.
type replicaConfig struct {
	Domain, CA, CARoot, Redis, KeyPrefix string
	TLSPort                              int
}

func TestMain(m *testing.M) {
	if c := os.Getenv(replicaEnv); c != "" {
		os.Exit(runReplica(c))
	}
	os.Exit(m.Run())
}

// runReplica serves HTTPS on an ephemeral loopback port with a Manager
// storing in Redis, prints "listening ADDR", starts managing when a line
// arrives on stdin and exits when stdin closes. Its log goes to stderr.
func runReplica(cfgJSON string) int {
	var c replicaConfig
	if err := json.Unmarshal([]byte(cfgJSON), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: c.Redis})
	defer rdb.Close()
	m, err := New(ctx, Options{
		Domains:              []string{c.Domain},
		CA:                   c.CA,
		CARoot:               c.CARoot,
		Redis:                rdb,
		KeyPrefix:            c.KeyPrefix,
		TLSPort:              c.TLSPort,
		ListenHost:           "127.0.0.1",
		DisableHTTPChallenge: true,
		Log:                  telemetry.NewLogger(os.Stderr, slog.LevelDebug),
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srv := &http.Server{Handler: http.NotFoundHandler(), TLSConfig: m.TLSConfig(), ErrorLog: discardLog}
	go srv.ServeTLS(ln, "", "")
	defer srv.Close()
	fmt.Printf("listening %s\n", ln.Addr())
	in := bufio.NewReader(os.Stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return 0
	}
	if err := m.Manage(ctx); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_, _ = io.Copy(io.Discard, in) // until the test closes stdin
	return 0
}

// replicaProcess is a running replica.
type replicaProcess struct {
	addr  string
	logs  *testutil.SyncBuffer
	start func() // tells it to start managing
}

// startReplica starts the test binary as a replica and waits until it
// listens; it stops in t.Cleanup.
func startReplica(t *testing.T, c replicaConfig) *replicaProcess {
	t.Helper()
	cfg, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), replicaEnv+"="+string(cfg))
	logs := &testutil.SyncBuffer{}
	cmd.Stderr = logs
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		addr, ok := strings.CutPrefix(strings.TrimSpace(s), "listening ")
		if !ok {
			t.Fatalf("replica did not start: %q\n%s", s, logs.String())
		}
		return &replicaProcess{addr: addr, logs: logs, start: func() { io.WriteString(stdin, "go\n") }}
	case <-time.After(issueTimeout):
		t.Fatalf("replica did not start within %v:\n%s", issueTimeout, logs.String())
		return nil
	}
}

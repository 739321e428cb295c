package testsvc

import (
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/testutil"
)

// jaegerBinary is where scripts/build-jaeger.sh caches Jaeger v1.76.0.
func jaegerBinary() string {
	if p := os.Getenv("PORTCULLIS_JAEGER"); p != "" {
		return p
	}
	return filepath.Join(toolsCache(), "jaeger-v1.76.0", "jaeger")
}

// toolsCache is where the scripts/build-*.sh scripts cache the test tools
// they build: $PORTCULLIS_TOOLS_CACHE, else ~/.cache/portcullis.
func toolsCache() string {
	if cache := os.Getenv("PORTCULLIS_TOOLS_CACHE"); cache != "" {
		return cache
	}
	base := os.Getenv("XDG_CACHE_HOME")
	if base == "" {
		home, _ := os.UserHomeDir()
		base = filepath.Join(home, ".cache")
	}
	return filepath.Join(base, "portcullis")
}

const jaegerConfig = `service:
  extensions: [jaeger_storage, jaeger_query]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    metrics:
      level: none
    logs:
      level: warn
extensions:
  jaeger_query:
    storage:
      traces: mem
    http:
      endpoint: 127.0.0.1:%d
    grpc:
      endpoint: 127.0.0.1:%d
  jaeger_storage:
    backends:
      mem:
        memory:
          max_traces: 10000
receivers:
  otlp:
    protocols:
      http:
        endpoint: 127.0.0.1:%d
      grpc:
        endpoint: 127.0.0.1:%d
processors:
  batch:
    timeout: 100ms
exporters:
  jaeger_storage_exporter:
    trace_storage: mem
`

// Jaeger starts a private Jaeger (in-memory storage; OTLP/HTTP and the query
// API on ephemeral loopback ports, nothing else) and stops it in Cleanup.
// It returns the OTLP/HTTP and OTLP/gRPC base URLs and the query API base URL. The binary comes
// from scripts/build-jaeger.sh (run by scripts/test-deps.sh).
func Jaeger(t testing.TB) (otlpURL, otlpGRPCURL, queryURL string) {
	t.Helper()
	bin := jaegerBinary()
	if _, err := os.Stat(bin); err != nil {
		fatalf(t, "Jaeger not built at %s: run scripts/test-deps.sh (it runs scripts/build-jaeger.sh)", bin)
	}
	ports := make([]int, 4)
	for i := range ports {
		p, err := freePort()
		if err != nil {
			fatalf(t, "jaeger: %v", err)
		}
		ports[i] = p
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jaeger.yaml")
	if err := os.WriteFile(cfg, fmt.Appendf(nil, jaegerConfig, ports[0], ports[1], ports[2], ports[3]), 0o600); err != nil {
		fatalf(t, "jaeger: %v", err)
	}
	out := &testutil.SyncBuffer{}
	cmd := exec.Command(bin, "--config", "file:"+cfg)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		fatalf(t, "jaeger: %v", err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	queryURL = fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	otlpURL = fmt.Sprintf("http://127.0.0.1:%d", ports[2])
	otlpGRPCURL = fmt.Sprintf("http://127.0.0.1:%d", ports[3])
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(queryURL + "/api/services")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return otlpURL, otlpGRPCURL, queryURL
			}
		}
		if time.Now().After(deadline) {
			fatalf(t, "jaeger did not come up: %s", tail(out.String(), 2000))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

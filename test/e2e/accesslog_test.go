package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// logLines decodes the gateway's stdout so far, one JSON object a line.
func (p *proc) logLines(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(strings.NewReader(p.logs()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("stdout line is not JSON: %q", sc.Text())
		}
		out = append(out, m)
	}
	return out
}

// TestAccessLogRejectionsLoggedAtInfo: at the default LOG_LEVEL, failed
// logins, deny-list hits, unknown paths and rate-limited requests each leave
// an access line, the audit trail of what the gateway refused.
func TestAccessLogRejectionsLoggedAtInfo(t *testing.T) {
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	p := startGateway(t,
		"TRUSTED_PROXIES=127.0.0.1/32", // the test names its clients by X-Forwarded-For
		"IP_BLACKLIST=198.51.100.3",
		"MAX_REQUESTS_PER_SECOND=1", "MAX_BURST_SIZE=1",
		"JWT_SECRET=0123456789abcdef0123456789abcdef-e2e",
		`SERVICE_ROUTES=[{"prefix":"/open","target_url":"`+up+`"},{"prefix":"/private","target_url":"`+up+`","require_auth":true}]`)

	do := func(path, from, id string) int {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, p.url(path), nil)
		req.Header.Set("X-Forwarded-For", from)
		req.Header.Set("X-Request-ID", id)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	want := map[string]int{} // request ID → status
	for _, c := range []struct {
		path, client, id string
		status           int
	}{
		{"/private/me", "198.51.100.1", "e2e-401", http.StatusUnauthorized},
		{"/open/x", "198.51.100.3", "e2e-403", http.StatusForbidden},
		{"/nowhere", "198.51.100.4", "e2e-404", http.StatusNotFound},
	} {
		if got := do(c.path, c.client, c.id); got != c.status {
			t.Fatalf("GET %s from %s = %d, want %d", c.path, c.client, got, c.status)
		}
		want[c.id] = c.status
	}
	// A burst of one: the second request within the second is refused.
	limited := false
	for i := range 5 {
		id := fmt.Sprintf("e2e-429-%d", i)
		if do("/open/x", "198.51.100.5", id) == http.StatusTooManyRequests {
			want[id], limited = http.StatusTooManyRequests, true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 from a client over MAX_REQUESTS_PER_SECOND=1")
	}

	// Lines reach stdout within the log buffer's flush period.
	var missing []string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		seen := map[string]map[string]any{}
		for _, l := range p.logLines(t) {
			if id, _ := l["request_id"].(string); l["msg"] == "request" && want[id] != 0 {
				seen[id] = l
			}
		}
		missing = missing[:0]
		for id, status := range want {
			l := seen[id]
			if l == nil {
				missing = append(missing, id)
				continue
			}
			if l["status"] != float64(status) || l["level"] != "INFO" || l["component"] != "gateway" {
				t.Errorf("access line of %s: status=%v level=%v component=%v, want %d at INFO from gateway", id, l["status"], l["level"], l["component"], status)
			}
		}
		if len(missing) == 0 {
			return
		}
	}
	t.Fatalf("no access line at LOG_LEVEL=info for %v", missing)
}

// TestAccessLogFloodIsSampledAndSummarised: a deny-listed client sending
// 100,000 requests gets at most ACCESS_LOG_REJECT_RATE access lines a
// second; the rest are counted, every request still is in
// http_requests_total, and the summary written at SIGTERM accounts for
// every line not written.
func TestAccessLogFloodIsSampledAndSummarised(t *testing.T) {
	const (
		flooder = "198.51.100.9"
		total   = 100000
		conns   = 16 // well below MAX_CONNS_PER_IP
		rate    = 10 // ACCESS_LOG_REJECT_RATE's default
	)
	p := startGateway(t, "TRUSTED_PROXIES=127.0.0.1/32", "IP_BLACKLIST="+flooder,
		`SERVICE_ROUTES=[{"prefix":"/","target_url":"http://127.0.0.1:1"}]`)

	start := time.Now()
	var wg sync.WaitGroup
	var mu sync.Mutex
	statuses := map[int]int{}
	errs := make(chan error, conns)
	for c := range conns {
		n := total / conns
		if c < total%conns {
			n++
		}
		wg.Go(func() {
			got, err := pipeline(p.addr, flooder, n)
			mu.Lock()
			for s, k := range got {
				statuses[s] += k
			}
			mu.Unlock()
			if err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if statuses[http.StatusForbidden] != total {
		t.Fatalf("answers by status = %v, want %d × 403", statuses, total)
	}
	t.Logf("%d requests in %v (%.0f/s)", total, elapsed.Round(time.Millisecond), total/elapsed.Seconds())

	// Sampling touches the log only: every request is counted.
	_, metrics := get(t, p.opsURL("/metrics"))
	if got := sumMetric(metrics, "http_requests_total", `status="403"`); got != total {
		t.Errorf("http_requests_total{status=403} = %v, want %d", got, total)
	}
	suppressedMetric := sumMetric(metrics, "access_log_suppressed_total", "")

	// The summary of what is pending is written at shutdown.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if code := p.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("exit status %d", code)
	}
	logged, suppressed, summaries := 0, 0, 0
	for _, l := range p.logLines(t) {
		switch {
		case l["msg"] == "request" && l["client_ip"] == flooder:
			if l["status"] != float64(http.StatusForbidden) || l["level"] != "INFO" {
				t.Errorf("flood access line: %v", l)
			}
			logged++
		case l["msg"] == "access lines suppressed":
			if l["client_ip"] != flooder || l["level"] != "INFO" || l["component"] != "gateway" {
				t.Errorf("unexpected summary line: %v", l)
				continue
			}
			summaries++
			n, _ := l["suppressed"].(float64)
			suppressed += int(n)
			st, _ := l["statuses"].(map[string]any)
			if st["403"] != n || len(st) != 1 {
				t.Errorf("summary statuses = %v, want all %v suppressed lines 403", st, n)
			}
			if w, _ := l["window"].(string); w == "" {
				t.Errorf("summary without a window: %v", l)
			}
		}
	}
	// Fixed one-second windows: the flood can touch ceil(elapsed)+1 of them.
	seconds := int(math.Ceil(elapsed.Seconds())) + 1
	maxSummaries := int(elapsed/time.Minute) + 2
	t.Logf("%d access lines, %d suppressed, %d summary lines", logged, suppressed, summaries)
	if logged > rate*seconds {
		t.Errorf("%d access lines for the flood in %v, want ≤ %d (%d a second)", logged, elapsed, rate*seconds, rate)
	}
	if summaries < 1 || summaries > maxSummaries {
		t.Errorf("%d summary lines, want 1..%d", summaries, maxSummaries)
	}
	if logged+suppressed != total {
		t.Errorf("logged %d + suppressed %d = %d, want the %d requests sent", logged, suppressed, logged+suppressed, total)
	}
	if int(suppressedMetric) != suppressed {
		t.Errorf("access_log_suppressed_total = %v, summaries say %d", suppressedMetric, suppressed)
	}
}

// pipeline sends n GET requests from client (by X-Forwarded-For) down one
// keep-alive connection without waiting for the answers, reads all n
// answers, and counts them by status.
func pipeline(addr, client string, n int) (map[int]int, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute)) // a guard against a hang, not a time budget
	req := "GET /flood HTTP/1.1\r\nHost: gateway\r\nX-Forwarded-For: " + client + "\r\n\r\n"
	werr := make(chan error, 1)
	go func() {
		w := bufio.NewWriterSize(conn, 64<<10)
		for range n {
			if _, err := w.WriteString(req); err != nil {
				werr <- err
				return
			}
		}
		werr <- w.Flush()
	}()
	got := map[int]int{}
	r := bufio.NewReaderSize(conn, 64<<10)
	for i := range n {
		status, err := readAnswer(r)
		if err != nil {
			return got, fmt.Errorf("answer %d of %d: %w", i+1, n, err)
		}
		got[status]++
	}
	return got, <-werr
}

// readAnswer reads one HTTP/1.1 answer with a Content-Length body and
// returns its status. Much cheaper than http.ReadResponse in a race-built
// test, which matters at 100,000 answers.
func readAnswer(r *bufio.Reader) (int, error) {
	line, err := r.ReadSlice('\n')
	if err != nil {
		return 0, err
	}
	// "HTTP/1.1 403 Forbidden\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, fmt.Errorf("bad status line %q", line)
	}
	length := -1
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return 0, err
		}
		h := bytes.TrimRight(line, "\r\n")
		if len(h) == 0 {
			break
		}
		if name, value, ok := bytes.Cut(h, []byte(":")); ok && strings.EqualFold(string(name), "Content-Length") {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return 0, fmt.Errorf("answer %d without Content-Length", status)
	}
	_, err = r.Discard(length)
	return status, err
}

// sumMetric adds up the samples of a metric in a Prometheus exposition
// whose labels contain match.
func sumMetric(exposition, name, match string) float64 {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + `(\{[^}]*\})? (\S+)$`)
	total := 0.0
	for _, m := range re.FindAllStringSubmatch(exposition, -1) {
		if !strings.Contains(m[1], match) {
			continue
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

package e2e

// Hostile HTTP/2, played frame by frame against the built binary: the
// attacks that took down HTTP/2 servers in 2023-2024, and the request rules
// of the hostile-input step, which must hold for an HTTP/2 request exactly
// as for an HTTP/1.1 one. Every attacker connects from 127.0.0.2, so the
// per-client limits that protect the victim on 127.0.0.1 never mix the two.

import (
	"bufio"
	"bytes"
	"cmp"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Name is the name the test certificate covers.
const h2Name = "gw.portcullis.test"

// attackerIP is the source address of every attacking connection; the
// victim's requests come from 127.0.0.1.
const attackerIP = "127.0.0.2"

// h2Dial says how to open an h2Client.
type h2Dial struct {
	tls    *tlsSetup // nil: cleartext HTTP/2 with prior knowledge
	from   string    // source IP; "" = 127.0.0.1
	rcvBuf int       // SO_RCVBUF set before connecting; 0 = the system's
	noRead bool      // no read loop: the server's frames pile up unread
}

// h2Client is one HTTP/2 connection driven frame by frame, so a test can
// send what no well-behaved client would. Writes go through a buffer and
// leave in one flush per send; a read loop records what the server says.
type h2Client struct {
	conn   net.Conn
	scheme string

	wmu sync.Mutex // the writer and the HPACK encoder: blocks must be encoded in wire order
	bw  *bufio.Writer
	fr  *http2.Framer
	enc *hpack.Encoder
	hb  bytes.Buffer

	mu   sync.Mutex
	st   h2State
	done chan struct{} // closed when the read loop ends (the connection closed)
}

// h2State is what the server has said on the connection so far.
type h2State struct {
	settings map[http2.SettingID]uint32
	streams  map[uint32]*h2Stream
	goAway   *h2GoAway
	acked    bool // the server's first SETTINGS acknowledged
}

// h2GoAway is a GOAWAY the server sent.
type h2GoAway struct {
	lastStream uint32
	code       http2.ErrCode
	debug      string
}

func (g *h2GoAway) String() string {
	if g == nil {
		return "no GOAWAY"
	}
	return fmt.Sprintf("GOAWAY %v (last stream %d) %q", g.code, g.lastStream, g.debug)
}

// h2Stream is the server's answer on one stream.
type h2Stream struct {
	status int
	header http.Header
	body   string
	ended  bool // END_STREAM seen
	reset  bool // RST_STREAM seen, with code
	code   http2.ErrCode
}

func dialH2(t *testing.T, addr string, o h2Dial) *h2Client {
	t.Helper()
	c, err := tryDialH2(addr, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.conn.Close() })
	return c
}

// tryDialH2 is dialH2 for goroutines, which may not call t.Fatal; the
// caller closes the connection.
func tryDialH2(addr string, o h2Dial) (*h2Client, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	if o.from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(o.from)}
	}
	if o.rcvBuf > 0 {
		// Set before the handshake so the advertised TCP window is small
		// from the start: what the server writes then stays in its queues.
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, o.rcvBuf)
			})
			return errors.Join(err, serr)
		}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &h2Client{conn: conn, scheme: "http", done: make(chan struct{})}
	if o.tls != nil {
		tc := tls.Client(conn, &tls.Config{RootCAs: o.tls.ca.Pool(), ServerName: h2Name, NextProtos: []string{"h2"}})
		tc.SetDeadline(time.Now().Add(5 * time.Second))
		if err := tc.Handshake(); err != nil {
			conn.Close()
			return nil, fmt.Errorf("TLS handshake: %w", err)
		}
		tc.SetDeadline(time.Time{})
		if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
			conn.Close()
			return nil, fmt.Errorf("ALPN negotiated %q, want h2", p)
		}
		c.conn, c.scheme = tc, "https"
	}
	c.bw = bufio.NewWriterSize(c.conn, 64<<10)
	c.fr = http2.NewFramer(c.bw, nil)
	c.fr.AllowIllegalWrites = true
	c.enc = hpack.NewEncoder(&c.hb)
	c.st = h2State{settings: map[http2.SettingID]uint32{}, streams: map[uint32]*h2Stream{}}
	err = c.send(func(w h2Writer) error {
		if _, err := io.WriteString(c.bw, http2.ClientPreface); err != nil {
			return err
		}
		return w.WriteSettings()
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("writing the preface: %w", err)
	}
	if o.noRead {
		return c, nil
	}
	go c.readLoop()
	// Wait for the server's SETTINGS and our ACK of them: an ACK sent in
	// the middle of a header block the test is writing would be a
	// protocol error of the test's own.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		c.mu.Lock()
		acked := c.st.acked
		c.mu.Unlock()
		if acked {
			return c, nil
		}
		if c.closed() || time.Now().After(deadline) {
			c.conn.Close()
			return nil, errors.New("no SETTINGS from the server")
		}
	}
}

// h2Writer is the connection's framer and HPACK encoder, held for one send.
type h2Writer struct {
	*http2.Framer
	c *h2Client
}

// block encodes header fields (name, value pairs, names as sent: HTTP/2
// wants them lower case) with the connection's HPACK encoder.
func (w h2Writer) block(fields ...string) []byte {
	w.c.hb.Reset()
	for i := 0; i+1 < len(fields); i += 2 {
		w.c.enc.WriteField(hpack.HeaderField{Name: fields[i], Value: fields[i+1]})
	}
	return bytes.Clone(w.c.hb.Bytes())
}

// headers writes a header block on stream id as HEADERS and as many
// CONTINUATION frames as fragments of at most maxFrag bytes need
// (0 = 16 KiB, the default SETTINGS_MAX_FRAME_SIZE).
func (w h2Writer) headers(id uint32, endStream bool, block []byte, maxFrag int) error {
	if maxFrag <= 0 {
		maxFrag = 16 << 10
	}
	first := min(len(block), maxFrag)
	err := w.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block[:first], EndStream: endStream, EndHeaders: first == len(block)})
	for rest := block[first:]; err == nil && len(rest) > 0; {
		n := min(len(rest), maxFrag)
		err = w.WriteContinuation(id, n == len(rest), rest[:n])
		rest = rest[n:]
	}
	return err
}

// send runs fn with the writer held, then flushes what it wrote.
func (c *h2Client) send(fn func(w h2Writer) error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := fn(h2Writer{Framer: c.fr, c: c}); err != nil {
		return err
	}
	return c.bw.Flush()
}

// request sends a request with no body on stream id: method and path as
// pseudo-headers, then the extra fields (name, value pairs).
func (c *h2Client) request(id uint32, method, path string, extra ...string) error {
	return c.send(func(w h2Writer) error {
		return w.headers(id, true, w.block(c.fields(method, path, extra...)...), 0)
	})
}

// fields is a request's pseudo-headers followed by extra.
func (c *h2Client) fields(method, path string, extra ...string) []string {
	return append([]string{":method", method, ":scheme", c.scheme, ":authority", h2Name, ":path", path}, extra...)
}

func (c *h2Client) readLoop() {
	defer close(c.done)
	fr := http2.NewFramer(nil, bufio.NewReaderSize(c.conn, 64<<10))
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := fr.ReadFrame()
		var se http2.StreamError
		if errors.As(err, &se) {
			continue
		}
		if err != nil {
			return
		}
		c.mu.Lock()
		var reply func(w h2Writer) error
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				f.ForeachSetting(func(s http2.Setting) error { c.st.settings[s.ID] = s.Val; return nil })
				reply = func(w h2Writer) error { return w.WriteSettingsAck() }
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				reply = func(w h2Writer) error { return w.WritePing(true, data) }
			}
		case *http2.MetaHeadersFrame:
			s := c.stream(f.StreamID)
			if s.header == nil {
				s.header = http.Header{}
				for _, hf := range f.RegularFields() {
					s.header.Add(hf.Name, hf.Value)
				}
				s.status, _ = strconv.Atoi(f.PseudoValue("status"))
				if s.status >= 100 && s.status < 200 {
					s.header = nil // an interim answer; the real one follows
				}
			}
			s.ended = s.ended || f.StreamEnded()
		case *http2.DataFrame:
			s := c.stream(f.StreamID)
			s.body += string(f.Data())
			s.ended = s.ended || f.StreamEnded()
			if n := uint32(len(f.Data())); n > 0 {
				id := f.StreamID
				reply = func(w h2Writer) error {
					if err := w.WriteWindowUpdate(0, n); err != nil {
						return err
					}
					return w.WriteWindowUpdate(id, n)
				}
			}
		case *http2.RSTStreamFrame:
			s := c.stream(f.StreamID)
			s.reset, s.code = true, f.ErrCode
		case *http2.GoAwayFrame:
			c.st.goAway = &h2GoAway{lastStream: f.LastStreamID, code: f.ErrCode, debug: string(f.DebugData())}
		}
		c.mu.Unlock()
		if reply != nil {
			err := c.send(reply) // a write error shows up as the next read's
			if _, ok := f.(*http2.SettingsFrame); ok && err == nil {
				c.mu.Lock()
				c.st.acked = true
				c.mu.Unlock()
			}
		}
	}
}

// stream returns the record of stream id; c.mu must be held.
func (c *h2Client) stream(id uint32) *h2Stream {
	s := c.st.streams[id]
	if s == nil {
		s = &h2Stream{}
		c.st.streams[id] = s
	}
	return s
}

// wait returns the answer on stream id once it ended, was reset or the
// connection closed, or what there is after timeout.
func (c *h2Client) wait(id uint32, timeout time.Duration) h2Stream {
	deadline := time.Now().Add(timeout)
	for {
		c.mu.Lock()
		s := c.stream(id)
		out := *s
		c.mu.Unlock()
		if out.ended || out.reset || c.closed() || time.Now().After(deadline) {
			return out
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// closed reports whether the connection has closed (the read loop saw EOF
// or an error).
func (c *h2Client) closed() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// waitClosed waits up to timeout for the connection to close.
func (c *h2Client) waitClosed(timeout time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(timeout):
		return false
	}
}

// state is a copy of the connection's GOAWAY and settings.
func (c *h2Client) state() (goAway *h2GoAway, settings map[http2.SettingID]uint32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st.goAway, maps.Clone(c.st.settings)
}

// describe says how a stream ended, for failure messages.
func (s h2Stream) describe() string {
	out := "no answer"
	if s.status != 0 {
		out = fmt.Sprintf("%d %.200q", s.status, s.body)
	}
	switch {
	case s.reset && s.status != 0:
		out += ", then RST_STREAM " + s.code.String()
	case s.reset:
		out = "RST_STREAM " + s.code.String()
	}
	return out
}

// h2Gateway starts a gateway serving HTTPS (HTTP/2 by ALPN) with the test
// certificate for h2Name and the routes (SERVICE_ROUTES JSON), plus env.
func h2Gateway(t *testing.T, routes string, env ...string) (*proc, *tlsSetup) {
	t.Helper()
	s := newTLSSetup(t)
	crt, key := s.write(t, "gw", "gw", h2Name)
	return startGateway(t, append([]string{"TLS_CERT_FILE=" + crt, "TLS_KEY_FILE=" + key, "SERVICE_ROUTES=" + routes}, env...)...), s
}

// procStats is what the gateway's /metrics says about its process.
type procStats struct{ rss, heap, goroutines float64 }

func processStats(t *testing.T, p *proc) procStats {
	t.Helper()
	code, body := get(t, p.opsURL("/metrics"))
	if code != 200 {
		t.Fatalf("/metrics %d", code)
	}
	return procStats{
		rss:        sumMetric(body, "process_resident_memory_bytes", ""),
		heap:       sumMetric(body, "go_memstats_heap_inuse_bytes", ""),
		goroutines: sumMetric(body, "go_goroutines", ""),
	}
}

// assertAlive fails the test if the gateway process has exited.
func assertAlive(t *testing.T, p *proc) {
	t.Helper()
	select {
	case <-p.exited:
		t.Fatalf("the gateway exited: %v\n%s", p.err, p.stderr.String())
	default:
	}
}

// assertCleanExit stops the gateway and fails the test unless it exits 0
// with nothing on stderr about a panic or, in a race-enabled build, a data
// race the attack provoked.
func assertCleanExit(t *testing.T, p *proc) {
	t.Helper()
	assertAlive(t, p)
	p.cmd.Process.Signal(syscall.SIGTERM)
	code := p.wait(t, 15*time.Second)
	stderr := p.stderr.String() // complete: the process has exited
	if code != 0 || strings.Contains(stderr, "DATA RACE") || strings.Contains(stderr, "panic:") {
		if len(stderr) > 2000 {
			stderr = stderr[:2000] + "…"
		}
		t.Errorf("the gateway exited %d:\n%s", code, stderr)
	}
}

// assertMemoryBounded fails the test if the gateway's heap grew by more
// than limit since before. The heap, not the resident size: a race-enabled
// build's resident memory follows the race detector's shadow memory, which
// grows with every goroutine ever started, not with what the gateway holds.
func assertMemoryBounded(t *testing.T, p *proc, before procStats, limit float64) {
	t.Helper()
	after := processStats(t, p)
	t.Logf("heap in use %.0f MiB before, %.0f MiB after; resident %.0f MiB before, %.0f MiB after",
		before.heap/(1<<20), after.heap/(1<<20), before.rss/(1<<20), after.rss/(1<<20))
	if after.heap-before.heap > limit {
		t.Errorf("the heap grew by %.0f MiB (limit %.0f MiB)", (after.heap-before.heap)/(1<<20), limit/(1<<20))
	}
}

// victim is a well-behaved client on 127.0.0.1 that asks for a path every
// interval while an attack runs, both over a kept HTTP/2 connection and
// over a fresh connection each time: neither serving streams nor
// accepting and handshaking may starve.
type victim struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu        sync.Mutex
	latencies map[string][]time.Duration // by connection kind
	failures  []string
}

func startVictim(t *testing.T, p *proc, s *tlsSetup, path string, every time.Duration) *victim {
	t.Helper()
	v := &victim{stop: make(chan struct{}), latencies: map[string][]time.Duration{}}
	kept := s.client(h2Name, true)
	fresh := s.client(h2Name, true)
	fresh.Transport.(*http.Transport).DisableKeepAlives = true
	url := "https://" + p.addr + path
	for kind, c := range map[string]*http.Client{"kept connection": kept, "new connection each time": fresh} {
		t.Cleanup(c.CloseIdleConnections)
		v.wg.Go(func() {
			tick := time.NewTicker(every)
			defer tick.Stop()
			for {
				began := time.Now()
				resp, err := c.Get(url)
				d := time.Since(began)
				v.mu.Lock()
				switch {
				case err != nil:
					v.failures = append(v.failures, kind+": "+err.Error())
				case resp.StatusCode != 200:
					v.failures = append(v.failures, kind+": "+resp.Status)
				default:
					v.latencies[kind] = append(v.latencies[kind], d)
				}
				v.mu.Unlock()
				if resp != nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				select {
				case <-v.stop:
					return
				case <-tick.C:
				}
			}
		})
	}
	t.Cleanup(v.finish)
	return v
}

func (v *victim) finish() {
	select {
	case <-v.stop:
	default:
		close(v.stop)
	}
	v.wg.Wait()
}

// check stops the victim and fails the test if any of its requests failed
// or the slowest 1% of either kind took longer than p99: gross starvation,
// not speed, which is for benchmarks.
func (v *victim) check(t *testing.T, p99 time.Duration) {
	t.Helper()
	v.finish()
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.failures) > 0 {
		t.Errorf("%d of the victim's requests failed during the attack, first: %s", len(v.failures), v.failures[0])
	}
	for kind, l := range v.latencies {
		l = slices.Clone(l)
		slices.Sort(l)
		got := l[(len(l)*99)/100]
		t.Logf("victim over a %s: %d requests, median %v, p99 %v", kind, len(l), l[len(l)/2], got)
		if got > p99 {
			t.Errorf("the victim's p99 latency over a %s during the attack is %v, want under %v", kind, got, p99)
		}
	}
}

// liftedLimits turn the per-client limits off, so what stops an attack
// below is the HTTP/2 server itself and not the rate limiter or the DDoS
// guard answering 429 to the attacker's address.
var liftedLimits = []string{"MAX_REQUESTS_PER_SECOND=1000000", "MAX_BURST_SIZE=1000000", "DDOS_THRESHOLD=2000000000"}

// hitCounter is a backend that answers "ok" and counts the requests
// whose path starts with /attack.
type hitCounter struct{ attack atomic.Int64 }

func (h *hitCounter) serve(t *testing.T) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/attack") {
			h.attack.Add(1)
		}
		io.WriteString(w, "ok")
	})
}

// waitGoroutines waits for the gateway's goroutine count to settle back
// to within slack of baseline, and fails the test if it does not: work an
// attack started must end with it.
func waitGoroutines(t *testing.T, p *proc, baseline, slack float64) {
	t.Helper()
	var g float64
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		g = processStats(t, p).goroutines
		if g <= baseline+slack {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%v goroutines 5 s after the attack, %v before", g, baseline)
			return
		}
	}
}

// rapidReset opens streams and resets each at once, in batches, from
// attackerIP over conns connections until the deadline, at most rate
// streams a second on each (0 = as fast as it can). Each connection that
// ends is replaced, as an attacker would. It returns the streams sent and
// how the connections ended.
func rapidReset(addr string, s *tlsSetup, conns, rate int, deadline time.Time) (sent int64, endings map[string]int) {
	const batch = 100
	var (
		total atomic.Int64
		mu    sync.Mutex
		wg    sync.WaitGroup
	)
	endings = map[string]int{}
	end := func(how string) {
		mu.Lock()
		endings[how]++
		mu.Unlock()
	}
	for range conns {
		wg.Go(func() {
			for time.Now().Before(deadline) {
				c, err := tryDialH2(addr, h2Dial{tls: s, from: attackerIP})
				if err != nil {
					end("dial: " + err.Error())
					time.Sleep(10 * time.Millisecond)
					continue
				}
				began, n := time.Now(), 0
				for id := uint32(1); time.Now().Before(deadline) && !c.closed(); n += batch {
					if rate > 0 {
						time.Sleep(time.Until(began.Add(time.Duration(n) * time.Second / time.Duration(rate))))
					}
					err := c.send(func(w h2Writer) error {
						for range batch {
							if err := w.headers(id, true, w.block(c.fields("GET", "/attack")...), 0); err != nil {
								return err
							}
							if err := w.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
								return err
							}
							id += 2
						}
						return nil
					})
					if err != nil {
						break
					}
					total.Add(batch)
				}
				switch ga, _ := c.state(); {
				case ga != nil:
					end("GOAWAY " + ga.code.String())
				case c.closed():
					end("closed")
				default:
					end("open at the end")
				}
				c.conn.Close()
			}
		})
	}
	wg.Wait()
	return total.Load(), endings
}

// CVE-2023-44487 (rapid reset): a client opens streams and cancels each
// at once, so every stream starts work on the server while none counts
// against the concurrent-stream limit for long, and one connection makes
// thousands of requests a second. The gateway must keep answering others
// promptly, must not pass the flood on to a backend, must not keep the
// work it started, and must not write a log line per stream when the
// per-client limits are on.
//
// The attack is paced (4500 streams a second): the attacker, the gateway
// and the victim share a small machine's cores, and an unpaced loop
// measures the machine rather than the gateway.
func TestH2RapidResetLeavesOthersServed(t *testing.T) {
	tests := []struct {
		name string
		env  []string
		// maxLogLines bounds the attacker's access lines; 0 = unbounded:
		// without the per-client limits each reset stream is a request
		// the access log records (499).
		maxLogLines int
		// refused: most of the attacker's streams are refused (429) by
		// the per-client limits before anything else is done for them.
		refused bool
	}{
		{name: "default per-client limits", maxLogLines: 1000, refused: true},
		{name: "per-client limits lifted", env: liftedLimits},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var hits hitCounter
			p, s := h2Gateway(t, `[{"prefix":"/","target_url":"`+hits.serve(t)+`"}]`, tc.env...)
			before := processStats(t, p)
			v := startVictim(t, p, s, "/victim", 50*time.Millisecond)

			sent, endings := rapidReset(p.addr, s, 3, 1500, time.Now().Add(2*time.Second))
			v.check(t, time.Second)
			assertAlive(t, p)
			_, metrics := get(t, p.opsURL("/metrics"))
			limited := sumMetric(metrics, "http_requests_total", `status="429"`)
			t.Logf("%d streams opened and reset (connections: %v); answered %v 429, %v 499; the backend saw %d", sent, endings,
				limited, sumMetric(metrics, "http_requests_total", `status="499"`), hits.attack.Load())
			if tc.refused && limited*2 < float64(sent) {
				t.Errorf("%v of %d reset streams refused with 429, want most", limited, sent)
			}
			if sent < 5000 {
				t.Errorf("only %d streams were sent: no flood was tested", sent)
			}
			// What reaches the backend is what was already on its way when
			// the reset came; a reset stream never gets there later.
			if n := hits.attack.Load(); n*10 > sent {
				t.Errorf("the backend saw %d of %d reset streams", n, sent)
			}
			waitGoroutines(t, p, before.goroutines, 50)
			assertMemoryBounded(t, p, before, 128<<20)
			n := strings.Count(p.logs(), `"client_ip":"`+attackerIP+`"`)
			t.Logf("%d access lines for the attacker", n)
			if tc.maxLogLines > 0 && n > tc.maxLogLines {
				t.Errorf("%d access lines for the attacker, want at most %d (sampled)", n, tc.maxLogLines)
			}
			if _, body := fetch(t, s.client(h2Name, true), "https://"+p.addr+"/after"); body != "ok" {
				t.Errorf("after the attack: %q", body)
			}
			assertCleanExit(t, p)
		})
	}
}

// neverIndexed is a header block of one field as a literal never
// indexed: it leaves the server's HPACK table as it was, so it can be sent
// any number of times outside the connection's encoder.
func neverIndexed(name, value string) []byte {
	var b bytes.Buffer
	hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: true})
	return b.Bytes()
}

// CVE-2024-27316 / CVE-2023-45288 (CONTINUATION flood): a header block
// that never ends, its fields arriving in CONTINUATION frames, made
// servers buffer or decode without limit. The gateway must cut the
// connection once the block passes the header limit (64 KiB), long
// before the attacker is done, and serve others meanwhile.
func TestH2ContinuationFloodIsCutOff(t *testing.T) {
	var hits hitCounter
	p, s := h2Gateway(t, `[{"prefix":"/","target_url":"`+hits.serve(t)+`"}]`)
	before := processStats(t, p)
	v := startVictim(t, p, s, "/victim", 50*time.Millisecond)

	c := dialH2(t, p.addr, h2Dial{tls: s, from: attackerIP})
	frag := neverIndexed("x-junk", strings.Repeat("a", 16000))
	const limit = 64 << 20 // what an unbounded server would swallow
	written := 0
	err := c.send(func(w h2Writer) error {
		return w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: w.block(c.fields("GET", "/attack")...), EndStream: true})
	})
	c.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
	for err == nil && written < limit && !c.closed() {
		err = c.send(func(w h2Writer) error { return w.WriteContinuation(1, false, frag) })
		written += len(frag) + 9
	}
	if !c.waitClosed(5 * time.Second) {
		t.Fatalf("the connection is still open after %d MiB of CONTINUATION frames", written>>20)
	}
	ga, _ := c.state()
	t.Logf("closed after %d KiB written (write error %v, %v)", written>>10, err, ga)
	// The gateway stopped reading at 64 KiB; what the attacker got to
	// write beyond it is what the two sockets' buffers held.
	if written > 16<<20 {
		t.Errorf("%d MiB of CONTINUATION frames were accepted before the connection closed", written>>20)
	}
	v.check(t, time.Second)
	assertAlive(t, p)
	assertMemoryBounded(t, p, before, 64<<20)
	if n := hits.attack.Load(); n != 0 {
		t.Errorf("the backend saw the flooding request %d times", n)
	}
	assertCleanExit(t, p)
}

// hpackBomb is a header block for a request on the connection of w whose
// fields decode to about refs × 4 KiB: one 4000-byte field added to the
// HPACK table, then refs one-byte references to it (index 62, the newest
// entry). Over the wire it stays small; decoded it is a header list of
// hundreds of megabytes if nothing counts what decoding produces.
func hpackBomb(w h2Writer, c *h2Client, refs int) []byte {
	b := w.block(c.fields("GET", "/attack", "x-bomb", strings.Repeat("b", 4000))...)
	return append(b, bytes.Repeat([]byte{0x80 | 62}, refs)...)
}

// HPACK bombs: a few bytes on the wire that decode to a huge header list
// (references to one large table entry, repeated), and a table size the
// client was never offered. Each is refused (431, a reset stream or the
// connection closed) without the gateway decoding its way out of memory
// or reaching a backend, while others are served.
func TestH2HPACKBombIsRefused(t *testing.T) {
	var hits hitCounter
	p, s := h2Gateway(t, `[{"prefix":"/","target_url":"`+hits.serve(t)+`"}]`)
	before := processStats(t, p)
	v := startVictim(t, p, s, "/victim", 50*time.Millisecond)

	refused := func(st h2Stream) bool { return st.status == 431 || st.reset }
	tests := []struct {
		name string
		// attack sends the bomb on a fresh connection and fails t unless
		// the gateway refused it.
		attack func(t *testing.T, c *h2Client)
	}{
		{name: "in one frame: 431, the connection kept", attack: func(t *testing.T, c *h2Client) {
			// 12,000 references fit a 16 KiB frame and decode to 48 MB.
			if err := c.send(func(w h2Writer) error { return w.headers(1, true, hpackBomb(w, c, 12000), 0) }); err != nil {
				t.Fatal(err)
			}
			if st := c.wait(1, 5*time.Second); !refused(st) {
				t.Errorf("the bomb got %s, want 431 or a reset stream", st.describe())
			}
			// The table is intact on both sides: the next request works.
			if err := c.request(3, "GET", "/victim"); err != nil {
				t.Fatal(err)
			}
			if st := c.wait(3, 5*time.Second); st.status != 200 {
				t.Errorf("the next request on the connection got %s", st.describe())
			}
		}},
		{name: "across CONTINUATION frames: the connection closed", attack: func(t *testing.T, c *h2Client) {
			// A megabyte of references: 4 GB decoded.
			err := c.send(func(w h2Writer) error { return w.headers(1, true, hpackBomb(w, c, 1<<20), 0) })
			if !c.waitClosed(5 * time.Second) {
				t.Errorf("the connection is still open (write: %v)", err)
			}
		}},
		{name: "on 200 streams: each refused", attack: func(t *testing.T, c *h2Client) {
			// 200 × 48 MB = 9.6 GB decoded, were it decoded.
			for i := range 200 {
				id := uint32(2*i + 1)
				if err := c.send(func(w h2Writer) error { return w.headers(id, true, hpackBomb(w, c, 12000), 0) }); err != nil {
					if c.closed() {
						return // closing the connection is a refusal too
					}
					t.Fatal(err)
				}
			}
			outcomes := map[string]int{}
			for i := range 200 {
				st := c.wait(uint32(2*i+1), 10*time.Second)
				if !refused(st) && !c.closed() {
					t.Fatalf("stream %d got %s, want it refused", 2*i+1, st.describe())
				}
				outcomes[st.describe()]++
			}
			ga, _ := c.state()
			t.Logf("outcomes %v, %v", outcomes, ga)
		}},
		{name: "a table size never offered: the connection closed", attack: func(t *testing.T, c *h2Client) {
			// A dynamic table size update to 1 GiB, beyond the 4 KiB the
			// server offered (RFC 7541 §4.2: a decoding error).
			var b bytes.Buffer
			e := hpack.NewEncoder(&b)
			e.SetMaxDynamicTableSizeLimit(1 << 30)
			e.SetMaxDynamicTableSize(1 << 30)
			e.WriteField(hpack.HeaderField{Name: ":method", Value: "GET"})
			c.send(func(w h2Writer) error { return w.headers(1, true, b.Bytes(), 0) })
			if !c.waitClosed(5 * time.Second) {
				t.Errorf("the connection is still open")
			}
			if ga, _ := c.state(); ga == nil || ga.code != http2.ErrCodeCompression {
				t.Logf("ended with %v, COMPRESSION_ERROR expected", ga)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			began := time.Now()
			tc.attack(t, dialH2(t, p.addr, h2Dial{tls: s, from: attackerIP}))
			t.Logf("refused in %v", time.Since(began).Round(time.Millisecond))
		})
	}
	v.check(t, time.Second)
	assertAlive(t, p)
	assertMemoryBounded(t, p, before, 64<<20)
	if n := hits.attack.Load(); n != 0 {
		t.Errorf("the backend saw %d bombs", n)
	}
	assertCleanExit(t, p)
}

// Control-frame floods: SETTINGS and PING frames each oblige the server
// to answer (an ACK), and a client that never reads the answers makes
// them pile up in the server's memory. The gateway may close such a
// connection or keep it; either way its memory stays flat and others are
// served.
func TestH2ControlFrameFloodsAreBounded(t *testing.T) {
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, s := h2Gateway(t, `[{"prefix":"/","target_url":"`+up+`"}]`)
	before := processStats(t, p)
	v := startVictim(t, p, s, "/victim", 50*time.Millisecond)

	tests := []struct {
		name  string
		frame func(w h2Writer, i int) error
	}{
		{name: "SETTINGS", frame: func(w h2Writer, i int) error {
			// Each changes the initial window, which the server applies
			// to every stream before acknowledging. (Go's server folds
			// the ACKs of SETTINGS it has not answered yet into one, so
			// these never pile up; PING ACKs do, up to a cap.)
			return w.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: uint32(65535 + i%2)})
		}},
		{name: "PING", frame: func(w h2Writer, i int) error {
			return w.WritePing(false, [8]byte{byte(i), byte(i >> 8), byte(i >> 16)})
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A tiny receive buffer and no read loop: the ACKs stay on the
			// server's side.
			c := dialH2(t, p.addr, h2Dial{tls: s, from: attackerIP, rcvBuf: 4096, noRead: true})
			sent, err := 0, error(nil)
			c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
			for deadline := time.Now().Add(time.Second); err == nil && time.Now().Before(deadline); {
				err = c.send(func(w h2Writer) error {
					for i := range 1000 {
						if err := tc.frame(w, sent+i); err != nil {
							return err
						}
					}
					return nil
				})
				if err == nil {
					sent += 1000
				}
			}
			closed := drainUntilClosed(c.conn, 500*time.Millisecond)
			t.Logf("%d frames sent (write: %v); connection closed: %v", sent, err, closed)
			if sent < 10000 {
				t.Errorf("only %d frames were sent: no flood was tested", sent)
			}
		})
	}
	v.check(t, time.Second)
	assertMemoryBounded(t, p, before, 64<<20)
	assertCleanExit(t, p)
}

// drainUntilClosed reads and discards what the server sends for up to
// within, and reports whether the server closed the connection by then.
func drainUntilClosed(c net.Conn, within time.Duration) bool {
	buf := make([]byte, 64<<10)
	c.SetReadDeadline(time.Now().Add(within))
	for {
		if _, err := c.Read(buf); err != nil {
			var ne net.Error
			return !(errors.As(err, &ne) && ne.Timeout())
		}
	}
}

// concurrency is a backend that holds each request for a while and
// records how many it held at once.
type concurrency struct {
	now, max, total atomic.Int64
}

func (cc *concurrency) serve(t *testing.T, hold time.Duration) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		n := cc.now.Add(1)
		defer cc.now.Add(-1)
		cc.total.Add(1)
		for m := cc.max.Load(); n > m && !cc.max.CompareAndSwap(m, n); m = cc.max.Load() {
		}
		select {
		case <-time.After(hold):
		case <-r.Context().Done():
		}
		io.WriteString(w, "ok")
	})
}

// HTTP2_MAX_CONCURRENT_STREAMS bounds the requests one connection has in
// flight: it is announced in SETTINGS, a client that waits for a free
// stream gets all its answers, and streams a client opens beyond it are
// refused (RFC 9113 §5.1.2: PROTOCOL_ERROR or REFUSED_STREAM), never
// queued or served, so no more than the limit run at once.
func TestH2StreamLimitHolds(t *testing.T) {
	const limit, requests = 5, 20
	var cc concurrency
	p, s := h2Gateway(t, `[{"prefix":"/","target_url":"`+cc.serve(t, 300*time.Millisecond)+`"}]`,
		append([]string{"HTTP2_MAX_CONCURRENT_STREAMS=" + strconv.Itoa(limit)}, liftedLimits...)...)

	t.Run("a client that ignores the limit", func(t *testing.T) {
		cc.max.Store(0)
		cc.total.Store(0)
		c := dialH2(t, p.addr, h2Dial{tls: s, from: attackerIP})
		if _, settings := c.state(); settings[http2.SettingMaxConcurrentStreams] != limit {
			t.Errorf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", settings[http2.SettingMaxConcurrentStreams], limit)
		}
		// All the requests at once, in one write.
		if err := c.send(func(w h2Writer) error {
			for i := range requests {
				// A path each, so the cache never folds two into one.
				if err := w.headers(uint32(2*i+1), true, w.block(c.fields("GET", fmt.Sprintf("/attack/%d", i))...), 0); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		outcomes := map[string]int{}
		for i := range requests {
			st := c.wait(uint32(2*i+1), 10*time.Second)
			switch {
			case st.status == 200:
				outcomes["200"]++
			case st.reset && (st.code == http2.ErrCodeProtocol || st.code == http2.ErrCodeRefusedStream):
				outcomes["refused"]++
			default:
				t.Errorf("stream %d: %s", 2*i+1, st.describe())
			}
		}
		t.Logf("outcomes %v; the backend held at most %d at once", outcomes, cc.max.Load())
		if outcomes["200"] != limit || outcomes["refused"] != requests-limit {
			t.Errorf("%d answered and %d refused, want %d and %d", outcomes["200"], outcomes["refused"], limit, requests-limit)
		}
		if m := cc.max.Load(); m > limit {
			t.Errorf("the backend held %d requests of one connection at once, limit %d", m, limit)
		}
		if n := cc.total.Load(); n != limit {
			t.Errorf("the backend saw %d requests, want %d", n, limit)
		}
		if c.closed() {
			t.Error("the connection was closed; refusing the extra streams is enough")
		}
	})

	t.Run("a client that waits for a free stream", func(t *testing.T) {
		cc.max.Store(0)
		cc.total.Store(0)
		c := dialH2(t, p.addr, h2Dial{tls: s, from: attackerIP})
		// limit workers, each opening its next stream once its last one
		// ended: never more than limit open, as RFC 9113 asks of clients.
		var (
			mu       sync.Mutex
			next     = uint32(1)
			failures []string
			wg       sync.WaitGroup
		)
		var retried atomic.Int64
		for range limit {
			wg.Go(func() {
				for done := 0; done < requests/limit; {
					var id uint32
					err := c.send(func(w h2Writer) error {
						mu.Lock()
						id, next = next, next+2
						mu.Unlock()
						return w.headers(id, true, w.block(c.fields("GET", fmt.Sprintf("/wait/%d", id))...), 0)
					})
					st := c.wait(id, 10*time.Second)
					switch {
					case err == nil && st.status == 200:
						done++
					case err == nil && st.reset && retried.Add(1) <= limit:
						// A stream opened the moment the one before it
						// ended may be refused before the server has
						// counted that one closed; a client retries it.
					default:
						mu.Lock()
						failures = append(failures, fmt.Sprintf("stream %d: %v %s", id, err, st.describe()))
						mu.Unlock()
						return
					}
				}
			})
		}
		wg.Wait()
		for _, f := range failures {
			t.Error(f)
		}
		t.Logf("the backend saw %d, at most %d at once (%d streams retried)", cc.total.Load(), cc.max.Load(), retried.Load())
		if m := cc.max.Load(); m > limit {
			t.Errorf("the backend held %d requests of one connection at once, limit %d", m, limit)
		}
	})
	assertCleanExit(t, p)
}

// echoAll is a backend that answers with what it received: method, request
// target, every header but X-Request-Id (new for each request) one
// "Name: values" line each, sorted, and the body. It counts requests.
func echoAll(t *testing.T, hits *atomic.Int64) string {
	return backend(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		var lines []string
		for name, vv := range r.Header {
			if name != "X-Request-Id" {
				lines = append(lines, name+": "+strings.Join(vv, ", "))
			}
		}
		if len(r.TransferEncoding) > 0 {
			lines = append(lines, "(transfer-encoding): "+strings.Join(r.TransferEncoding, ", "))
		}
		slices.Sort(lines)
		body, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s (host %s)\n%s\n\n%s", r.Method, r.RequestURI, r.Host, strings.Join(lines, "\n"), body)
	})
}

// h1Request sends one raw HTTP/1.1 request over TLS (ALPN http/1.1) and
// returns the answer's status and body.
func h1Request(t *testing.T, addr string, s *tlsSetup, req string) (int, string) {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: s.ca.Pool(), ServerName: h2Name, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the answer to %q: %v", firstLine(req), err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// parityCase is one request sent both over HTTP/1.1 and over HTTP/2.
type parityCase struct {
	name   string
	method string   // GET when empty
	target string   // the request target, :path over HTTP/2
	hdr    []string // name, value pairs, names lower case (HTTP/2 requires it)
	body   string
	stall  bool     // the body stops short: the stream never ends, or Content-Length promises more
	want   int      // the status over both protocols; 0 = whatever HTTP/1.1 gets
	absent []string // what the backend must not see
	// h2MayClose lets HTTP/2 refuse by closing the connection where
	// HTTP/1.1 gets a 4xx: Go's server stops reading a header block once
	// it passes the limit rather than decode the rest to answer 431.
	h2MayClose bool
}

// h1 is the case as an HTTP/1.1 request.
func (pc parityCase) h1() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\n", cmp.Or(pc.method, "GET"), pc.target, h2Name)
	for i := 0; i+1 < len(pc.hdr); i += 2 {
		fmt.Fprintf(&b, "%s: %s\r\n", pc.hdr[i], pc.hdr[i+1])
	}
	if pc.body != "" && !slices.Contains(pc.hdr, "content-length") {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(pc.body))
	}
	b.WriteString("Connection: close\r\n\r\n" + pc.body)
	return b.String()
}

// h2 sends the case on stream 1 of c.
func (pc parityCase) h2(c *h2Client) error {
	method := cmp.Or(pc.method, "GET")
	fields := c.fields(method, pc.target, pc.hdr...)
	if method == http.MethodConnect {
		fields = append([]string{":method", method, ":authority", pc.target}, pc.hdr...)
	}
	return c.send(func(w h2Writer) error {
		if err := w.headers(1, pc.body == "", w.block(fields...), 0); err != nil || pc.body == "" {
			return err
		}
		return w.WriteData(1, !pc.stall, []byte(pc.body))
	})
}

// Every request rule of the hostile-input step holds for HTTP/2 as for
// HTTP/1.1: one path cleaning, one header scrubbing. Each case is sent
// over both; the status must be the same, and when the request is
// forwarded, the backend must see exactly the same request.
func TestH2RequestRulesMatchHTTP1(t *testing.T) {
	t.Parallel() // light: runs alongside the other light tests, after the attacks
	var hits atomic.Int64
	p, s := h2Gateway(t, `[{"prefix":"/api","target_url":"`+echoAll(t, &hits)+`"}]`, "BODY_READ_TIMEOUT=1s")
	spoof := []string{"6.6.6.6", "evil.example", "mallory"}
	big := make([]string, 0, 40)
	for i := range 20 {
		big = append(big, fmt.Sprintf("x-pad-%02d", i), strings.Repeat("p", 4000))
	}
	tests := []parityCase{
		{name: "a plain request", target: "/api/ok", want: 200},
		{name: "a body", method: "POST", target: "/api/ok", body: "hello", want: 200},
		{name: "an encoded slash", target: "/api/a%2Fb", want: 400},
		{name: "an encoded backslash", target: "/api/a%5Cb", want: 400},
		{name: "an encoded NUL", target: "/api/a%00b", want: 400},
		{name: "a raw backslash", target: `/api/a\b`, want: 400},
		{name: "a path parameter", target: "/api/a;x=1/b", want: 400},
		{name: "dot segments", target: "/api/x/../y/./z", want: 200},
		{name: "encoded dot segments out of the route", target: "/api/%2e%2e/admin", want: 404},
		{name: "double slashes", target: "/api//y", want: 200},
		{name: "an over-long target", target: "/api/" + strings.Repeat("a", 9000), want: 414},
		{name: "identity headers", target: "/api/id", want: 200, absent: spoof,
			hdr: []string{"x-user-id", "mallory", "x-auth-method", "mallory", "x-client-cert-subject", "CN=mallory"}},
		{name: "forwarding headers from an untrusted client", target: "/api/fwd", want: 200, absent: spoof,
			hdr: []string{"x-forwarded-for", "6.6.6.6", "x-real-ip", "6.6.6.6", "forwarded", "for=6.6.6.6;host=evil.example", "x-forwarded-host", "evil.example", "x-forwarded-proto", "http"}},
		{name: "underscore twins", target: "/api/us", want: 200, absent: spoof,
			hdr: []string{"x_real_ip", "6.6.6.6", "x_forwarded_for", "6.6.6.6", "x_user_id", "mallory"}},
		{name: "two Authorization headers", target: "/api/auth", want: 400, hdr: []string{"authorization", "Bearer a", "authorization", "Bearer b"}},
		{name: "two X-API-Key headers", target: "/api/auth", want: 400, hdr: []string{"x-api-key", "a", "x-api-key", "b"}},
		// net/http refuses it over HTTP/1.1; over HTTP/2 it reads only the
		// first value, yet the message is malformed all the same (RFC 9113
		// §8.1.1: a content-length that differs from the DATA it came with).
		{name: "two different Content-Length values", method: "POST", target: "/api/cl", body: "hello", want: 400,
			hdr: []string{"content-length", "5", "content-length", "10"}},
		{name: "a body that stalls", method: "POST", target: "/api/stall", hdr: []string{"content-length", "10"}, body: "abcd", stall: true, want: 408},
		{name: "TRACE", method: "TRACE", target: "/api/x", want: 405},
		{name: "CONNECT", method: "CONNECT", target: h2Name + ":443", want: 405},
		{name: "OPTIONS asterisk", method: "OPTIONS", target: "*", want: 0},
		{name: "an absolute-form target", target: "https://" + h2Name + "/api/abs", want: 200},
		{name: "a header block of 80 KiB", target: "/api/big", hdr: big, want: 431, h2MayClose: true},
		// 17 fields of 4 KiB: past the 64 KiB limit, within the 4 KiB
		// net/http reads beyond MaxHeaderBytes.
		{name: "a header block of 66 KiB", target: "/api/big", hdr: big[:34], want: 431, h2MayClose: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			code1, body1 := h1Request(t, p.addr, s, tc.h1())
			hits1 := hits.Load() - before

			c := dialH2(t, p.addr, h2Dial{tls: s})
			if err := tc.h2(c); err != nil {
				t.Fatal(err)
			}
			st := c.wait(1, 10*time.Second)
			hits2 := hits.Load() - before - hits1
			ga, _ := c.state()
			t.Logf("HTTP/1.1: %d; HTTP/2: %s (%v)", code1, clip(st.describe()), ga)

			if tc.want != 0 && code1 != tc.want {
				t.Errorf("over HTTP/1.1: %d, want %d", code1, tc.want)
			}
			refusedByClosing := tc.h2MayClose && st.status == 0 && c.closed() && code1 >= 400
			if st.status != code1 && !refusedByClosing {
				t.Errorf("over HTTP/2: %s, over HTTP/1.1: %d", clip(st.describe()), code1)
			}
			if hits1 != hits2 {
				t.Errorf("the backend saw the request %d times over HTTP/1.1, %d over HTTP/2", hits1, hits2)
			}
			if code1 == 200 && st.status == 200 && hits1 == 1 && st.body != body1 {
				t.Errorf("the backend saw over HTTP/1.1:\n%s\nover HTTP/2:\n%s", clip(body1), clip(st.body))
			}
			for _, a := range tc.absent {
				if strings.Contains(body1, a) || strings.Contains(st.body, a) {
					t.Errorf("%q reached the backend:\nHTTP/1.1:\n%s\nHTTP/2:\n%s", a, clip(body1), clip(st.body))
				}
			}
		})
	}
}

// clip shortens s for a failure message.
func clip(s string) string {
	if len(s) > 400 {
		return s[:400] + fmt.Sprintf("… (%d bytes)", len(s))
	}
	return s
}

// HTTP/2 requests that are malformed (RFC 9113 §8.1.1, §8.2, §8.3): the
// connection-specific headers HTTP/1.1 uses to smuggle and to upgrade,
// pseudo-headers missing, doubled or misplaced, bytes no header may hold,
// a Content-Length the DATA frames contradict. Each is refused (a reset
// stream, a 4xx, or the connection closed) and never forwarded; a stream
// refused on its own leaves the connection serving the next one.
func TestH2MalformedRequestsAreRefused(t *testing.T) {
	t.Parallel() // light: runs alongside the other light tests, after the attacks
	var hits atomic.Int64
	p, s := h2Gateway(t, `[{"prefix":"/api","target_url":"`+echoAll(t, &hits)+`"}]`)
	const path = "/api/malformed"
	pseudo := func(method, path string, extra ...string) []string {
		return append([]string{":method", method, ":scheme", "https", ":authority", h2Name, ":path", path}, extra...)
	}
	tests := []struct {
		name   string
		fields []string
		body   string // sent in one DATA frame that ends the stream
		// forwardOK allows the request through, as long as the backend
		// sees none of absent.
		forwardOK bool
		absent    []string
	}{
		{name: "connection", fields: pseudo("GET", path, "connection", "close, x-forwarded-for")},
		{name: "keep-alive", fields: pseudo("GET", path, "keep-alive", "timeout=5")},
		{name: "proxy-connection", fields: pseudo("GET", path, "proxy-connection", "keep-alive")},
		{name: "transfer-encoding", fields: pseudo("POST", path, "transfer-encoding", "chunked"), body: "0\r\n\r\n"},
		{name: "an h2c upgrade", fields: pseudo("GET", path, "upgrade", "h2c", "http2-settings", "AAMAAABkAARAAAAAAAIAAAAA")},
		{name: "a websocket upgrade", fields: pseudo("GET", path, "upgrade", "websocket")},
		{name: "te other than trailers", fields: pseudo("GET", path, "te", "gzip")},
		{name: "an upper-case header name", fields: pseudo("GET", path, "X-User-ID", "mallory")},
		{name: "a pseudo-header after a regular one", fields: []string{":method", "GET", ":scheme", "https", "x-a", "b", ":authority", h2Name, ":path", path}},
		{name: "an unknown pseudo-header", fields: pseudo("GET", path, ":mallory", "x")},
		{name: "a second :path", fields: pseudo("GET", path, ":path", "/api/other")},
		{name: "no :path", fields: []string{":method", "GET", ":scheme", "https", ":authority", h2Name}},
		{name: "an empty :path", fields: pseudo("GET", "")},
		{name: "a :path without its slash", fields: pseudo("GET", "api/malformed")},
		{name: "a :path with a control byte", fields: pseudo("GET", "/api/mal\x01formed")},
		{name: "an asterisk :path for GET", fields: pseudo("GET", "*")},
		{name: "a value with CR LF", fields: pseudo("GET", path, "x-a", "b\r\nx-user-id: mallory")},
		{name: "a value with NUL", fields: pseudo("GET", path, "x-a", "b\x00c")},
		{name: "userinfo in :authority", fields: []string{":method", "GET", ":scheme", "https", ":authority", "mallory@" + h2Name, ":path", path}},
		{name: "extended CONNECT", fields: pseudo("CONNECT", path, ":protocol", "websocket")},
		{name: "Content-Length above the DATA", fields: pseudo("POST", path, "content-length", "10"), body: "abcd"},
		{name: "Content-Length below the DATA", fields: pseudo("POST", path, "content-length", "3"), body: "abcdefghij"},
		{name: "Content-Length with no DATA at all", fields: pseudo("POST", path, "content-length", "10"),
			forwardOK: true, absent: []string{"Content-Length: 10"}},
		{name: "an absolute :path naming another host", fields: pseudo("GET", "https://evil.example"+path),
			forwardOK: true, absent: []string{"evil.example"}},
		{name: "a Host header other than :authority", fields: pseudo("GET", path, "host", "evil.example"),
			forwardOK: true, absent: []string{"evil.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := hits.Load()
			c := dialH2(t, p.addr, h2Dial{tls: s})
			err := c.send(func(w h2Writer) error {
				if err := w.headers(1, tc.body == "", w.block(tc.fields...), 0); err != nil || tc.body == "" {
					return err
				}
				return w.WriteData(1, true, []byte(tc.body))
			})
			if err != nil {
				t.Fatal(err)
			}
			st := c.wait(1, 5*time.Second)
			ga, _ := c.state()
			t.Logf("%s (%v)", clip(st.describe()), ga)
			forwarded := hits.Load() - before
			switch {
			case tc.forwardOK && st.status == 200:
				for _, a := range tc.absent {
					if strings.Contains(st.body, a) {
						t.Errorf("%q reached the backend:\n%s", a, clip(st.body))
					}
				}
			case st.reset, st.status >= 400 && st.status < 500, st.status == 0 && c.closed():
				if forwarded != 0 {
					t.Errorf("refused (%s), yet the backend saw it", st.describe())
				}
			default:
				t.Errorf("%s, want it refused (RST_STREAM or 4xx); the backend saw it %d times", clip(st.describe()), forwarded)
			}
			if c.closed() {
				return
			}
			if err := c.request(3, "GET", "/api/next"); err != nil {
				t.Fatal(err)
			}
			if next := c.wait(3, 5*time.Second); next.status != 200 && !c.closed() {
				t.Errorf("the next request on the connection: %s", clip(next.describe()))
			}
		})
	}
}

// H2C=true serves cleartext HTTP/2 to a client that knows to speak it
// (prior knowledge), through the same request path as everything else;
// an HTTP/1.1 "Upgrade: h2c" is never honoured: the upgrade headers are
// removed and the answer comes over HTTP/1.1, so no HTTP/2 tunnel is ever
// set up past routing and auth.
func TestH2CPriorKnowledgeOnlyNeverUpgrade(t *testing.T) {
	t.Parallel() // light: runs alongside the other light tests, after the attacks
	var hits atomic.Int64
	p := startGateway(t, "H2C=true", `SERVICE_ROUTES=[{"prefix":"/api","target_url":"`+echoAll(t, &hits)+`"}]`)

	t.Run("prior knowledge", func(t *testing.T) {
		c := dialH2(t, p.addr, h2Dial{})
		if err := c.request(1, "GET", "/api/x", "x-user-id", "mallory", "x-forwarded-for", "6.6.6.6"); err != nil {
			t.Fatal(err)
		}
		st := c.wait(1, 5*time.Second)
		if st.status != 200 || !strings.HasPrefix(st.body, "GET /x ") {
			t.Fatalf("over h2c: %s", clip(st.describe()))
		}
		for _, a := range []string{"mallory", "6.6.6.6"} {
			if strings.Contains(st.body, a) {
				t.Errorf("%q reached the backend over h2c:\n%s", a, st.body)
			}
		}
		if st.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("the envelope's security headers are missing over h2c: %v", st.header)
		}
		// The standard library's own client, asked for cleartext HTTP/2.
		tr := &http.Transport{Protocols: new(http.Protocols)}
		tr.Protocols.SetUnencryptedHTTP2(true)
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(p.url("/api/y"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Errorf("net/http's h2c client: %s %d", resp.Proto, resp.StatusCode)
		}
	})

	t.Run("an Upgrade to h2c over HTTP1", func(t *testing.T) {
		before := hits.Load()
		out, _ := raw(t, p.addr, "GET /api/up HTTP/1.1\r\nHost: gw\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"+
			"HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\nPRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 3*time.Second)
		// The preface that followed is answered as what it is over
		// HTTP/1.1: a bad request, after the first answer.
		resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(out)), nil)
		if err != nil || resp.StatusCode != 200 || resp.ProtoMajor != 1 {
			t.Fatalf("answer: %q, want HTTP/1.1 200 (no 101)", firstLine(out))
		}
		body, _ := io.ReadAll(resp.Body)
		if hits.Load()-before != 1 {
			t.Errorf("the backend saw %d requests, want 1", hits.Load()-before)
		}
		for _, h := range []string{"Upgrade:", "Http2-Settings:", "Connection:"} {
			if strings.Contains(string(body), h) {
				t.Errorf("the backend saw %s\n%s", h, body)
			}
		}
	})

	t.Run("hostile input over h2c", func(t *testing.T) {
		for path, want := range map[string]int{"/api/a%2Fb": 400, "/api/%2e%2e/admin": 404} {
			c := dialH2(t, p.addr, h2Dial{})
			if err := c.request(1, "GET", path); err != nil {
				t.Fatal(err)
			}
			if st := c.wait(1, 5*time.Second); st.status != want {
				t.Errorf("%s over h2c: %s, want %d", path, clip(st.describe()), want)
			}
		}
		c := dialH2(t, p.addr, h2Dial{})
		if err := c.request(1, "GET", "/api/x", "upgrade", "h2c"); err != nil {
			t.Fatal(err)
		}
		if st := c.wait(1, 5*time.Second); st.status != 400 && !st.reset {
			t.Errorf("an Upgrade header inside h2c: %s, want it refused", clip(st.describe()))
		}
	})
}

// Streams of one connection run their handlers at the same time: nothing
// the gateway keeps per connection may be touched by them without
// synchronisation. 20 fresh connections, each opening 10 streams at once
// (what a connection keeps is set up by its first requests, so each new
// connection is a new chance to catch it); the race-enabled build reports
// any such access, and the gateway must exit cleanly.
func TestH2ConcurrentStreamsShareNoUnsynchronisedState(t *testing.T) {
	t.Parallel() // light: runs alongside the other light tests, after the attacks
	up := backend(t, func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	p, s := h2Gateway(t, `[{"prefix":"/","target_url":"`+up+`"}]`)
	for round := range 20 {
		c := dialH2(t, p.addr, h2Dial{tls: s})
		const streams = 10
		if err := c.send(func(w h2Writer) error {
			for i := range streams {
				if err := w.headers(uint32(2*i+1), true, w.block(c.fields("GET", fmt.Sprintf("/r%d/%d", round, i))...), 0); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		for i := range streams {
			if st := c.wait(uint32(2*i+1), 10*time.Second); st.status != 200 {
				t.Errorf("round %d, stream %d: %s", round, 2*i+1, clip(st.describe()))
			}
		}
	}
	assertCleanExit(t, p)
}

// The first header block of an HTTP/2 connection that never ends (HEADERS
// without END_HEADERS, then silence or empty CONTINUATION frames, which
// keep the connection busy without counting against any size limit) is
// cut at the request-head timeout, as an HTTP/1.1 head is, instead of
// holding the connection until the idle timeout.
func TestH2FirstHeaderBlockThatNeverEndsIsCutOff(t *testing.T) {
	t.Parallel()
	p, s := h2Gateway(t, `[{"prefix":"/","target_url":"http://127.0.0.1:1"}]`)
	for _, tc := range []struct {
		name  string
		trick func(c *h2Client, stop <-chan struct{})
	}{
		{"silence", func(*h2Client, <-chan struct{}) {}},
		{"empty CONTINUATION frames", func(c *h2Client, stop <-chan struct{}) {
			for {
				select {
				case <-stop:
					return
				case <-time.After(200 * time.Millisecond):
				}
				if c.send(func(w h2Writer) error { return w.WriteContinuation(1, false, nil) }) != nil {
					return
				}
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := dialH2(t, p.addr, h2Dial{tls: s})
			start := time.Now()
			err := c.send(func(w h2Writer) error {
				block := w.block(c.fields("GET", "/x")...)
				return w.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block[:len(block)/2], EndHeaders: false})
			})
			if err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go tc.trick(c, stop)
			select {
			case <-c.done:
			case <-time.After(20 * time.Second):
				t.Fatal("the connection is still open 20 s after a header block that never ends")
			}
			if d := time.Since(start); d < 8*time.Second || d > 14*time.Second {
				t.Errorf("closed after %v, want about the 10 s head timeout", d.Round(time.Millisecond))
			}
		})
	}
}

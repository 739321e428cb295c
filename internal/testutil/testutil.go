// Package testutil holds the small helpers many packages' tests share: a
// goroutine-safe log sink, a clock tests advance instead of sleeping, and a
// reader of one metric's (or one series') value. Only tests import it.
package testutil

import (
	"bytes"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// SyncBuffer is a bytes.Buffer that servers' goroutines (or a child process)
// may write while the test reads it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns everything written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// CountMsg counts JSON log lines whose "msg" is msg.
func (s *SyncBuffer) CountMsg(msg string) int {
	return strings.Count(s.String(), `"msg":"`+msg+`"`)
}

// Clock is an injected clock: Now returns a time the test moves with Advance.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock set to t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// MetricValue returns the value of the first series of the counter or gauge
// name in g, failing the test when it is not registered.
func MetricValue(t testing.TB, g prometheus.Gatherer, name string) float64 {
	t.Helper()
	v, registered := seriesValue(t, g, name, nil)
	if !registered {
		t.Fatalf("metric %s not registered", name)
	}
	return v
}

// SeriesValue returns the value of the counter or gauge series of name in
// g that carries every label in labels, 0 when there is none (yet).
func SeriesValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	v, _ := seriesValue(t, g, name, labels)
	return v
}

func seriesValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) (v float64, registered bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if hasLabels(m, labels) {
				if c := m.GetCounter(); c != nil {
					return c.GetValue(), true
				}
				return m.GetGauge().GetValue(), true
			}
		}
		return 0, true
	}
	return 0, false
}

func hasLabels(m *dto.Metric, labels map[string]string) bool {
	n := 0
	for _, lp := range m.GetLabel() {
		if want, ok := labels[lp.GetName()]; ok {
			if want != lp.GetValue() {
				return false
			}
			n++
		}
	}
	return n == len(labels)
}

// Prefixes parses CIDRs (a bare address is not one: write /32 or /128),
// panicking on a malformed one.
func Prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// DeadAddr returns a loopback host:port on which nothing listens (one
// that was free a moment ago).
func DeadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

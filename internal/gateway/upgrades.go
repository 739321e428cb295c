package gateway

import (
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portcullis/portcullis/internal/telemetry"
)

// upgradeTracker remembers the client side of upgraded (WebSocket)
// connections, which http.Server.Shutdown does not track, so shutdown can
// send each a close frame with status 1001 (going away, RFC 6455 §7.4.1).
type upgradeTracker struct {
	mu    sync.Mutex // guards conns; taken per upgrade, not per request
	conns map[*trackedConn]struct{}
}

func newUpgradeTracker() *upgradeTracker {
	return &upgradeTracker{conns: make(map[*trackedConn]struct{})}
}

// track wraps a hijacked connection (request.Info.OnHijack).
func (t *upgradeTracker) track(c net.Conn) net.Conn {
	tc := &trackedConn{Conn: c, t: t}
	t.mu.Lock()
	t.conns[tc] = struct{}{}
	t.mu.Unlock()
	return tc
}

// closeFrame1001 is an unmasked (server-to-client) close frame with status
// 1001 "going away".
var closeFrame1001 = []byte{0x88, 0x02, 0x03, 0xE9}

// closeAll sends 1001 to every tracked connection and closes it.
func (t *upgradeTracker) closeAll() int {
	t.mu.Lock()
	conns := make([]*trackedConn, 0, len(t.conns))
	for c := range t.conns {
		conns = append(conns, c)
	}
	t.mu.Unlock()
	for _, c := range conns {
		c.goAway()
	}
	return len(conns)
}

// trackedConn serialises writes so the close frame is never written in the
// middle of another Write. (A relayed frame that the copier split across two
// writes could still be cut short; the connection closes right after, so the
// client sees the close either way.)
type trackedConn struct {
	net.Conn
	t    *upgradeTracker
	wmu  sync.Mutex
	once sync.Once
}

func (c *trackedConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.Conn.Write(p)
}

func (c *trackedConn) goAway() {
	c.wmu.Lock()
	_ = c.Conn.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = c.Conn.Write(closeFrame1001)
	c.wmu.Unlock()
	c.Close()
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

// idleBound closes c, and calls cancel (which ends the backend's side),
// once no byte has crossed the tunnel either way for TUNNEL_IDLE_TIMEOUT.
func (g *Gateway) idleBound(c net.Conn, cancel func()) net.Conn {
	timeout := g.cfg.TunnelIdleTimeout
	ic := &idleConn{Conn: c, timeout: timeout}
	ic.touch()
	// Armed only once assigned: the callback reads ic.timer.
	ic.timer = time.AfterFunc(math.MaxInt64, func() {
		if ic.expired() {
			g.metrics.TunnelIdleTimeouts.Inc()
			telemetry.Component(g.log, "gateway").Info("tunnel closed: idle", "remote", c.RemoteAddr().String(),
				"idle_timeout", timeout.String())
			cancel()
			_ = ic.Close()
		}
	})
	ic.timer.Reset(timeout)
	return ic
}

// idleConn is the client side of an upgraded tunnel. Every byte read from
// or written to the client counts as activity, so it sees traffic in both
// directions; a timer checks, and re-arms for the time left, instead of a
// deadline per read that a one-way stream would trip.
type idleConn struct {
	net.Conn
	timeout time.Duration
	last    atomic.Int64 // UnixNano of the last byte either way
	timer   *time.Timer
}

func (c *idleConn) touch() { c.last.Store(time.Now().UnixNano()) }

// expired reports whether the tunnel has been idle for the timeout; if not,
// it re-arms the timer for the rest.
func (c *idleConn) expired() bool {
	idle := time.Since(time.Unix(0, c.last.Load()))
	if idle >= c.timeout {
		return true
	}
	c.timer.Reset(c.timeout - idle)
	return false
}

func (c *idleConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.touch()
	}
	return n, err
}

func (c *idleConn) Close() error {
	c.timer.Stop()
	return c.Conn.Close()
}

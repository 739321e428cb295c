// Package connlimit caps client TCP connections at accept time: per peer IP
// (MAX_CONNS_PER_IP) and in total (MAX_CONNECTIONS). A refused connection is
// closed at once, before any byte of HTTP is read or written.
package connlimit

import (
	"context"
	"encoding/binary"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/realip"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Refusal reasons, the values of connections_rejected_total's reason label.
const (
	ReasonPerIP    = "per_ip"   // the peer IP (IPv6: its /64) has MaxConnsPerIP open
	ReasonGlobal   = "global"   // MaxConnections are open
	ReasonTracking = "tracking" // MaxTrackedIPs distinct IPs have connections open
)

// Options configure a Listener.
type Options struct {
	// MaxConnsPerIP caps concurrent connections per peer IP, IPv6 peers
	// keyed per /64 (realip.Key). 0 = off. It counts TCP peers: behind an
	// edge proxy that is not in TRUSTED_PROXIES every client shares one.
	MaxConnsPerIP int
	// MaxConnections caps open connections in total. <= 0 = no cap.
	MaxConnections int
	// Trusted reports whether a peer is a trusted proxy; those are exempt
	// from the per-IP cap (one edge proxy carries many clients) but count
	// towards MaxConnections. nil = nobody is trusted.
	Trusted func(netip.Addr) bool
	// MaxTrackedIPs caps the distinct peer keys with open connections (the
	// per-IP table holds only those, so it is bounded anyway by the open
	// connections; this bounds it tighter). <= 0 = no cap.
	MaxTrackedIPs int
	// Log gets refusals at debug, at most one line per second with the count
	// since the last line. nil = no logs.
	Log *slog.Logger
	// Registerer gets connections_rejected_total. nil = not registered.
	Registerer prometheus.Registerer
}

// Listener is a net.Listener that enforces Options at Accept. Its conns
// release their slot on the first Close.
type Listener struct {
	net.Listener
	o        Options
	open     atomic.Int64
	tracked  atomic.Int64
	shards   [shardCount]shard
	rejected [3]prometheus.Counter // per_ip, global, tracking

	logMu    sync.Mutex // guards lastLog; taken only on a refusal with debug on
	lastLog  time.Time
	sinceLog atomic.Int64
}

const shardCount = 64

type shard struct {
	mu sync.Mutex // held for one map update per accept/close
	m  map[netip.Addr]int32
	_  [48]byte // keep shards on separate cache lines
}

var reasons = [...]string{ReasonPerIP, ReasonGlobal, ReasonTracking}

// NewListener wraps inner. Registering the metric twice (two listeners on
// one registry) shares the counter.
func NewListener(inner net.Listener, o Options) *Listener {
	l := &Listener{Listener: inner, o: o}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "connections_rejected_total",
		Help: "Client TCP connections closed at accept time, by reason: per_ip (MAX_CONNS_PER_IP), global (MAX_CONNECTIONS), tracking (MAX_TRACKED_IPS).",
	}, []string{"reason"})
	vec = telemetry.MustRegister(o.Registerer, vec)
	for i, r := range reasons {
		l.rejected[i] = vec.WithLabelValues(r)
	}
	if o.MaxConnsPerIP > 0 {
		for i := range l.shards {
			l.shards[i].m = make(map[netip.Addr]int32)
		}
	}
	return l
}

// Open is the number of connections accepted and not yet closed.
func (l *Listener) Open() int64 { return l.open.Load() }

// Tracked is the number of peer keys in the per-IP table.
func (l *Listener) Tracked() int64 { return l.tracked.Load() }

// Accept returns the next connection within the caps. Refused connections
// are closed (with a RST, so no TIME_WAIT piles up on our side) and skipped:
// only the inner listener's errors are returned.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		key, reason := l.admit(c)
		if reason < 0 {
			return &conn{Conn: c, l: l, key: key}, nil
		}
		l.refuse(c, reason)
	}
}

const (
	rPerIP = iota
	rGlobal
	rTracking
)

// admit takes the slots for c; reason is -1 when admitted. key is the per-IP
// table key the conn must release (invalid when it holds no per-IP slot).
func (l *Listener) admit(c net.Conn) (key netip.Addr, reason int) {
	if n := l.open.Add(1); l.o.MaxConnections > 0 && n > int64(l.o.MaxConnections) {
		l.open.Add(-1)
		return netip.Addr{}, rGlobal
	}
	if l.o.MaxConnsPerIP <= 0 {
		return netip.Addr{}, -1
	}
	peer := peerAddr(c)
	if !peer.IsValid() || (l.o.Trusted != nil && l.o.Trusted(peer)) {
		return netip.Addr{}, -1
	}
	key = realip.Key(peer)
	s := l.shardOf(key)
	s.mu.Lock()
	n, ok := s.m[key]
	switch {
	case n >= int32(l.o.MaxConnsPerIP):
		reason = rPerIP
	case !ok && l.o.MaxTrackedIPs > 0 && l.tracked.Load() >= int64(l.o.MaxTrackedIPs):
		reason = rTracking
	default:
		if !ok {
			l.tracked.Add(1)
		}
		s.m[key] = n + 1
		reason = -1
	}
	s.mu.Unlock()
	if reason >= 0 {
		l.open.Add(-1)
		return netip.Addr{}, reason
	}
	return key, -1
}

// release gives back the slots of a closed conn.
func (l *Listener) release(key netip.Addr) {
	if key.IsValid() {
		s := l.shardOf(key)
		s.mu.Lock()
		if n := s.m[key] - 1; n > 0 {
			s.m[key] = n
		} else {
			// Deleted at zero: the table holds only peers with open conns.
			delete(s.m, key)
			l.tracked.Add(-1)
		}
		s.mu.Unlock()
	}
	l.open.Add(-1)
}

func (l *Listener) shardOf(a netip.Addr) *shard {
	b := a.As16()
	x := binary.LittleEndian.Uint64(b[:8]) ^ binary.LittleEndian.Uint64(b[8:])
	x *= 0x9e3779b97f4a7c15
	return &l.shards[x>>58] // top 6 bits: 64 shards
}

func (l *Listener) refuse(c net.Conn, reason int) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	l.rejected[reason].Inc()
	if l.o.Log == nil || !l.o.Log.Enabled(context.Background(), slog.LevelDebug) {
		return
	}
	// Rate-limited: a flood must not flood the logs (STYLE habit 9).
	n := l.sinceLog.Add(1)
	now := time.Now()
	l.logMu.Lock()
	if now.Sub(l.lastLog) < time.Second {
		l.logMu.Unlock()
		return
	}
	l.lastLog = now
	l.logMu.Unlock()
	l.sinceLog.Add(-n)
	l.o.Log.Debug("connection refused", "reason", reasons[reason], "peer", peerAddr(c).String(),
		"refused_since_last_log", n, "open", l.open.Load())
}

func peerAddr(c net.Conn) netip.Addr {
	switch a := c.RemoteAddr().(type) {
	case *net.TCPAddr:
		return a.AddrPort().Addr().Unmap()
	case nil:
		return netip.Addr{}
	default:
		ap, err := netip.ParseAddrPort(a.String())
		if err != nil {
			return netip.Addr{}
		}
		return ap.Addr().Unmap()
	}
}

// conn releases its slots on the first Close.
type conn struct {
	net.Conn
	l      *Listener
	key    netip.Addr
	closed atomic.Bool
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.key)
	}
	return err
}

// CloseWrite keeps net/http's half-close before closing a connection after
// an error answer, so the client reads the answer instead of a RST.
func (c *conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// ReadFrom keeps the inner conn's splice/sendfile path.
func (c *conn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

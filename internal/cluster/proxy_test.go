package cluster

import (
	"bytes"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// blackhole is a loopback TCP proxy to a Redis that can cut its
// connections the way a lost node, a moved address or a dropped NAT entry
// does: it stops forwarding without closing anything, so neither side ever
// sees a reset or an EOF; writes still succeed, reads wait forever.
type blackhole struct {
	Addr string
	to   string
	ln   net.Listener

	mu    sync.Mutex
	conns []*holeConn
	// dropNew: connections accepted from now on are cut from the start.
	dropNew bool

	// subscribes counts the SUBSCRIBE commands forwarded to Redis.
	subscribes atomic.Int32
	wg         sync.WaitGroup
}

type holeConn struct {
	client, server net.Conn
	cut            atomic.Bool
}

func newBlackhole(t *testing.T, to string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{Addr: ln.Addr().String(), to: to, ln: ln}
	b.wg.Go(b.accept)
	t.Cleanup(func() {
		_ = ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			_ = c.client.Close()
			_ = c.server.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *blackhole) accept() {
	for {
		client, err := b.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", b.to)
		if err != nil {
			_ = client.Close()
			continue
		}
		c := &holeConn{client: client, server: server}
		b.mu.Lock()
		c.cut.Store(b.dropNew)
		b.conns = append(b.conns, c)
		b.mu.Unlock()
		b.wg.Go(func() { b.pipe(c, client, server, true) })
		b.wg.Go(func() { b.pipe(c, server, client, false) })
	}
}

// pipe copies from → to until either closes; once c is cut, what it reads
// is thrown away (read, so the sender's writes keep succeeding).
func (b *blackhole) pipe(c *holeConn, from, to net.Conn, up bool) {
	buf := make([]byte, 32<<10)
	for {
		k, err := from.Read(buf)
		if err != nil {
			return
		}
		if c.cut.Load() {
			continue
		}
		if up && bytes.Contains(bytes.ToLower(buf[:k]), []byte("subscribe")) {
			b.subscribes.Add(1)
		}
		if _, err := to.Write(buf[:k]); err != nil {
			return
		}
	}
}

// CutExisting silently drops every connection open now; new ones work
// (Redis moved to another address, a NAT entry lost).
func (b *blackhole) CutExisting() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, c := range b.conns {
		c.cut.Store(true)
	}
}

// CutAll drops every connection, open now or opened until Heal (a lost
// node).
func (b *blackhole) CutAll() {
	b.mu.Lock()
	b.dropNew = true
	b.mu.Unlock()
	b.CutExisting()
}

// Heal lets connections opened from now on through; cut ones stay cut.
func (b *blackhole) Heal() {
	b.mu.Lock()
	b.dropNew = false
	b.mu.Unlock()
}

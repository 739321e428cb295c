package tlscert

import (
	"bufio"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// writeFile replaces path the way editors and deploy tools do: a new file
// renamed over the old, so readers see the old content or the new, whole.
func writeFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// writePair writes dir/name.crt and dir/name.key.
func writePair(t testing.TB, dir, name string, certPEM, keyPEM []byte) {
	t.Helper()
	writeFile(t, filepath.Join(dir, name+".crt"), certPEM)
	writeFile(t, filepath.Join(dir, name+".key"), keyPEM)
}

// serve runs a TLS server with cfg on loopback: after the handshake it
// writes ClientSubject of the connection and a newline, then echoes.
func serve(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				tc := c.(*tls.Conn)
				_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
				if err := tc.Handshake(); err != nil {
					return
				}
				st := tc.ConnectionState()
				fmt.Fprintf(tc, "%s\n", ClientSubject(&st))
				_, _ = io.Copy(tc, tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// client is a connection to a serve server past the subject line.
type client struct {
	*tls.Conn
	r       *bufio.Reader
	subject string // what the server saw, by ClientSubject
}

// dial connects with cfg and reads the server's subject line; with TLS 1.3 a
// refused client certificate shows only there, after the client's side of
// the handshake is done.
func dial(t *testing.T, addr string, cfg *tls.Config) (*client, error) {
	t.Helper()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(c)
	line, err := r.ReadString('\n')
	if err != nil {
		return nil, err
	}
	return &client{Conn: c, r: r, subject: line[:len(line)-1]}, nil
}

// echo checks that the connection still carries data both ways.
func (c *client) echo(t *testing.T) {
	t.Helper()
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatalf("writing on an established connection: %v", err)
	}
	if got, err := c.r.ReadString('\n'); err != nil || got != "ping\n" {
		t.Fatalf("echo on an established connection: %q, %v", got, err)
	}
}

// presented returns the common name of the certificate the server showed.
func (c *client) presented() string {
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

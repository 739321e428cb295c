package tlscert

import (
	"cmp"
	"context"
	"crypto/tls"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/testutil"
)

func reloads(t *testing.T, reg prometheus.Gatherer, result string) float64 {
	t.Helper()
	return testutil.SeriesValue(t, reg, "tls_certificate_reloads_total", map[string]string{"result": result})
}

func expirySeries(t *testing.T, reg prometheus.Gatherer, name string) float64 {
	t.Helper()
	return testutil.SeriesValue(t, reg, "tls_certificate_expiry_timestamp_seconds", map[string]string{"name": name})
}

// presentedFor dials a fresh connection and returns the certificate shown.
func (f *fixture) presentedFor(t *testing.T, addr, serverName string) string {
	t.Helper()
	c, err := dial(t, addr, f.client(serverName))
	if err != nil {
		t.Fatalf("handshake for %s: %v", serverName, err)
	}
	c.Close()
	return c.presented()
}

func TestReload(t *testing.T) {
	f := newFixture(t)
	s := f.store(t, f.options())
	addr := serve(t, s.TLSConfig())
	before, err := dial(t, addr, f.client("a.example.test"))
	if err != nil {
		t.Fatal(err)
	}

	// A renewed certificate: the next handshake gets it, the connection
	// made before keeps working.
	f.write(t, "a", testutil.LeafSpec{CN: "a-renewed", DNS: []string{"a.example.test"}})
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := f.presentedFor(t, addr, "a.example.test"); got != "a-renewed" {
		t.Errorf("after the reload the server presented %q, want a-renewed", got)
	}
	before.echo(t)
	if got := reloads(t, f.reg, "success"); got != 1 {
		t.Errorf("reloads_total{success} = %v, want 1", got)
	}
	if !strings.Contains(f.logs.String(), `"msg":"TLS certificates reloaded","component":"tls","certificates":3`) {
		t.Errorf("no reload line with the count:\n%s", f.logs)
	}

	// A broken replacement: refused, the renewed certificate stays.
	writeFile(t, filepath.Join(f.dir, "a.crt"), []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	err = s.Reload()
	if err == nil || !strings.Contains(err.Error(), "TLS_CERTS_DIR: a.crt + a.key") {
		t.Fatalf("Reload of a broken a.crt: %v", err)
	}
	if got := f.presentedFor(t, addr, "a.example.test"); got != "a-renewed" {
		t.Errorf("after a failed reload the server presented %q, want a-renewed", got)
	}
	if got := reloads(t, f.reg, "failure"); got != 1 {
		t.Errorf("reloads_total{failure} = %v, want 1", got)
	}
	if f.logs.CountMsg("TLS certificates reload failed; the previous ones stay in force") != 1 {
		t.Errorf("no warning for the failed reload:\n%s", f.logs)
	}
	before.echo(t)

	// A removed pair loses its expiry series.
	if expirySeries(t, f.reg, "*.wild.example.test") == 0 {
		t.Fatal("no expiry series for the wildcard certificate")
	}
	f.write(t, "a", testutil.LeafSpec{CN: "a", DNS: []string{"a.example.test"}})
	os.Remove(filepath.Join(f.dir, "wild.crt"))
	os.Remove(filepath.Join(f.dir, "wild.key"))
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := expirySeries(t, f.reg, "*.wild.example.test"); got != 0 {
		t.Errorf("the removed certificate's expiry series is still there: %v", got)
	}
	if expirySeries(t, f.reg, "a.example.test") == 0 {
		t.Error("the remaining certificate lost its expiry series")
	}
}

// TestRenewalNextToOldCertificate pins that when two files name the same
// host, the certificate valid longest is served, whatever the file names.
func TestRenewalNextToOldCertificate(t *testing.T) {
	f := newFixture(t)
	f.write(t, "0-a-renewed", testutil.LeafSpec{CN: "a-renewed", DNS: []string{"a.example.test"}, NotAfter: time.Now().Add(48 * time.Hour)})
	s := f.store(t, f.options())
	c, _ := s.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.example.test"})
	if got := c.Leaf.Subject.CommonName; got != "a-renewed" {
		t.Errorf("served %q, want a-renewed", got)
	}
}

// startRun runs s.Run until the test ends, and checks that it returns when
// its context ends.
func startRun(t *testing.T, s *Store) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		s.Run(ctx)
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// eventually polls cond until it holds, failing the test after a deadline:
// file notifications arrive when the kernel and the debounce decide.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// untilWatching repeats touch, a change that reloads the same certificates,
// until a reload is counted: Run has then added its watches, and a change
// made after this is seen.
func untilWatching(t *testing.T, reg prometheus.Gatherer, touch func()) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for base := reloads(t, reg, "success"); ; {
		touch()
		for range 50 { // longer than the debounce
			if reloads(t, reg, "success") > base {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
		if time.Now().After(deadline) {
			t.Fatal("the watcher never reloaded")
		}
	}
}

func TestRunReloadsOnRenameInDir(t *testing.T) {
	f := newFixture(t)
	s := f.store(t, f.options())
	addr := serve(t, s.TLSConfig())
	startRun(t, s)
	untilWatching(t, f.reg, func() { writeFile(t, filepath.Join(f.dir, "probe.txt"), nil) })
	before, err := dial(t, addr, f.client("a.example.test"))
	if err != nil {
		t.Fatal(err)
	}

	f.write(t, "a", testutil.LeafSpec{CN: "a-renewed", DNS: []string{"a.example.test"}})
	eventually(t, "the renewed certificate", func() bool { return f.presentedFor(t, addr, "a.example.test") == "a-renewed" })
	before.echo(t)

	failures := reloads(t, f.reg, "failure")
	writeFile(t, filepath.Join(f.dir, "a.key"), []byte("not a key"))
	eventually(t, "a failed reload", func() bool { return reloads(t, f.reg, "failure") > failures })
	if got := f.presentedFor(t, addr, "a.example.test"); got != "a-renewed" {
		t.Errorf("after a broken key the server presented %q, want a-renewed", got)
	}
	before.echo(t)
}

// TestRunFollowsSecretSymlinkSwap lays files out as a Kubernetes Secret
// volume does (tls.crt -> ..data/tls.crt, ..data -> a timestamped
// directory) and updates them the same way: a new directory, then ..data
// renamed over.
func TestRunFollowsSecretSymlinkSwap(t *testing.T) {
	f := newFixture(t)
	vol := t.TempDir()
	version := func(name string, s testutil.LeafSpec) string {
		d := filepath.Join(vol, "..2026_"+name)
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
		c, k := f.ca.Leaf(t, s)
		writeFile(t, filepath.Join(d, "tls.crt"), c)
		writeFile(t, filepath.Join(d, "tls.key"), k)
		return filepath.Base(d)
	}
	swap := func(target string) {
		tmp := filepath.Join(vol, "..data_tmp")
		if err := os.Symlink(target, tmp); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(vol, "..data")); err != nil {
			t.Fatal(err)
		}
	}
	first := version("1", testutil.LeafSpec{CN: "a", DNS: []string{"a.example.test"}})
	swap(first)
	for _, name := range []string{"tls.crt", "tls.key"} {
		if err := os.Symlink(filepath.Join("..data", name), filepath.Join(vol, name)); err != nil {
			t.Fatal(err)
		}
	}
	o := f.options()
	o.Dir, o.CertFile, o.KeyFile = "", filepath.Join(vol, "tls.crt"), filepath.Join(vol, "tls.key")
	s := f.store(t, o)
	addr := serve(t, s.TLSConfig())
	startRun(t, s)
	untilWatching(t, f.reg, func() { swap(first) })

	swap(version("2", testutil.LeafSpec{CN: "a-renewed", DNS: []string{"a.example.test"}}))
	eventually(t, "the renewed certificate", func() bool { return f.presentedFor(t, addr, "a.example.test") == "a-renewed" })
}

func TestRelevantEvents(t *testing.T) {
	s := &Store{opts: Options{CertFile: "/etc/tls/tls.crt", KeyFile: "/etc/tls/tls.key", ClientCAFile: "/etc/ca/clients.pem"}}
	dirs := s.watched()
	tests := []struct {
		name string
		op   fsnotify.Op
		want bool
	}{
		{name: "/etc/tls/tls.crt", want: true},
		{name: "/etc/tls/tls.key", op: fsnotify.Chmod, want: false},
		{name: "/etc/tls/..data", want: true},
		{name: "/etc/tls/other.PEM", want: false},
		{name: "/etc/ca/clients.pem", want: true},
		{name: "/etc/ca/tls.crt", want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name+" "+tt.op.String(), func(t *testing.T) {
			if got := relevant(dirs, fsnotify.Event{Name: tt.name, Op: cmp.Or(tt.op, fsnotify.Create)}); got != tt.want {
				t.Errorf("relevant = %v, want %v", got, tt.want)
			}
		})
	}
}

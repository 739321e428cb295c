package apikey

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestLookupEnvDigests(t *testing.T) {
	t.Parallel()
	const alpha, bravo = "alpha-key-0123456789abcdef", "bravo-key-0123456789abcdef"
	log, logs := captureLogs(t)
	logs.forbid(alpha, bravo)
	s := newStore(t, Options{
		Digests: []string{hexOf(alpha), strings.ToUpper(hexOf(bravo))},
		Log:     log,
	})
	tests := []struct {
		name    string
		key     string
		want    Identity
		wantErr error
	}{
		{name: "known key", key: alpha, want: Identity{Name: nameOf(alpha)}},
		{name: "digest given in upper case", key: bravo, want: Identity{Name: nameOf(bravo)}},
		{name: "unknown key", key: "charlie", wantErr: ErrUnknown},
		{name: "empty key", key: "", wantErr: ErrUnknown},
		{name: "the digest is not the key", key: hexOf(alpha), wantErr: ErrUnknown},
		{name: "key one byte too long", key: strings.Repeat("a", MaxKeyBytes+1), wantErr: ErrUnknown},
		{name: "900 KB key is refused unhashed", key: strings.Repeat("k", 900<<10), wantErr: ErrUnknown},
		{name: "prefix of a known key", key: alpha[:len(alpha)-1], wantErr: ErrUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Lookup(context.Background(), tt.key)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Lookup = %+v, %v; want %+v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestEnabled(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "keys")
	if err := os.WriteFile(file, []byte("# no keys yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		opts Options
		want bool
	}{
		{name: "nothing configured", opts: Options{}, want: false},
		{name: "env digest", opts: Options{Digests: []string{hexOf("k")}}, want: true},
		{name: "empty key file", opts: Options{File: file}, want: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t, tt.opts)
			if got := s.Enabled(); got != tt.want {
				t.Fatalf("Enabled() = %v, want %v", got, tt.want)
			}
			if _, err := s.Lookup(context.Background(), "k2"); !errors.Is(err, ErrUnknown) {
				t.Fatalf("Lookup of an unknown key = %v, want ErrUnknown", err)
			}
		})
	}
}

func TestNewRejectsBadDigest(t *testing.T) {
	t.Parallel()
	const plain = "a-plain-key-passed-as-a-hash"
	_, err := New(t.Context(), Options{Digests: []string{hexOf("ok"), plain}})
	if err == nil {
		t.Fatal("New accepted a value that is not a digest")
	}
	if !strings.Contains(err.Error(), "#2") || strings.Contains(err.Error(), plain) {
		t.Fatalf("error %q: want it to name entry #2 without its value", err)
	}
}

func TestParseKeyFile(t *testing.T) {
	t.Parallel()
	a, b, c := hexOf("key-a"), hexOf("key-b"), hexOf("key-c")
	const plain = "my-plain-secret-key"
	tests := []struct {
		name    string
		content string
		want    map[string]string // hex digest → name
		wantErr string            // substring; empty = no error
	}{
		{
			name:    "names, bare hashes, comments, blank lines, CRLF",
			content: "# billing team\r\nbilling:" + a + "\r\n\n   \n" + b + "\n  team:alice : " + c + "  \n",
			want:    map[string]string{a: "billing", b: "key:" + b[:12], c: "team:alice"},
		},
		{name: "empty file", content: "", want: map[string]string{}},
		{name: "only comments", content: "# a\n#b\n", want: map[string]string{}},
		{name: "upper-case hex", content: strings.ToUpper(a), want: map[string]string{a: "key:" + a[:12]}},
		{name: "plain key instead of a hash", content: "# ok\n" + a + "\n" + plain + "\n", wantErr: "line 3: expected a SHA-256 digest"},
		{name: "short hash", content: "svc:" + a[:63], wantErr: "line 1: expected a SHA-256 digest"},
		{name: "non-hex hash", content: "svc:" + strings.Repeat("g", 64), wantErr: "line 1"},
		{name: "empty name", content: ":" + a, wantErr: "line 1: expected name:hash"},
		{name: "name with a control character", content: "bad\x01name:" + a, wantErr: "line 1: expected name:hash"},
		{name: "duplicate digest", content: "one:" + a + "\n#\ntwo:" + a, wantErr: "line 3: the same digest is already on line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseKeyFile("/etc/keys", []byte(tt.content))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "/etc/keys") {
					t.Fatalf("error = %v, want one naming /etc/keys and containing %q", err, tt.wantErr)
				}
				if strings.Contains(err.Error(), plain) || strings.Contains(err.Error(), a[:16]) {
					t.Fatalf("error %q repeats the line's content", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("error = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d keys, want %d", len(got), len(tt.want))
			}
			for h, name := range tt.want {
				d, _ := parseDigest(h)
				if got[d] != name {
					t.Errorf("name of %s… = %q, want %q", h[:8], got[d], name)
				}
			}
		})
	}
}

func TestKeyFileAtBoot(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	good := filepath.Join(dir, "good")
	bad := filepath.Join(dir, "bad")
	writeFile(t, good, "alice:"+hexOf("alice-key")+"\n")
	writeFile(t, bad, "alice:"+hexOf("alice-key")+"\nnot-a-hash\n")
	tests := []struct {
		name    string
		file    string
		wantErr string
	}{
		{name: "good file", file: good},
		{name: "bad line", file: bad, wantErr: "line 2"},
		{name: "missing file", file: filepath.Join(dir, "missing"), wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(t.Context(), Options{File: tt.file, Digests: []string{hexOf("env-key")}})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "API_KEYS_FILE") {
					t.Fatalf("New error = %v, want API_KEYS_FILE … %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for key, want := range map[string]string{"alice-key": "alice", "env-key": nameOf("env-key")} {
				if id, err := s.Lookup(context.Background(), key); err != nil || id.Name != want {
					t.Fatalf("Lookup(%s) = %+v, %v; want %s", key, id, err, want)
				}
			}
		})
	}
}

func TestKeyFileReload(t *testing.T) {
	t.Parallel()
	const oldKey, newKey, plain = "old-key-0001", "new-key-0002", "pasted-plain-key-0003"
	tests := []struct {
		name    string
		noWatch bool // polling only
		poll    time.Duration
		rewrite func(t *testing.T, path, content string)
	}{
		{name: "fsnotify, rewritten in place", rewrite: writeFile},
		{name: "fsnotify, atomic rename", rewrite: renameInto},
		{name: "mtime polling only", noWatch: true, poll: 50 * time.Millisecond, rewrite: writeFile},
		{name: "symlink swapped like a Kubernetes ConfigMap", rewrite: swapSymlink},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			path := filepath.Join(dir, "keys")
			tt.rewrite(t, path, "old:"+hexOf(oldKey)+"\n")
			log, logs := captureLogs(t)
			logs.forbid(oldKey, newKey, plain)
			reg := prometheus.NewRegistry()
			s := newStore(t, Options{File: path, FilePollInterval: tt.poll, noWatch: tt.noWatch, Log: log, Registerer: reg})
			lookup := func(key string) (Identity, error) { return s.Lookup(context.Background(), key) }

			if id, err := lookup(oldKey); err != nil || id.Name != "old" {
				t.Fatalf("before the rewrite: Lookup = %+v, %v; want old", id, err)
			}
			tt.rewrite(t, path, "# rotated\nnew:"+hexOf(newKey)+"\n")
			eventually(t, time.Second, "the new key works and the old one fails", func() bool {
				id, err := lookup(newKey)
				_, errOld := lookup(oldKey)
				return err == nil && id.Name == "new" && errors.Is(errOld, ErrUnknown)
			})

			// A bad rewrite keeps the previous keys and is logged, without the line.
			tt.rewrite(t, path, "new:"+hexOf(newKey)+"\n"+plain+"\n")
			eventually(t, 2*time.Second, "the bad file is logged", func() bool {
				return logs.count("reload failed") > 0
			})
			if id, err := lookup(newKey); err != nil || id.Name != "new" {
				t.Fatalf("after a bad rewrite: Lookup = %+v, %v; want the previous keys kept", id, err)
			}
			if !strings.Contains(logs.String(), "line 2") {
				t.Errorf("reload error does not name the line:\n%s", logs)
			}
			if got := counter(t, reg, "apikey_file_reloads_total", map[string]string{"result": "error"}); got < 1 {
				t.Errorf("apikey_file_reloads_total{result=error} = %v, want ≥ 1", got)
			}
		})
	}
}

// writeFile rewrites path in place (truncate + write, as most editors and
// `echo >` do).
func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}

// renameInto writes a temp file and renames it over path (atomic replace).
func renameInto(t *testing.T, path, content string) {
	t.Helper()
	tmp := path + ".tmp"
	writeFile(t, tmp, content)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// swapSymlink mimics a Kubernetes ConfigMap volume: path → ..data/keys, and
// an update swaps the ..data symlink to a new directory.
func swapSymlink(t *testing.T, path, content string) {
	t.Helper()
	dir := filepath.Dir(path)
	version := filepath.Join(dir, "..v"+strings.ReplaceAll(time.Now().Format("150405.000000000"), ".", ""))
	if err := os.Mkdir(version, 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(version, "keys"), content)
	tmpLink := filepath.Join(dir, "..data_tmp")
	if err := os.Symlink(filepath.Base(version), tmpLink); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmpLink, filepath.Join(dir, "..data")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); err != nil {
		if err := os.Symlink(filepath.Join("..data", "keys"), path); err != nil {
			t.Fatal(err)
		}
	}
}

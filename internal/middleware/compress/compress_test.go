package compress

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/klauspost/compress/zstd"
)

var big = strings.Repeat("portcullis compresses text answers. ", 200) // 7.2 KB

// upstream answers per path: the Content-Type, encoding and validators a
// test needs.
func upstream(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	body := big
	switch r.URL.Path {
	case "/small":
		body = "tiny"
	case "/png":
		h.Set("Content-Type", "image/png")
	case "/encoded":
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write([]byte(big))
		zw.Close()
		h.Set("Content-Encoding", "gzip")
		h.Set("Content-Length", strconv.Itoa(b.Len()))
		w.Write(b.Bytes())
		return
	case "/notransform":
		h.Set("Cache-Control", "no-transform")
	case "/notmodified":
		h.Set("Etag", `"v1"`)
		w.WriteHeader(http.StatusNotModified)
		return
	case "/nocontent":
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if h.Get("Content-Type") == "" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Etag", `"strong"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	io.WriteString(w, body)
}

func do(t *testing.T, srv *httptest.Server, method, path, ae string) (*http.Response, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, nil)
	if ae != "" {
		req.Header.Set("Accept-Encoding", ae)
	}
	// A transport that never decodes: the test sees the bytes as sent.
	resp, err := (&http.Transport{DisableCompression: true}).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func TestCompression(t *testing.T) {
	mw, err := New(1024)
	if err != nil {
		t.Fatal(err)
	}
	h := mw(http.HandlerFunc(upstream))
	srv := httptest.NewServer(h)
	defer srv.Close()

	t.Run("gzip round trip", func(t *testing.T) {
		resp, b := do(t, srv, "GET", "/text", "gzip, deflate")
		if resp.Header.Get("Content-Encoding") != "gzip" {
			t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		plain, _ := io.ReadAll(zr)
		if string(plain) != big {
			t.Fatal("round trip changed the body")
		}
		if cl := resp.Header.Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(b)) {
			t.Errorf("Content-Length %s for %d encoded bytes", cl, len(b))
		}
		if !strings.Contains(strings.Join(resp.Header.Values("Vary"), ","), "Accept-Encoding") {
			t.Error("no Vary: Accept-Encoding")
		}
		if resp.Header.Get("Etag") != `W/"strong"` {
			t.Errorf("ETag %q, want the strong tag weakened", resp.Header.Get("Etag"))
		}
	})
	t.Run("zstd when the client ranks it higher", func(t *testing.T) {
		resp, b := do(t, srv, "GET", "/text", "gzip;q=0.5, zstd")
		if resp.Header.Get("Content-Encoding") != "zstd" {
			t.Fatalf("Content-Encoding %q", resp.Header.Get("Content-Encoding"))
		}
		zr, _ := zstd.NewReader(bytes.NewReader(b))
		defer zr.Close()
		if plain, _ := io.ReadAll(zr); string(plain) != big {
			t.Fatal("zstd round trip changed the body")
		}
	})
	t.Run("identity when not accepted", func(t *testing.T) {
		resp, b := do(t, srv, "GET", "/text", "")
		if resp.Header.Get("Content-Encoding") != "" || string(b) != big || resp.Header.Get("Content-Length") != strconv.Itoa(len(big)) ||
			resp.Header.Get("Etag") != `"strong"` {
			t.Fatalf("identity answer changed: %v", resp.Header)
		}
	})
	skipped := []struct{ name, path string }{
		{"below COMPRESSION_MIN_BYTES", "/small"},
		{"already compressed type", "/png"},
		{"Cache-Control: no-transform", "/notransform"},
	}
	for _, tc := range skipped {
		t.Run(tc.name, func(t *testing.T) {
			resp, b := do(t, srv, "GET", tc.path, "gzip")
			if resp.Header.Get("Content-Encoding") != "" {
				t.Fatalf("encoded: %v", resp.Header)
			}
			if resp.Header.Get("Content-Length") != strconv.Itoa(len(b)) {
				t.Errorf("Content-Length %q for %d bytes", resp.Header.Get("Content-Length"), len(b))
			}
			if resp.Header.Get("No-Gzip-Compression") != "" {
				t.Error("internal marker header leaked to the client")
			}
		})
	}
	t.Run("never twice", func(t *testing.T) {
		resp, b := do(t, srv, "GET", "/encoded", "gzip")
		if ce := resp.Header.Values("Content-Encoding"); len(ce) != 1 || ce[0] != "gzip" {
			t.Fatalf("Content-Encoding %v", ce)
		}
		zr, _ := gzip.NewReader(bytes.NewReader(b))
		if plain, _ := io.ReadAll(zr); string(plain) != big {
			t.Fatal("upstream's gzip was encoded again")
		}
	})
	t.Run("HEAD", func(t *testing.T) {
		resp, b := do(t, srv, "HEAD", "/text", "gzip")
		if len(b) != 0 || resp.Header.Get("Content-Encoding") != "" || resp.Header.Get("Content-Length") != strconv.Itoa(len(big)) {
			t.Fatalf("HEAD: %v, %d body bytes", resp.Header, len(b))
		}
	})
	for _, p := range []struct {
		path string
		code int
	}{{"/notmodified", 304}, {"/nocontent", 204}} {
		t.Run(p.path, func(t *testing.T) {
			resp, b := do(t, srv, "GET", p.path, "gzip")
			if resp.StatusCode != p.code || len(b) != 0 || resp.Header.Get("Content-Encoding") != "" {
				t.Fatalf("%d %v %q", resp.StatusCode, resp.Header, b)
			}
		})
	}
}

func TestCompressible(t *testing.T) {
	for ct, want := range map[string]bool{
		"text/html; charset=utf-8": true, "application/json": true, "image/svg+xml": true, "": true,
		"image/png": false, "image/webp": false, "video/mp4": false, "application/zip": false,
		"application/gzip": false, "font/woff2": false, "application/pdf": false, "text/event-stream": false,
	} {
		if Compressible(ct) != want {
			t.Errorf("Compressible(%q) = %v, want %v", ct, !want, want)
		}
	}
}

func BenchmarkCompressGzip(b *testing.B) {
	mw, _ := New(1024)
	h := mw(http.HandlerFunc(upstream))
	req := httptest.NewRequest("GET", "/text", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(httptest.NewRecorder(), req)
	}
}

package cache

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestKeyNormalisesOnlyWhatIsEquivalent(t *testing.T) {
	tests := []struct {
		name       string
		a, b       [4]string // scheme, host, path, query
		wantShared bool
	}{
		{"parameter order", [4]string{"http", "h", "/p", "a=1&b=2"}, [4]string{"http", "h", "/p", "b=2&a=1"}, true},
		{"host case", [4]string{"http", "Example.COM", "/p", ""}, [4]string{"http", "example.com", "/p", ""}, true},
		{"empty parameters", [4]string{"http", "h", "/p", "a=1&&b=2"}, [4]string{"http", "h", "/p", "b=2&a=1"}, true},
		{"different query", [4]string{"http", "h", "/p", "a=1"}, [4]string{"http", "h", "/p", "a=2"}, false},
		{"query vs none", [4]string{"http", "h", "/p", "a=1"}, [4]string{"http", "h", "/p", ""}, false},
		{"repeated name order", [4]string{"http", "h", "/p", "a=1&a=2"}, [4]string{"http", "h", "/p", "a=2&a=1"}, false},
		{"encoding not decoded", [4]string{"http", "h", "/p", "q=a+b"}, [4]string{"http", "h", "/p", "q=a%20b"}, false},
		{"scheme", [4]string{"http", "h", "/p", ""}, [4]string{"https", "h", "/p", ""}, false},
		{"host", [4]string{"http", "a", "/p", ""}, [4]string{"http", "b", "/p", ""}, false},
		{"path", [4]string{"http", "h", "/p", ""}, [4]string{"http", "h", "/q", ""}, false},
		{"path case", [4]string{"http", "h", "/P", ""}, [4]string{"http", "h", "/p", ""}, false},
		// The clean path is decoded: "/p%3Fa=1" routes as the path "/p?a=1",
		// which the upstream receives re-encoded. It is another resource
		// than "/p" with the query "a=1", so it must not share its entry.
		{"decoded ? in the path", [4]string{"http", "h", "/p?a=1", ""}, [4]string{"http", "h", "/p", "a=1"}, false},
		{"decoded ? vs sorted query", [4]string{"http", "h", "/p?a=1&b=2", ""}, [4]string{"http", "h", "/p", "b=2&a=1"}, false},
		{"decoded % in the path", [4]string{"http", "h", "/p%3Fa", ""}, [4]string{"http", "h", "/p?a", ""}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ka := Key(tc.a[0], tc.a[1], tc.a[2], tc.a[3])
			kb := Key(tc.b[0], tc.b[1], tc.b[2], tc.b[3])
			if (ka == kb) != tc.wantShared {
				t.Errorf("Key %q vs %q: shared=%v, want %v", ka, kb, ka == kb, tc.wantShared)
			}
		})
	}
}

func TestVary(t *testing.T) {
	names, star := ParseVary(http.Header{"Vary": {"accept-encoding, Accept-Language", "Accept-Encoding"}})
	if star || strings.Join(names, ",") != "Accept-Encoding,Accept-Language" {
		t.Fatalf("ParseVary = %v %v", names, star)
	}
	if _, star := ParseVary(http.Header{"Vary": {"Origin, *"}}); !star {
		t.Fatal("Vary: * not detected")
	}
	key := Key("http", "h", "/p", "")
	vk := func(h http.Header) string { return VariantKey(key, []string{"Accept-Encoding", "Accept-Language"}, h) }
	same := [][2]http.Header{
		{{"Accept-Encoding": {"gzip, br"}}, {"Accept-Encoding": {"br,GZIP;q=1"}}},
		{{"Accept-Encoding": {"gzip, br;q=0"}}, {"Accept-Encoding": {"gzip"}}},
		{{"Accept-Encoding": {"gzip, zstd;q=0.000"}}, {"Accept-Encoding": {"gzip"}}},
	}
	for _, p := range same {
		if vk(p[0]) != vk(p[1]) {
			t.Errorf("%v and %v should share a variant", p[0], p[1])
		}
	}
	differ := [][2]http.Header{
		{{"Accept-Encoding": {"gzip"}}, {}},
		{{"Accept-Language": {"en"}}, {"Accept-Language": {"fr"}}},
		{{"Accept-Encoding": {"gzip;q=0.5"}}, {}},
	}
	for _, p := range differ {
		if vk(p[0]) == vk(p[1]) {
			t.Errorf("%v and %v must not share a variant", p[0], p[1])
		}
	}
}

func TestFreshnessRules(t *testing.T) {
	const route = 5 * time.Minute
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	at := func(d time.Duration) string { return now.Add(d).Format(http.TimeFormat) }
	tests := []struct {
		name   string
		status int
		h      http.Header
		want   time.Duration // 0 = not stored
	}{
		{"plain 200 uses the route TTL", 200, http.Header{}, route},
		{"Expires sets the TTL", 200, http.Header{"Expires": {at(90 * time.Second)}}, 90 * time.Second},
		{"Expires counts from Date", 200, http.Header{"Date": {at(-30 * time.Second)}, "Expires": {at(90 * time.Second)}}, 2 * time.Minute},
		{"Expires 0 is stale, whatever the route TTL", 200, http.Header{"Expires": {"0"}}, 0},
		{"Expires -1 is stale", 200, http.Header{"Expires": {"-1"}}, 0},
		{"Expires in the past is stale", 200, http.Header{"Expires": {at(-time.Hour)}}, 0},
		{"Expires garbage is stale", 200, http.Header{"Expires": {"soon"}}, 0},
		{"max-age wins over Expires", 200, http.Header{"Cache-Control": {"max-age=20"}, "Expires": {"0"}}, 20 * time.Second},
		{"203", 203, http.Header{}, route},
		{"204", 204, http.Header{}, route},
		{"301", 301, http.Header{}, route},
		{"404", 404, http.Header{}, route},
		{"302 not stored", 302, http.Header{}, 0},
		{"206 not stored", 206, http.Header{}, 0},
		{"500 not stored", 500, http.Header{}, 0},
		{"503 not stored", 503, http.Header{}, 0},
		{"max-age sets the TTL", 200, http.Header{"Cache-Control": {"public, max-age=7"}}, 7 * time.Second},
		{"s-maxage wins over max-age", 200, http.Header{"Cache-Control": {"max-age=7, s-maxage=3"}}, 3 * time.Second},
		{"max-age above the route TTL still sets it", 200, http.Header{"Cache-Control": {"max-age=3600"}}, time.Hour},
		{"Age is taken off", 200, http.Header{"Cache-Control": {"max-age=10"}, "Age": {"4"}}, 6 * time.Second},
		{"older than max-age", 200, http.Header{"Cache-Control": {"max-age=10"}, "Age": {"11"}}, 0},
		{"max-age=0", 200, http.Header{"Cache-Control": {"max-age=0"}}, 0},
		{"malformed max-age is 0", 200, http.Header{"Cache-Control": {"max-age=ten"}}, 0},
		{"no-store", 200, http.Header{"Cache-Control": {"no-store"}}, 0},
		{"private", 200, http.Header{"Cache-Control": {"max-age=60, private"}}, 0},
		{"private with fields", 200, http.Header{"Cache-Control": {`private="Set-Cookie"`}}, 0},
		{"no-cache", 200, http.Header{"Cache-Control": {"no-cache"}}, 0},
		{"directive case", 200, http.Header{"Cache-Control": {"No-Store"}}, 0},
		{"Set-Cookie", 200, http.Header{"Set-Cookie": {"a=b"}}, 0},
		{"Vary *", 200, http.Header{"Vary": {"*"}}, 0},
		{"trailers", 200, http.Header{"Trailer": {"X-Sum"}}, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ttl, _ := Freshness(tc.status, tc.h, route, now)
			if max(ttl, 0) != tc.want {
				t.Errorf("ttl = %v, want %v", ttl, tc.want)
			}
		})
	}
	// With no route TTL (CACHE_TTL's default) only explicit freshness
	// makes an answer storable.
	for _, tc := range []struct {
		name string
		h    http.Header
		want time.Duration
	}{
		{"no freshness: not stored", http.Header{}, 0},
		{"max-age", http.Header{"Cache-Control": {"max-age=7"}}, 7 * time.Second},
		{"s-maxage", http.Header{"Cache-Control": {"s-maxage=9"}}, 9 * time.Second},
		{"Expires", http.Header{"Expires": {at(time.Minute)}}, time.Minute},
		{"public alone is not freshness", http.Header{"Cache-Control": {"public"}}, 0},
	} {
		if ttl, _ := Freshness(200, tc.h, 0, now); max(ttl, 0) != tc.want {
			t.Errorf("no route TTL, %s: ttl = %v, want %v", tc.name, ttl, tc.want)
		}
	}
}

func TestRequestDirectives(t *testing.T) {
	if !SkipLookup(http.Header{"Cache-Control": {"no-cache"}}) || !SkipLookup(http.Header{"Cache-Control": {"max-age=0"}}) ||
		!SkipLookup(http.Header{"Pragma": {"no-cache"}}) {
		t.Error("a client asking for a fresh answer must skip the lookup")
	}
	if SkipLookup(http.Header{"Cache-Control": {"max-age=60"}}) || SkipLookup(http.Header{}) {
		t.Error("lookup skipped without reason")
	}
	if !RequestNoStore(http.Header{"Cache-Control": {"no-store"}}) || RequestNoStore(http.Header{}) {
		t.Error("request no-store")
	}
	private := []string{"X-Auth-Token"}
	for _, h := range []http.Header{{"Authorization": {"Bearer x"}}, {"X-Api-Key": {"k"}}, {"Cookie": {"s=1"}},
		{"Proxy-Authorization": {"Basic eDp5"}}, {"X-Auth-Token": {"victim"}}} {
		if !HasCredentials(h, private) {
			t.Errorf("%v carries credentials", h)
		}
	}
	if HasCredentials(http.Header{"X-Auth-Token": {"victim"}}, nil) || HasCredentials(http.Header{"Accept": {"*/*"}}, private) {
		t.Error("a header outside the private list counted as a credential")
	}
}

func TestMarshalRoundTripAndCorruptInput(t *testing.T) {
	now := time.Unix(1700000000, 123)
	e := &Entry{
		Status: 404, Body: []byte("gone\x00binary"), Stored: now, Expires: now.Add(time.Minute),
		Header: http.Header{"Content-Type": {"text/plain"}, "X-Multi": {"a", "b"}},
		Vary:   []string{"Accept-Encoding"},
	}
	b := Marshal(e)
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != 404 || !bytes.Equal(got.Body, e.Body) || !got.Stored.Equal(e.Stored) || !got.Expires.Equal(e.Expires) ||
		strings.Join(got.Header["X-Multi"], ",") != "a,b" || got.Vary[0] != "Accept-Encoding" {
		t.Fatalf("round trip: %+v", got)
	}
	for i := range b { // every truncation is an error, never a panic
		if _, err := Unmarshal(b[:i]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", i)
		}
	}
	if _, err := Unmarshal([]byte("some other app's value")); err == nil {
		t.Fatal("foreign value accepted")
	}
}

func FuzzUnmarshal(f *testing.F) {
	f.Add(Marshal(&Entry{Status: 200, Header: http.Header{"A": {"b"}}, Body: []byte("x")}))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) { _, _ = Unmarshal(b) })
}

func TestMemoryStoreIsBoundedInBytes(t *testing.T) {
	const limit = 1 << 20
	m, err := NewMemory(limit)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	body := make([]byte, 10<<10)
	exp := time.Now().Add(time.Hour)
	for i := range 1000 { // 10 MiB offered to a 1 MiB store
		m.Set(Key("http", "h", "/p", "i="+string(rune('a'+i%26))+strings.Repeat("x", i)), &Entry{Status: 200, Body: body, Expires: exp})
	}
	m.c.CleanUp()
	if b := m.Bytes(); b > limit {
		t.Fatalf("memory store holds %d bytes, bound is %d", b, limit)
	}
	m.Set("k", &Entry{Status: 200, Body: []byte("x"), Expires: time.Now().Add(50 * time.Millisecond)})
	if _, ok := m.Get(context.Background(), "k"); !ok {
		t.Fatal("fresh entry not found")
	}
	time.Sleep(80 * time.Millisecond)
	if _, ok := m.Get(context.Background(), "k"); ok {
		t.Fatal("expired entry served")
	}
}

func TestFlightsCoalesceAndRelease(t *testing.T) {
	f := NewFlights()
	lead, leader := f.Join("k")
	if !leader {
		t.Fatal("first caller must lead")
	}
	var waiting sync.WaitGroup
	var got atomic.Int32
	for range 50 {
		fl, l := f.Join("k")
		if l || fl != lead {
			t.Fatal("a concurrent caller must join the leader's flight")
		}
		waiting.Add(1)
		go func() {
			defer waiting.Done()
			if e, v := fl.Wait(context.Background(), time.Minute); e != nil && v == "k" {
				got.Add(1)
			}
		}()
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if e, _ := lead.Wait(ctx, time.Minute); e != nil {
		t.Fatal("a waiter whose client left must stop waiting with nothing")
	}
	// Once the leader records a body, a waiter waits for it at most
	// bodyWait; before that, as long as the leader takes.
	lead.Recording()
	lead.Recording() // idempotent
	began := time.Now()
	if e, _ := lead.Wait(context.Background(), 20*time.Millisecond); e != nil || time.Since(began) > time.Second {
		t.Fatal("a waiter must stop waiting for a recording leader after bodyWait")
	}
	f.Finish("k", lead, &Entry{Status: 200}, "k")
	waiting.Wait()
	if got.Load() != 50 {
		t.Fatalf("%d of 50 waiters got the leader's entry", got.Load())
	}
	if _, leader := f.Join("k"); !leader {
		t.Fatal("a finished flight must be gone")
	}
}

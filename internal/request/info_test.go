package request

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestHooksChain: a second OnHeader or OnHijack adds to the first instead of
// silently replacing it.
func TestHooksChain(t *testing.T) {
	var order []string
	rec := httptest.NewRecorder()
	in, _ := New(rec, httptest.NewRequest(http.MethodGet, "/", nil), time.Now(), 0)
	in.OnHeader(func(h http.Header) { order = append(order, "first"); h.Set("X-First", "1") })
	in.OnHeader(func(h http.Header) { order = append(order, "second"); h.Set("X-Second", "1") })
	in.Writer().WriteHeader(http.StatusNoContent)
	in.Writer().WriteHeader(http.StatusOK) // a second WriteHeader runs nothing again
	if len(order) != 2 || order[0] != "first" || rec.Header().Get("X-First") == "" || rec.Header().Get("X-Second") == "" {
		t.Errorf("header hooks ran %v; headers %v", order, rec.Header())
	}

	var wrapped []string
	in.OnHijack(func(c net.Conn) net.Conn { wrapped = append(wrapped, "a"); return c })
	in.OnHijack(func(c net.Conn) net.Conn { wrapped = append(wrapped, "b"); return c })
	in.hijack(nil)
	if len(wrapped) != 2 || wrapped[0] != "a" || wrapped[1] != "b" {
		t.Errorf("hijack hooks ran %v, want [a b]", wrapped)
	}
}

// deadlineRecorder is a ResponseWriter that records its write deadlines.
type deadlineRecorder struct {
	http.ResponseWriter
	set []time.Time
}

func (d *deadlineRecorder) SetWriteDeadline(t time.Time) error {
	d.set = append(d.set, t)
	return nil
}

// TestStreamsArmTheirOwnSendTimeout: requests of one HTTP/1.1 connection
// come one at a time and share its deadline bookkeeping; HTTP/2 streams
// of one connection run at once, each with a write deadline of its own,
// so each arms its own and none shares state with another.
func TestStreamsArmTheirOwnSendTimeout(t *testing.T) {
	conn := ConnContext(context.Background(), nil)
	now := time.Now()
	for _, tc := range []struct {
		name       string
		protoMajor int
		wantArmed  int // of two requests back to back on one connection
	}{
		{name: "HTTP/1.1 keep-alive", protoMajor: 1, wantArmed: 1},
		{name: "HTTP/2 streams", protoMajor: 2, wantArmed: 2},
		{name: "HTTP/3 streams", protoMajor: 3, wantArmed: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := ConnContext(conn, nil)
			armed := 0
			for range 2 {
				r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
				r.ProtoMajor = tc.protoMajor
				w := &deadlineRecorder{ResponseWriter: httptest.NewRecorder()}
				New(w, r, now, time.Minute)
				armed += len(w.set)
			}
			if armed != tc.wantArmed {
				t.Errorf("%d deadlines armed for two requests, want %d", armed, tc.wantArmed)
			}
		})
	}
}

// TestConnContextWatchedClosesConnectionsThatNeverBegin: a connection
// whose first request has not begun within the bound is closed; one whose
// first request began is left alone.
func TestConnContextWatchedClosesConnectionsThatNeverBegin(t *testing.T) {
	watch := ConnContextWatched(50 * time.Millisecond)
	silent, peer1 := net.Pipe()
	defer peer1.Close()
	watch(context.Background(), silent)

	busy, peer2 := net.Pipe()
	defer peer2.Close()
	ctx := watch(context.Background(), busy)
	r := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	r.ProtoMajor = 2
	New(httptest.NewRecorder(), r, time.Now(), 0)

	time.Sleep(200 * time.Millisecond)
	if _, err := silent.Write([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Errorf("a connection that never began a request: write %v, want it closed", err)
	}
	go io.Copy(io.Discard, peer2)
	if _, err := busy.Write([]byte("x")); err != nil {
		t.Errorf("a connection whose first request began was closed: %v", err)
	}
}

package request

import (
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

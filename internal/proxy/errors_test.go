package proxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/upstreamclient"
)

func dialErr() error {
	return &net.OpError{Op: "dial", Net: "tcp", Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, Err: &os.SyscallError{Syscall: "connect", Err: syscall.ECONNREFUSED}}
}

func readErr() error {
	return &net.OpError{Op: "read", Net: "tcp", Err: &os.SyscallError{Syscall: "read", Err: syscall.ECONNRESET}}
}

func TestStatusFor(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want int
	}{
		{name: "body too large", err: ErrBodyTooLarge, want: http.StatusRequestEntityTooLarge},
		{name: "wrapped body too large", err: fmt.Errorf("copy: %w", ErrBodyTooLarge), want: http.StatusRequestEntityTooLarge},
		{name: "body timeout", err: ErrBodyTimeout, want: http.StatusRequestTimeout},
		{name: "bad body", err: ErrBadBody, want: http.StatusBadRequest},
		{name: "client gone", err: ErrClientGone, want: StatusClientClosed},
		{name: "client gone inside url.Error", err: &url.Error{Op: "Get", URL: "http://b", Err: ErrClientGone}, want: StatusClientClosed},
		{name: "no backend", err: ErrNoBackend, want: http.StatusServiceUnavailable},
		{name: "proxy Error 504", err: &Error{Status: http.StatusGatewayTimeout, Err: ErrUpstreamTimeout}, want: http.StatusGatewayTimeout},
		{name: "proxy Error 503 wins over its cause", err: &Error{Status: http.StatusServiceUnavailable, Err: ErrNoBackend}, want: http.StatusServiceUnavailable},
		{name: "wrapped proxy Error", err: fmt.Errorf("rt: %w", &Error{Status: 502, Err: errors.New("x")}), want: http.StatusBadGateway},
		{name: "upstream timeout sentinel", err: ErrUpstreamTimeout, want: http.StatusGatewayTimeout},
		{name: "context deadline", err: context.DeadlineExceeded, want: http.StatusGatewayTimeout},
		{name: "context deadline inside url.Error", err: &url.Error{Op: "Get", URL: "http://b", Err: context.DeadlineExceeded}, want: http.StatusGatewayTimeout},
		{name: "os deadline", err: os.ErrDeadlineExceeded, want: http.StatusGatewayTimeout},
		{name: "dial refused", err: dialErr(), want: http.StatusBadGateway},
		{name: "read reset", err: readErr(), want: http.StatusBadGateway},
		{name: "unknown error", err: errors.New("weird"), want: http.StatusBadGateway},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := statusFor(tc.err); got != tc.want {
				t.Errorf("statusFor(%v) = %d, want %d", tc.err, got, tc.want)
			}
		})
	}
}

// A real refused dial, as either upstream client reports it, is a 502 and
// not sent (so even a POST may be retried on another backend).
func TestRealDialError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, c := range []struct {
		name string
		c    Client
	}{
		{"transport", upstreamclient.NewTransport(1, time.Second, time.Second)},
		{"sync", upstreamclient.NewSyncClient(1, time.Second, time.Second)},
	} {
		t.Run(c.name, func(t *testing.T) {
			req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("x"))
			_, err := c.c.RoundTrip(req)
			if err == nil {
				t.Fatal("something answered on a just-closed port")
			}
			if got := statusFor(err); got != http.StatusBadGateway {
				t.Errorf("statusFor(%v) = %d, want 502", err, got)
			}
			if !notSent(err) {
				t.Errorf("notSent(%v) = false, want true", err)
			}
		})
	}
}

func TestNotSent(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "dial OpError", err: dialErr(), want: true},
		{name: "dial OpError inside url.Error", err: &url.Error{Op: "Post", URL: "http://b", Err: dialErr()}, want: true},
		{name: "bare ECONNREFUSED", err: syscall.ECONNREFUSED, want: true},
		{name: "read OpError", err: readErr(), want: false},
		{name: "write OpError", err: &net.OpError{Op: "write", Net: "tcp", Err: syscall.EPIPE}, want: false},
		{name: "timeout", err: context.DeadlineExceeded, want: false},
		{name: "nil", err: nil, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := notSent(tc.err); got != tc.want {
				t.Errorf("notSent(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestFailureStatus(t *testing.T) {
	for code := 100; code <= 599; code++ {
		want := code == 502 || code == 503 || code == 504
		if got := failureStatus(code); got != want {
			t.Errorf("failureStatus(%d) = %v, want %v", code, got, want)
		}
	}
}

func TestIdempotent(t *testing.T) {
	tests := []struct {
		method string
		want   bool
	}{
		{method: "GET", want: true}, {method: "HEAD", want: true}, {method: "OPTIONS", want: true},
		{method: "TRACE", want: true}, {method: "PUT", want: true}, {method: "DELETE", want: true},
		{method: "POST", want: false}, {method: "PATCH", want: false}, {method: "CONNECT", want: false},
		{method: "get", want: false}, {method: "", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.method, func(t *testing.T) {
			if got := idempotent(tc.method); got != tc.want {
				t.Errorf("idempotent(%q) = %v, want %v", tc.method, got, tc.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	const base = 100 * time.Millisecond
	for n := range 10 { // RETRY_MAX is at most 10
		t.Run(fmt.Sprint("attempt ", n), func(t *testing.T) {
			lo, hi := base/2<<n, base<<n
			seen := map[time.Duration]bool{}
			for range 500 {
				d := backoff(base, n)
				if d < lo || d > hi {
					t.Fatalf("backoff(100ms, %d) = %v, want within [%v, %v]", n, d, lo, hi)
				}
				seen[d] = true
			}
			if len(seen) < 2 {
				t.Errorf("backoff(100ms, %d) is not jittered: always %v", n, seen)
			}
		})
	}
}

func TestClassifyBodyErr(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want error
	}{
		{name: "too large", err: &http.MaxBytesError{Limit: 1}, want: ErrBodyTooLarge},
		{name: "idle", err: os.ErrDeadlineExceeded, want: ErrBodyTimeout},
		{name: "closed mid-body", err: io.ErrUnexpectedEOF, want: ErrClientGone},
		{name: "reset mid-body", err: &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, want: ErrClientGone},
		{name: "connection closed", err: net.ErrClosed, want: ErrClientGone},
		{name: "bad chunk", err: errors.New("invalid byte in chunk length"), want: ErrBadBody},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := classifyBodyErr(tc.err); got != tc.want {
				t.Errorf("classifyBodyErr(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

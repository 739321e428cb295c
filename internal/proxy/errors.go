package proxy

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"syscall"
)

// Sentinels for the outcomes the proxy maps to a status.
var (
	ErrNoBackend       = errors.New("no live backend")
	ErrUpstreamTimeout = errors.New("upstream timeout")
	ErrBodyTooLarge    = errors.New("request body too large")
	ErrBodyTimeout     = errors.New("request body read timeout")
	ErrBadBody         = errors.New("malformed request body")
	ErrClientGone      = errors.New("client went away")
)

// StatusClientClosed is logged (never sent) when the client left first,
// as nginx's 499.
const StatusClientClosed = 499

// Error is what the proxy's transport returns: the status to answer with and
// the cause.
type Error struct {
	Status int
	Err    error
}

func (e *Error) Error() string { return e.Err.Error() }
func (e *Error) Unwrap() error { return e.Err }

// statusFor maps a failed attempt to the status the client gets: the one
// place that decides 502 vs 504 vs 503 vs the client's own faults.
func statusFor(err error) int {
	var pe *Error
	switch {
	case errors.As(err, &pe):
		return pe.Status
	case errors.Is(err, ErrBodyTooLarge):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, ErrBodyTimeout):
		return http.StatusRequestTimeout
	case errors.Is(err, ErrBadBody):
		return http.StatusBadRequest
	case errors.Is(err, ErrClientGone):
		return StatusClientClosed
	case errors.Is(err, ErrNoBackend):
		return http.StatusServiceUnavailable
	case errors.Is(err, ErrUpstreamTimeout), errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return http.StatusGatewayTimeout
	}
	return http.StatusBadGateway
}

// notSent reports whether err shows that the request never left: the dial
// failed, so nothing of it reached the backend and even a POST may go
// elsewhere.
func notSent(err error) bool {
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return true
	}
	return errors.Is(err, syscall.ECONNREFUSED)
}

// idempotent methods may be retried after they were sent: HTTP defines
// repeating one as having the effect of sending it once.
func idempotent(method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	return false
}

// failureStatus reports whether a backend's status counts as a failure:
// only gateway-type errors, so a client cannot open a breaker by asking for
// 500s.
func failureStatus(code int) bool {
	return code == http.StatusBadGateway || code == http.StatusServiceUnavailable || code == http.StatusGatewayTimeout
}

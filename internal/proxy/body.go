package proxy

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portcullis/portcullis/internal/upstream"
)

// clientBody wraps the client's request body on its way upstream. It enforces
// the route's size limit while streaming, turns a stalled body into
// ErrBodyTimeout (idle deadline on the client connection, extended as bytes
// arrive), and remembers what went wrong so the failure is charged to the
// client, never to the backend.
//
// Read runs on the Transport's write goroutine while the proxy's retry loop
// looks at the outcome, so what the loop reads (bytes read, end seen, fault)
// is published through atomics.
type clientBody struct {
	r       io.ReadCloser
	ctx     context.Context // the request's: done when the client left
	rc      *http.ResponseController
	limit   int64
	timeout time.Duration

	n        int64 // owned by the reading goroutine
	extended time.Time
	first    [1]byte // read ahead by prime
	nfirst   int

	read  atomic.Int64 // bytes read so far
	eof   atomic.Bool  // the body ended cleanly
	fault atomic.Int32 // index into faults: the client's error, if any
}

// faults are the client errors a body can end with; index 0 is none.
var faults = [...]error{nil, ErrBodyTooLarge, ErrBodyTimeout, ErrClientGone, ErrBadBody}

func faultIndex(err error) int32 {
	for i, f := range faults[1:] {
		if err == f {
			return int32(i + 1)
		}
	}
	return int32(len(faults) - 1)
}

// Err returns the client's fault, or nil.
func (b *clientBody) Err() error { return faults[b.fault.Load()] }

func (b *clientBody) fail(err error) error {
	b.fault.CompareAndSwap(0, faultIndex(err))
	return b.Err()
}

// prime reads the first byte of the body ahead, which makes a chunked body
// parse its first chunk header: broken framing shows before forwarding.
func (b *clientBody) prime() error {
	n, err := b.Read(b.first[:])
	b.nfirst = n
	if err != nil && err != io.EOF {
		return err
	}
	return nil
}

func (b *clientBody) Read(p []byte) (int, error) {
	if b.nfirst > 0 && len(p) > 0 {
		p[0] = b.first[0]
		b.nfirst = 0
		return 1, nil
	}
	if err := b.Err(); err != nil {
		return 0, err
	}
	if b.eof.Load() {
		return 0, io.EOF
	}
	if b.timeout > 0 {
		// Extending the deadline on every read is a netpoll call; doing it
		// when a quarter of the timeout has passed keeps the idle bound
		// within 25% at a fraction of the cost.
		if now := time.Now(); now.Sub(b.extended) > b.timeout/4 {
			b.extended = now
			_ = b.rc.SetReadDeadline(now.Add(b.timeout))
		}
	}
	if rem := b.limit - b.n + 1; int64(len(p)) > rem {
		p = p[:rem]
	}
	n, err := b.r.Read(p)
	b.n += int64(n)
	b.read.Store(b.n)
	if b.n > b.limit {
		return 0, b.fail(ErrBodyTooLarge)
	}
	switch {
	case err == io.EOF:
		b.eof.Store(true)
		b.clearDeadline()
	case err != nil:
		b.clearDeadline()
		fault := classifyBodyErr(err)
		if fault == ErrBadBody && b.ctx != nil && b.ctx.Err() != nil {
			// The client reset its stream (HTTP/2, HTTP/3) or its
			// connection: its request was cancelled, nothing was
			// malformed. (net/http cancels the request on any read error
			// of the connection, a timeout too: that one stays a timeout.)
			fault = ErrClientGone
		}
		return n, b.fail(fault)
	}
	return n, err
}

// clearDeadline removes the body deadline once the body is done, so the
// server's background read (which watches for the client going away) does
// not trip over it while the response streams.
func (b *clientBody) clearDeadline() {
	if b.timeout > 0 {
		_ = b.rc.SetReadDeadline(time.Time{})
	}
}

func (b *clientBody) Close() error { return b.r.Close() }

func classifyBodyErr(err error) error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return ErrBodyTooLarge
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ErrBodyTimeout
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed):
		// The client closed mid-body, abruptly or not (or sent a
		// truncated chunk).
		return ErrClientGone
	}
	return ErrBadBody
}

// respBody wraps an upstream response body: an idle timer aborts a stream
// that stops moving, and Close ends the backend's in-flight count.
type respBody struct {
	rc      io.ReadCloser
	timer   *time.Timer
	idle    time.Duration
	backend *upstream.Backend
	cancel  context.CancelCauseFunc
	done    bool
}

func (b *respBody) Read(p []byte) (int, error) {
	b.timer.Reset(b.idle)
	return b.rc.Read(p)
}

func (b *respBody) Close() error {
	if !b.done {
		b.done = true
		b.timer.Stop()
		b.backend.End()
		b.cancel(nil)
	}
	return b.rc.Close()
}

package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/portcullis/portcullis/internal/upstream"
)

// clientBody wraps the client's request body on its way upstream. It enforces
// the route's size limit while streaming, turns a stalled body into
// ErrBodyTimeout (idle deadline on the client connection, extended as bytes
// arrive), and remembers what went wrong so the failure is charged to the
// client, never to the backend.
type clientBody struct {
	r       io.ReadCloser
	rc      *http.ResponseController
	limit   int64
	timeout time.Duration

	n        int64
	extended time.Time
	err      error // the client's fault, if any
	eof      bool
	first    [1]byte // read ahead by prime
	nfirst   int
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
	if b.err != nil {
		return 0, b.err
	}
	if b.eof {
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
	if b.n > b.limit {
		b.err = ErrBodyTooLarge
		return 0, b.err
	}
	switch {
	case err == io.EOF:
		b.eof = true
		b.clearDeadline()
	case err != nil:
		b.err = classifyBodyErr(err)
		b.clearDeadline()
		return n, b.err
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
	case errors.Is(err, io.ErrUnexpectedEOF):
		// The client closed mid-body (or sent a truncated chunk).
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

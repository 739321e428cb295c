package telemetry

import (
	"bufio"
	"io"
	"sync"
	"time"
)

// BufferedWriter batches log lines into few write syscalls: at a few
// thousand requests per second a write per access-log line costs more than
// the rest of the line's work. Lines reach the output within FlushEvery (as
// nginx's access_log buffer=… flush=…), and at once on Flush and Close.
type BufferedWriter struct {
	mu   sync.Mutex // guards w; slog's handler already serialises its writes, so this lock is uncontended
	w    *bufio.Writer
	stop chan struct{}
	done chan struct{}
}

// FlushEvery is how long a log line may wait in the buffer.
const FlushEvery = 100 * time.Millisecond

// NewBufferedWriter wraps out with a 64 KiB buffer flushed every FlushEvery
// until Close.
func NewBufferedWriter(out io.Writer) *BufferedWriter {
	b := &BufferedWriter{w: bufio.NewWriterSize(out, 64<<10), stop: make(chan struct{}), done: make(chan struct{})}
	go b.loop()
	return b
}

func (b *BufferedWriter) loop() {
	defer close(b.done)
	t := time.NewTicker(FlushEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			b.Flush()
		case <-b.stop:
			return
		}
	}
}

// Write buffers p (one log line).
func (b *BufferedWriter) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Write(p)
}

// Flush writes out what is buffered.
func (b *BufferedWriter) Flush() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.w.Flush()
}

// Close stops the flusher and flushes what is left.
func (b *BufferedWriter) Close() error {
	close(b.stop)
	<-b.done
	return b.Flush()
}

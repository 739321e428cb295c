package proxy

import (
	"log"
	"log/slog"
	"strings"
)

// slogWriter routes httputil.ReverseProxy's own error log (body copy errors
// when a client or backend leaves mid-stream) to the JSON log at debug: the
// access line already records the outcome.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	if w.log != nil {
		w.log.Debug(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

func (w *slogWriter) logger() *log.Logger { return log.New(w, "", 0) }

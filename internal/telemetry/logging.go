package telemetry

import (
	"io"
	"log/slog"
)

// NewLogger returns the gateway's JSON logger. Every line is one JSON object,
// so control characters a client sends are escaped by the encoder, never
// written raw. Components add their name with Component. The lines are
// slog.JSONHandler's, written by a handler made for the request path (see
// jsonHandler).
func NewLogger(w io.Writer, level slog.Leveler) *slog.Logger {
	return slog.New(newJSONHandler(w, level))
}

// Component returns l with the component attribute every log line carries.
func Component(l *slog.Logger, name string) *slog.Logger {
	return l.With("component", name)
}

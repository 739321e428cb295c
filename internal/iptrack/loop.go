package iptrack

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"
)

// SweepLoop calls sweep every period until ctx ends, recovering (and
// logging) a panic in one sweep so the next still runs. The per-IP steps run
// their idle sweeps with it.
func SweepLoop(ctx context.Context, every time.Duration, log *slog.Logger, sweep func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	once := func() {
		defer func() {
			if p := recover(); p != nil && log != nil {
				log.Error("sweep panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			}
		}()
		sweep()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			once()
		}
	}
}

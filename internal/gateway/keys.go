package gateway

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/telemetry"
)

// redisLogger routes go-redis's own log lines (pool dial failures) into the
// JSON log at debug: outages are reported, once each, by the stores.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.log.Debug(fmt.Sprintf(format, v...))
}

// RouteRedisLogs sends go-redis's global logger to log (call once at boot).
func RouteRedisLogs(log *slog.Logger) {
	redis.SetLogger(redisLogger{telemetry.Component(log, "cache")})
}

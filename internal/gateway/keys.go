package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/auth/apikey"
	"github.com/portcullis/portcullis/internal/middleware/auth"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// buildKeyStore opens the API-key sources (docs/authentication.md) behind X-API-Key. A
// remote store that is down at boot does not stop the gateway: key lookups
// that need it fail closed (503) until it is back.
func (g *Gateway) buildKeyStore() (auth.KeyLookup, error) {
	cfg := g.cfg
	o := apikey.Options{
		Digests:    cfg.APIKeyDigests,
		File:       cfg.APIKeysFile,
		Log:        telemetry.Component(g.log, "auth"),
		Registerer: g.metrics.Registry,
	}
	if cfg.APIKeysRedis {
		o.Redis = redisconn.New(redisconn.FromConfig(cfg), redisconn.ForAPIKeys())
		g.closers = append(g.closers, func() { o.Redis.Close() })
	}
	if cfg.APIKeysDatabaseURL != "" {
		pc, err := pgxpool.ParseConfig(cfg.APIKeysDatabaseURL)
		if err != nil {
			// The URL was validated by config; this is only pgx's own view.
			return nil, errors.New("API_KEYS_DATABASE_URL: not a PostgreSQL connection string pgx accepts")
		}
		pc.MaxConns = max(pc.MaxConns, int32(apikey.DefaultMaxConcurrent))
		pool, err := pgxpool.NewWithConfig(g.life, pc)
		if err != nil {
			return nil, fmt.Errorf("API_KEYS_DATABASE_URL: %w", err)
		}
		g.closers = append(g.closers, pool.Close)
		ctx, cancel := context.WithTimeout(g.life, 5*time.Second)
		if err := apikey.Migrate(ctx, pool); err != nil {
			telemetry.Component(g.log, "auth").Warn("api_keys table not migrated: PostgreSQL unreachable at boot; key lookups that need it answer 503 until it is back", "error", err.Error())
		}
		cancel()
		o.DB = pool
	}
	store, err := apikey.New(g.life, o)
	if err != nil {
		return nil, err
	}
	return keyLookup{store}, nil
}

// keyLookup adapts apikey.Store to the auth step.
type keyLookup struct{ s *apikey.Store }

func (k keyLookup) Enabled() bool { return k.s.Enabled() }

func (k keyLookup) LookupName(ctx context.Context, key string) (string, error) {
	id, err := k.s.Lookup(ctx, key)
	switch {
	case err == nil:
		return id.Name, nil
	case errors.Is(err, apikey.ErrRevoked):
		return "", auth.ErrKeyRevoked
	case errors.Is(err, apikey.ErrStore):
		return "", fmt.Errorf("%w: %v", auth.ErrKeyStore, err)
	}
	return "", err
}

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

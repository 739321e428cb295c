package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/auth/apikey"
	"github.com/portcullis/portcullis/internal/auth/jwtauth"
	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/redisconn"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// Build assembles the verifier from cfg: the JWT verifier (JWT_SECRET,
// JWT_JWKS_URL, JWT_ISSUER, JWT_AUDIENCE) and the API-key sources
// (docs/authentication.md). ctx bounds their background work (JWKS
// refresh, key file watch); closeAll releases the stores' connections. A
// remote key store that is down at boot does not stop the gateway: key
// lookups that need it fail closed (503) until it is back.
func Build(ctx context.Context, cfg *config.Static, log *slog.Logger, reg prometheus.Registerer) (v *Verifier, closeAll func(), err error) {
	var closers []func()
	closeAll = func() {
		for _, c := range closers {
			c()
		}
	}
	defer func() {
		if err != nil {
			closeAll()
		}
	}()
	tokens, err := jwtauth.New(ctx, jwtauth.Options{
		Secret:   []byte(cfg.JWTSecret),
		Issuer:   cfg.JWTIssuer,
		Audience: cfg.JWTAudience,
		JWKSURL:  cfg.JWTJWKSURL,
		Log:      log,
	})
	if err != nil {
		return nil, closeAll, fmt.Errorf("JWT_SECRET/JWT_JWKS_URL: %w", err)
	}
	log = telemetry.Component(log, "auth")
	o := apikey.Options{Digests: cfg.APIKeyDigests, File: cfg.APIKeysFile, Log: log, Registerer: reg}
	if cfg.APIKeysRedis {
		o.Redis = redisconn.New(redisconn.FromConfig(cfg), redisconn.ForAPIKeys())
		closers = append(closers, func() { o.Redis.Close() })
	}
	if cfg.APIKeysDatabaseURL != "" {
		pc, err := pgxpool.ParseConfig(cfg.APIKeysDatabaseURL)
		if err != nil {
			// The URL was validated by config; this is only pgx's own view.
			return nil, closeAll, errors.New("API_KEYS_DATABASE_URL: not a PostgreSQL connection string pgx accepts")
		}
		pc.MaxConns = max(pc.MaxConns, int32(apikey.DefaultMaxConcurrent))
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return nil, closeAll, fmt.Errorf("API_KEYS_DATABASE_URL: %w", err)
		}
		closers = append(closers, pool.Close)
		mctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		if err := apikey.Migrate(mctx, pool); err != nil {
			log.Warn("api_keys table not migrated: PostgreSQL unreachable at boot; key lookups that need it answer 503 until it is back", "error", err.Error())
		}
		cancel()
		o.DB = pool
	}
	store, err := apikey.New(ctx, o)
	if err != nil {
		return nil, closeAll, err
	}
	v, err = NewVerifier(tokens, keyLookup{store}, cfg.PublicPaths, reg)
	return v, closeAll, err
}

// keyLookup adapts apikey.Store to KeyLookup.
type keyLookup struct{ s *apikey.Store }

func (k keyLookup) Enabled() bool { return k.s.Enabled() }

func (k keyLookup) LookupName(ctx context.Context, key string) (string, error) {
	id, err := k.s.Lookup(ctx, key)
	switch {
	case err == nil:
		return id.Name, nil
	case errors.Is(err, apikey.ErrRevoked):
		return "", ErrKeyRevoked
	case errors.Is(err, apikey.ErrStore):
		return "", fmt.Errorf("%w: %v", ErrKeyStore, err)
	}
	return "", err
}

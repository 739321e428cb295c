package apikey

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
)

// Migration creates the PostgreSQL table API_KEYS_DATABASE_URL reads. It is
// idempotent; Migrate applies it at boot. Keys are added by operators:
//
//	INSERT INTO api_keys (name, key_sha256) VALUES ('billing', '<sha256 hex>');
//	UPDATE api_keys SET revoked_at = now() WHERE name = 'billing';
//
// A revoked key stops working within the cache TTL (30s by default); a
// revoked_at in the future is honoured from that moment.
const Migration = `CREATE TABLE IF NOT EXISTS api_keys (
	name       text        NOT NULL,
	key_sha256 text        PRIMARY KEY CHECK (key_sha256 ~ '^[0-9a-f]{64}$'),
	created_at timestamptz NOT NULL DEFAULT now(),
	revoked_at timestamptz
)`

// lookupSQL is the one query per remote lookup (on the primary key). pgx's
// default statement cache prepares it once per connection.
const lookupSQL = `SELECT name, revoked_at FROM api_keys WHERE key_sha256 = $1`

// migrationLock is the advisory lock key that serialises Migrate across
// replicas booting at once ("pcapikey"); concurrent CREATE TABLE IF NOT
// EXISTS can otherwise fail on the catalog's unique index.
const migrationLock int64 = 0x7063_6170_696b_6579

// Migrate applies Migration (idempotent, safe for replicas booting together).
func Migrate(ctx context.Context, pool *pgxpool.Pool) error {
	tx, err := pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("migrating api_keys: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", migrationLock); err != nil {
		return fmt.Errorf("migrating api_keys: taking the migration lock: %w", err)
	}
	if _, err := tx.Exec(ctx, Migration); err != nil {
		return fmt.Errorf("migrating api_keys: %w", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("migrating api_keys: %w", err)
	}
	return nil
}

// lookupRedis asks HGET RedisHashKey <digest>; a missing field is not found.
func (s *Store) lookupRedis(ctx context.Context, hexDigest string) (record, error) {
	name, err := s.redis.HGet(ctx, RedisHashKey, hexDigest).Result()
	if errors.Is(err, redis.Nil) {
		return record{}, nil
	}
	if err != nil {
		return record{}, err
	}
	return record{found: true, name: name}, nil
}

// lookupPostgres reads the key's row; no row is not found.
func (s *Store) lookupPostgres(ctx context.Context, hexDigest string) (record, error) {
	var name string
	var revokedAt *time.Time
	err := s.db.QueryRow(ctx, lookupSQL, hexDigest).Scan(&name, &revokedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return record{}, nil
	}
	if err != nil {
		return record{}, err
	}
	rec := record{found: true, name: name}
	if revokedAt != nil {
		rec.revokedAt = *revokedAt
	}
	return rec, nil
}

// Package redisconn builds every go-redis client the gateway uses, from the
// one Redis configuration (REDIS_ADDR, REDIS_PASSWORD, REDIS_DB) and a
// per-use Tuning. The clients are returned as redis.UniversalClient so that
// Redis Cluster or Sentinel (several addresses, a sentinel master) can be
// added here, once, without touching the stores that use them.
//
// Each use has its own Tuning below, because each fails differently: the
// response cache can do without Redis and must never make a request wait
// for it; the API-key lookup cannot do without it and fails closed, so it
// may spend a little longer before answering 503; the cluster node runs
// its request-path calls under a tight context deadline and its background
// work under a looser one, on one pool.
package redisconn

import (
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/config"
)

// Server says which Redis to use.
type Server struct {
	// Addr is REDIS_ADDR (host:port).
	Addr string
	// Password is REDIS_PASSWORD; empty for none.
	Password string
	// DB is REDIS_DB.
	DB int
}

// FromConfig is the Redis the configuration names.
func FromConfig(c *config.Static) Server {
	return Server{Addr: c.RedisAddr, Password: c.RedisPassword, DB: c.RedisDB}
}

// String is the address, for logs: a Server printed by mistake must not
// carry the password along.
func (s Server) String() string { return s.Addr }

// LogValue keeps the password out of structured logs too (slog would
// otherwise print every field of the struct).
func (s Server) LogValue() slog.Value { return slog.StringValue(s.Addr) }

// Tuning is one use's timeouts, retries and pool. A zero field keeps
// go-redis's default, except Retries (see there).
type Tuning struct {
	// DialTimeout bounds opening a connection.
	DialTimeout time.Duration
	// ReadTimeout and WriteTimeout bound one socket read or write
	// (WriteTimeout defaults to ReadTimeout).
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolTimeout bounds the wait for a free connection when all PoolSize
	// are busy (default ReadTimeout + 1 s).
	PoolTimeout time.Duration
	// ContextDeadlines makes a call's context deadline bound its socket
	// reads and writes too (go-redis ContextTimeoutEnabled): a caller that
	// gives a call 50 ms is then not held for ReadTimeout.
	ContextDeadlines bool
	// Retries is how many times a failed command is sent again. Zero means
	// none: go-redis's own zero means three, a trap for a caller that
	// wants an outage to fail fast.
	Retries int
	// PoolSize is the most connections open at once (default 10 per
	// GOMAXPROCS); MinIdleConns how many are kept open while idle.
	PoolSize     int
	MinIdleConns int
}

// ForCache is the response cache's tuning (CACHE_BACKEND=redis/auto).
// The cache is an optimisation: a lookup not answered within timeout (the
// cache's per-lookup budget) is a miss, so reads, writes and the wait for a
// connection are all bounded by that budget and context deadlines apply;
// dialling, which only a lookup without an idle connection pays, gets
// twice that. No retries: a retry would double what an outage costs each
// request. 64 connections serve a busy replica's concurrent lookups.
func ForCache(timeout time.Duration) Tuning {
	return Tuning{
		DialTimeout:      2 * timeout,
		ReadTimeout:      timeout,
		WriteTimeout:     timeout,
		PoolTimeout:      timeout,
		ContextDeadlines: true,
		PoolSize:         64,
	}
}

// ForAPIKeys is the API-key lookup's tuning (API_KEYS_REDIS=true). A key
// Redis cannot vouch for is refused (503), so a lookup gets more patience
// than a cache lookup: half a second per read or write, a second to dial.
// One retry at most: an outage must fail fast, not eat the lookup's whole
// time budget in redials. Pool sizes are go-redis's defaults.
func ForAPIKeys() Tuning {
	return Tuning{
		DialTimeout:  time.Second,
		ReadTimeout:  500 * time.Millisecond,
		WriteTimeout: 500 * time.Millisecond,
		Retries:      1,
	}
}

// ForCluster is the cluster node's tuning (CLUSTER_MODE=redis). One pool
// serves two kinds of call: the request path's (the rate-limit script),
// each under a context deadline of op, so context deadlines apply and the
// wait for a free connection is bounded by op too; and the background's
// (flushes, resyncs, list changes, the subscription), bounded by
// background, which is therefore the socket timeout. Dialling gets op, but
// no less than 250 ms, so that a slow handshake alone is not an outage. No
// retries: a failed call falls back to local state at once, and the node's
// breaker decides when to try Redis again. 64 connections carry a busy
// replica's concurrent requests; two stay open through quiet spells so the
// requests that end one do not pay a dial.
func ForCluster(op, background time.Duration) Tuning {
	return Tuning{
		DialTimeout:      max(op, 250*time.Millisecond),
		ReadTimeout:      background,
		WriteTimeout:     background,
		PoolTimeout:      op,
		ContextDeadlines: true,
		PoolSize:         64,
		MinIdleConns:     2,
	}
}

// ForACME is the certificate storage's tuning (ACME_DOMAINS with
// CLUSTER_MODE=redis). Nothing on the request path waits for it: a
// handshake reads certificates from memory, and the storage is read when a
// certificate is obtained, renewed or loaded, and when another replica's
// challenge is answered. Those calls may wait a few seconds and retry once,
// rather than fail an order over one slow reply.
func ForACME() Tuning {
	return Tuning{
		DialTimeout:  2 * time.Second,
		ReadTimeout:  3 * time.Second,
		WriteTimeout: 3 * time.Second,
		Retries:      1,
		PoolSize:     4,
	}
}

// New returns a client for s tuned by t. It does not touch the network:
// go-redis connects on the first command. The caller closes it.
func New(s Server, t Tuning) redis.UniversalClient {
	retries := t.Retries
	if retries <= 0 {
		retries = -1 // go-redis: -1 disables retries; 0 would mean 3
	}
	return redis.NewUniversalClient(&redis.UniversalOptions{
		Addrs:                 []string{s.Addr},
		Password:              s.Password,
		DB:                    s.DB,
		MaxRetries:            retries,
		DialTimeout:           t.DialTimeout,
		ReadTimeout:           t.ReadTimeout,
		WriteTimeout:          t.WriteTimeout,
		PoolTimeout:           t.PoolTimeout,
		ContextTimeoutEnabled: t.ContextDeadlines,
		PoolSize:              t.PoolSize,
		MinIdleConns:          t.MinIdleConns,
	})
}

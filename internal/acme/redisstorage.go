package acme

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/telemetry"
)

const (
	// DefaultLockTTL is how long a lock outlives its holder: a replica that
	// dies while ordering blocks the others this long at most.
	DefaultLockTTL = 30 * time.Second
	// DefaultLockPoll is how often a waiting Lock asks again.
	DefaultLockPoll = 250 * time.Millisecond
)

// RedisStorageOptions configures a RedisStorage.
type RedisStorageOptions struct {
	// KeyPrefix namespaces the keys; default DefaultKeyPrefix. On Redis
	// Cluster it must contain a hash tag (e.g. "{acme}:").
	KeyPrefix string
	// LockTTL is a lock's lifetime in Redis, renewed every third of it
	// while held; default (also for less than Redis's unit, a millisecond)
	// DefaultLockTTL. A holder stalled (or cut off from Redis) for longer
	// loses the lock, and another replica may then order the same
	// certificate.
	LockTTL time.Duration
	// LockPoll is how often a Lock waiting for another holder retries;
	// default DefaultLockPoll.
	LockPoll time.Duration
	// Log is the base logger (component "acme" is added); nil discards.
	Log *slog.Logger
}

// RedisStorage is a certmagic.Storage in Redis, for replicas that share
// their certificates (CLUSTER_MODE=redis). Under the prefix P:
//
//   - P+"file:"+key is a hash: the value ("v") and when it was stored
//     ("m", Unix milliseconds);
//   - P+"index" is a sorted set of every stored key, all scored 0, so the
//     keys under a directory are one lexicographic range (ZRANGEBYLEX)
//     instead of a SCAN over a Redis other features share;
//   - P+"lock:"+name holds a lock's random token, with a TTL.
//
// Directories are implicit, as certmagic expects: a key exists as a
// directory while some stored key lies under it.
type RedisStorage struct {
	rdb      redis.UniversalClient
	prefix   string
	lockTTL  time.Duration
	lockPoll time.Duration
	log      *slog.Logger

	mu   sync.Mutex
	held map[string]*heldLock // by lock name
}

// heldLock is a lock this storage holds and keeps renewing.
type heldLock struct {
	token string
	stop  context.CancelFunc
	done  chan struct{} // closed when the renewal loop has returned
}

var (
	_ certmagic.Storage   = (*RedisStorage)(nil)
	_ certmagic.TryLocker = (*RedisStorage)(nil)
)

// Scripts compare the token so that a holder whose lock expired (and was
// taken by another) never renews or deletes the new holder's lock.
var (
	unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0`)
	renewScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0`)
)

// NewRedisStorage returns a storage over rdb; it does not touch the network.
func NewRedisStorage(rdb redis.UniversalClient, o RedisStorageOptions) *RedisStorage {
	if o.KeyPrefix == "" {
		o.KeyPrefix = DefaultKeyPrefix
	}
	if o.LockTTL < time.Millisecond {
		o.LockTTL = DefaultLockTTL
	}
	if o.LockPoll <= 0 {
		o.LockPoll = DefaultLockPoll
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	return &RedisStorage{
		rdb:      rdb,
		prefix:   o.KeyPrefix,
		lockTTL:  o.LockTTL,
		lockPoll: o.LockPoll,
		log:      telemetry.Component(o.Log, "acme"),
		held:     map[string]*heldLock{},
	}
}

// String names the storage in certmagic's log lines (without the client,
// whose options would print the password).
func (s *RedisStorage) String() string { return "redis:" + s.prefix }

func (s *RedisStorage) fileKey(key string) string  { return s.prefix + "file:" + key }
func (s *RedisStorage) indexKey() string           { return s.prefix + "index" }
func (s *RedisStorage) lockKey(name string) string { return s.prefix + "lock:" + name }

// clean drops the slashes certmagic's keys never have at either end, so
// "a/" and "a" are one key.
func clean(key string) string { return strings.Trim(key, "/") }

// under is the ZRANGEBYLEX range of the keys below dir ("" is the root):
// from "dir/" up to, not including, "dir0" ('0' follows '/').
func under(dir string) (minLex, maxLex string) {
	if dir == "" {
		return "-", "+"
	}
	return "[" + dir + "/", "(" + dir + "0"
}

// Store puts value at key, creating or overwriting it.
func (s *RedisStorage) Store(ctx context.Context, key string, value []byte) error {
	key = clean(key)
	if key == "" {
		return errors.New("acme storage: storing an empty key")
	}
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, s.fileKey(key), "v", value, "m", time.Now().UnixMilli())
		p.ZAdd(ctx, s.indexKey(), redis.Z{Member: key})
		return nil
	})
	if err != nil {
		return fmt.Errorf("acme storage: storing %s: %w", key, err)
	}
	return nil
}

// Load returns the value at key, or an error wrapping fs.ErrNotExist.
func (s *RedisStorage) Load(ctx context.Context, key string) ([]byte, error) {
	key = clean(key)
	v, err := s.rdb.HGet(ctx, s.fileKey(key), "v").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, &fs.PathError{Op: "load", Path: key, Err: fs.ErrNotExist}
	}
	if err != nil {
		return nil, fmt.Errorf("acme storage: loading %s: %w", key, err)
	}
	return v, nil
}

// Delete removes key and, if it is a directory, every key under it. A
// missing key is not an error. A key stored under the directory while it is
// being deleted may survive: certmagic deletes only what it no longer uses.
func (s *RedisStorage) Delete(ctx context.Context, key string) error {
	key = clean(key)
	if key == "" {
		return errors.New("acme storage: deleting the root")
	}
	lo, hi := under(key)
	below, err := s.rdb.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: lo, Max: hi}).Result()
	if err != nil {
		return fmt.Errorf("acme storage: deleting %s: %w", key, err)
	}
	keys := append(below, key)
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		files := make([]string, len(keys))
		members := make([]any, len(keys))
		for i, k := range keys {
			files[i], members[i] = s.fileKey(k), k
		}
		p.Del(ctx, files...)
		p.ZRem(ctx, s.indexKey(), members...)
		return nil
	})
	if err != nil {
		return fmt.Errorf("acme storage: deleting %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is stored or is a directory of stored keys;
// false when Redis cannot say.
func (s *RedisStorage) Exists(ctx context.Context, key string) bool {
	file, dir, err := s.kind(ctx, clean(key))
	return err == nil && (file || dir)
}

// kind says whether key is a stored key and whether keys lie under it.
func (s *RedisStorage) kind(ctx context.Context, key string) (file, dir bool, err error) {
	lo, hi := under(key)
	var score *redis.FloatCmd
	var first *redis.StringSliceCmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		score = p.ZScore(ctx, s.indexKey(), key)
		first = p.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: lo, Max: hi, Count: 1})
		return nil
	})
	// Each command's own error: the pipeline reports only the first, and
	// a missing score (redis.Nil) is an answer, not a failure.
	for _, err := range []error{score.Err(), first.Err()} {
		if err != nil && !errors.Is(err, redis.Nil) {
			return false, false, fmt.Errorf("acme storage: looking up %s: %w", key, err)
		}
	}
	return score.Err() == nil, len(first.Val()) > 0, nil
}

// List returns the keys in dir: its direct children (stored keys and
// subdirectories), or with recursive every stored key under it and every
// directory on the way, sorted. A dir that does not exist is an error
// wrapping fs.ErrNotExist; a stored key lists as empty.
func (s *RedisStorage) List(ctx context.Context, dir string, recursive bool) ([]string, error) {
	dir = clean(dir)
	lo, hi := under(dir)
	below, err := s.rdb.ZRangeByLex(ctx, s.indexKey(), &redis.ZRangeBy{Min: lo, Max: hi}).Result()
	if err != nil {
		return nil, fmt.Errorf("acme storage: listing %s: %w", dir, err)
	}
	if len(below) == 0 {
		if file, _, err := s.kind(ctx, dir); err != nil || file {
			return nil, err
		}
		return nil, &fs.PathError{Op: "list", Path: dir, Err: fs.ErrNotExist}
	}
	base := ""
	if dir != "" {
		base = dir + "/"
	}
	seen := map[string]bool{}
	var out []string
	add := func(k string) {
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	for _, k := range below {
		rest := strings.TrimPrefix(k, base)
		if !recursive {
			first, _, _ := strings.Cut(rest, "/")
			add(base + first)
			continue
		}
		for i := range len(rest) {
			if rest[i] == '/' {
				add(base + rest[:i])
			}
		}
		add(k)
	}
	slices.Sort(out)
	return out, nil
}

// Stat describes key: a stored key with its size and time, or a directory.
func (s *RedisStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	key = clean(key)
	var size *redis.IntCmd
	var mtime *redis.StringCmd
	_, _ = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		size = p.HStrLen(ctx, s.fileKey(key), "v")
		mtime = p.HGet(ctx, s.fileKey(key), "m")
		return nil
	})
	for _, err := range []error{size.Err(), mtime.Err()} {
		if err != nil && !errors.Is(err, redis.Nil) {
			return certmagic.KeyInfo{}, fmt.Errorf("acme storage: stat %s: %w", key, err)
		}
	}
	if ms, err := strconv.ParseInt(mtime.Val(), 10, 64); err == nil {
		return certmagic.KeyInfo{Key: key, Modified: time.UnixMilli(ms), Size: size.Val(), IsTerminal: true}, nil
	}
	_, dir, err := s.kind(ctx, key)
	if err != nil {
		return certmagic.KeyInfo{}, err
	}
	if dir {
		return certmagic.KeyInfo{Key: key}, nil
	}
	return certmagic.KeyInfo{}, &fs.PathError{Op: "stat", Path: key, Err: fs.ErrNotExist}
}

// Lock takes the named lock, waiting (polling every LockPoll) while another
// holder has it, until ctx ends. A lock whose holder vanished expires after
// LockTTL. Held, it is renewed in the background until Unlock.
func (s *RedisStorage) Lock(ctx context.Context, name string) error {
	for {
		ok, err := s.TryLock(ctx, name)
		if err != nil || ok {
			return err
		}
		t := time.NewTimer(s.lockPoll)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("acme storage: waiting for lock %s: %w", name, context.Cause(ctx))
		case <-t.C:
		}
	}
}

// TryLock takes the named lock if it is free, without waiting.
func (s *RedisStorage) TryLock(ctx context.Context, name string) (bool, error) {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	token := hex.EncodeToString(b)
	ok, err := s.rdb.SetNX(ctx, s.lockKey(name), token, s.lockTTL).Result()
	if err != nil {
		return false, fmt.Errorf("acme storage: locking %s: %w", name, err)
	}
	if ok {
		s.hold(name, token)
	}
	return ok, nil
}

// Unlock stops renewing the named lock and deletes it if it is still ours.
// It is an error when this storage does not hold it, or when it had expired
// meanwhile: then another replica may have done the same work.
func (s *RedisStorage) Unlock(ctx context.Context, name string) error {
	s.mu.Lock()
	h := s.held[name]
	delete(s.held, name)
	s.mu.Unlock()
	if h == nil {
		return fmt.Errorf("acme storage: unlocking %s: not held here", name)
	}
	h.stop()
	<-h.done
	n, err := unlockScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token).Int()
	if err != nil {
		return fmt.Errorf("acme storage: unlocking %s (it expires by itself within %v): %w", name, s.lockTTL, err)
	}
	if n == 0 {
		return fmt.Errorf("acme storage: unlocking %s: the lock had expired before it was released", name)
	}
	return nil
}

// hold records a lock just taken and starts renewing it.
func (s *RedisStorage) hold(name, token string) {
	ctx, stop := context.WithCancel(context.Background())
	h := &heldLock{token: token, stop: stop, done: make(chan struct{})}
	s.mu.Lock()
	prev := s.held[name]
	s.held[name] = h
	s.mu.Unlock()
	if prev != nil {
		// Ours had expired unnoticed and we took it again: one renewal
		// loop per name.
		prev.stop()
	}
	go s.renew(ctx, name, h)
}

// renew extends the lock's TTL every third of it until stopped, or until
// the lock turns out to be someone else's.
func (s *RedisStorage) renew(ctx context.Context, name string, h *heldLock) {
	defer close(h.done)
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("lock renewal panicked; the lock will expire", "lock", name, "panic", p, "stack", string(debug.Stack()))
		}
	}()
	t := time.NewTicker(s.lockTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := renewScript.Run(ctx, s.rdb, []string{s.lockKey(name)}, h.token, s.lockTTL.Milliseconds()).Int()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.log.Warn("renewing a lock failed; retrying", "lock", name, "error", err)
		case n == 0:
			s.log.Warn("lock lost: it expired before it was renewed", "lock", name)
			return
		}
	}
}

package cluster

// The Lua scripts run atomically inside Redis. They read Redis's clock
// (TIME; allowed in scripts since Redis 5, whose scripts replicate their
// effects), so replicas with skewed clocks still share one timeline.
// Numbers are written with %.0f: Lua's default %.14g would round a
// microsecond timestamp.

// gcraScript is the limiter's GCRA (the same algorithm as
// ratelimit.Limiter.gcra), in microseconds.
//
//	KEYS[1] bucket key        ARGV[1] interval (µs per token)
//	                          ARGV[2] tau (burst × interval, µs)
//
// Returns {allowed 0/1, remaining, reset µs, retry-after µs}. The key holds
// the theoretical arrival time and expires when the bucket is full again,
// so idle clients cost nothing and a spray of addresses cannot grow Redis
// beyond what is in use.
const gcraScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tau = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local nxt = tat + interval
local over = nxt - now - tau
if over > 0 then
  return {0, 0, over, over}
end
redis.call('SET', KEYS[1], string.format('%.0f', nxt), 'PX', math.ceil((nxt - now) / 1000) + 1)
local remaining = math.floor((tau - (nxt - now)) / interval)
local reset = nxt - now
if remaining <= 0 then reset = nxt - now - tau + interval end
return {1, remaining, reset, 0}
`

// ddosScript adds a replica's count of one client to the cluster-wide
// per-minute counters and blocks the client when its sliding-minute count
// is over the threshold (the estimate ddos.Guard uses: the current minute
// plus the part of the previous one still within the last 60 s).
//
//	KEYS[1] counter base (…:dd:<ip>; minutes are appended)
//	KEYS[2] blocks (sorted set: member ip, score = end of block, unix ms)
//	ARGV[1] delta  ARGV[2] threshold  ARGV[3] block ms  ARGV[4] ip  ARGV[5] channel
//
// A block is published as "block <ip> <until ms>". Returns the block's end
// or 0. Counters expire after two minutes; the blocks set expires when its
// last block ends. (Keys derived inside the script: standalone Redis or
// Sentinel, not Redis Cluster.)
const ddosScript = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local blocked = tonumber(redis.call('ZSCORE', KEYS[2], ARGV[4]) or '0')
if blocked > now then return 0 end
local minute = math.floor(now / 60000)
local ck = KEYS[1] .. ':' .. string.format('%.0f', minute)
local pk = KEYS[1] .. ':' .. string.format('%.0f', minute - 1)
local delta = tonumber(ARGV[1])
local cur = redis.call('INCRBY', ck, delta)
if cur == delta then redis.call('PEXPIRE', ck, 120000) end
local prev = tonumber(redis.call('GET', pk) or '0')
local left = 60000 - (now - minute * 60000)
if cur * 60000 + prev * left > tonumber(ARGV[2]) * 60000 then
  local blockms = tonumber(ARGV[3])
  local u = now + blockms
  redis.call('ZADD', KEYS[2], u, ARGV[4])
  if redis.call('PTTL', KEYS[2]) < blockms then redis.call('PEXPIRE', KEYS[2], blockms) end
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
  redis.call('DEL', ck, pk)
  redis.call('PUBLISH', ARGV[5], 'block ' .. ARGV[4] .. ' ' .. string.format('%.0f', u))
  return u
end
return 0
`

// unblockScript lifts a block everywhere: removes it, resets the client's
// counters (its count starts from zero, as on one gateway), and publishes
// "unblock <ip>".
//
//	KEYS[1] blocks  KEYS[2] counter base  ARGV[1] ip  ARGV[2] channel
const unblockScript = `
local t = redis.call('TIME')
local minute = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / 60000)
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2] .. ':' .. string.format('%.0f', minute), KEYS[2] .. ':' .. string.format('%.0f', minute - 1))
redis.call('PUBLISH', ARGV[2], 'unblock ' .. ARGV[1])
return 1
`

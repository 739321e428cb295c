// The allow/deny lists and the blocks, kept equal on every replica: list
// changes written to Redis and published, changes made during an outage
// kept for replay, the seeding of a Redis that lost the lists, the periodic
// resync, and the application of what other replicas published.

package cluster

import (
	"context"
	"errors"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/portcullis/portcullis/internal/iplist"
)

// maxPending bounds the changes kept for replay during an outage.
const maxPending = 100_000

// change is one change kept for replay after an outage.
type change struct {
	kind  iplist.Kind
	p     netip.Prefix
	add   bool
	block bool // an unblock of p.Addr() (kind/add unused)
}

func (c change) String() string {
	switch {
	case c.block:
		return "unblock " + c.p.Addr().String()
	case c.add:
		return "add " + c.kind.String() + " " + c.p.String()
	default:
		return "del " + c.kind.String() + " " + c.p.String()
	}
}

// ListChanged writes a list change made through the admin API to Redis and
// publishes it (iplist.Sync). During an outage it is kept and replayed
// when Redis is back.
func (n *Node) ListChanged(k iplist.Kind, p netip.Prefix, added bool) {
	n.share(change{kind: k, p: p, add: added})
}

// share writes c to Redis now, or keeps it for replay while the replica is
// degraded. After Close it applies locally only (the replica is shutting
// down; nothing is left to replay it).
func (n *Node) share(c change) {
	for !n.queue(c) {
		if n.closed.Load() {
			n.log.Debug("change after close not shared", "change", c.String())
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), n.o.BackgroundTimeout)
		err := n.writeChange(ctx, c)
		cancel()
		if err == nil {
			return
		}
		n.fail(err) // then queued, unless a recovery already ended the outage (or Close came)
	}
}

// queue keeps c for replay and reports true while the replica is degraded;
// false when it is not (write c now). Checked under pmu, which recover
// holds to end an outage: a change is either queued before the last replay
// or written directly, never queued after it.
func (n *Node) queue(c change) bool {
	n.pmu.Lock()
	defer n.pmu.Unlock()
	if n.br.Closed() {
		return false
	}
	n.fallbacks.Inc()
	if len(n.pending) >= maxPending {
		n.pending = n.pending[1:] // the oldest goes; a resync is still ahead
	}
	n.pending = append(n.pending, c)
	return true
}

func (n *Node) writeChange(ctx context.Context, c change) error {
	if c.block {
		return n.unblockRemote(ctx, c.p.Addr())
	}
	op, v := "del", c.p.String()
	_, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if c.add {
			op = "add"
			p.SAdd(ctx, n.keys.list[c.kind], v)
		} else {
			p.SRem(ctx, n.keys.list[c.kind], v)
		}
		p.Incr(ctx, n.keys.version)
		p.Publish(ctx, n.keys.channel, "list "+op+" "+c.kind.String()+" "+v)
		return nil
	})
	return err
}

// reseed pushes this replica's lists when Redis has none at all (a Redis
// restarted without persistence, or the first replica ever): the replicas
// had converged before the outage, so any one of them holds the lists.
//
// A replica that has not loaded the shared lists yet holds only its boot
// entries: when it finds Redis empty (Redis restarted along with it, as
// when a node dies), the replicas that hold the lists must seed it, or
// their resync would replace every admin change with its boot entries. It
// waits one resync period for them, and seeds only if none did (the first
// replica of a new cluster). Its boot entries are replayed either way.
func (n *Node) reseed(ctx context.Context) error {
	if !n.holdsLists {
		if n.seedWait.IsZero() {
			n.seedWait = time.Now()
		}
		if time.Since(n.seedWait) < n.o.ResyncEvery {
			return nil
		}
	}
	ok, err := n.rdb.SetNX(ctx, n.keys.marker, "1", 0).Result()
	if err != nil || !ok {
		return err
	}
	_, err = n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for _, k := range []iplist.Kind{iplist.Allow, iplist.Deny} {
			es := n.lists.Entries(k)
			if len(es) == 0 {
				continue
			}
			vals := make([]any, len(es))
			for i, e := range es {
				vals[i] = e.String()
			}
			p.SAdd(ctx, n.keys.list[k], vals...)
		}
		p.Incr(ctx, n.keys.version)
		return nil
	})
	if err == nil {
		n.holdsLists = true
		n.log.Info("shared lists were empty in Redis: seeded them from this replica",
			"whitelist", n.lists.Len(iplist.Allow), "blacklist", n.lists.Len(iplist.Deny))
	}
	return err
}

// resync makes the local lists equal to Redis's (when their version moved
// since the last resync) and applies every block in force.
func (n *Node) resync(ctx context.Context) error {
	if err := n.reseed(ctx); err != nil {
		return err
	}
	vm, err := n.rdb.MGet(ctx, n.keys.version, n.keys.marker).Result()
	if err != nil {
		return err
	}
	ver, _ := vm[0].(string)
	_, initialised := vm[1].(string)
	if ver != n.lastVersion || ver == "" {
		var members [2]*redis.StringSliceCmd
		var v *redis.StringCmd
		// MULTI: both sets and their version read at one instant.
		if _, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			for _, k := range []iplist.Kind{iplist.Allow, iplist.Deny} {
				members[k] = p.SMembers(ctx, n.keys.list[k])
			}
			v = p.Get(ctx, n.keys.version)
			return nil
		}); err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		for _, k := range []iplist.Kind{iplist.Allow, iplist.Deny} {
			ps := make([]netip.Prefix, 0, len(members[k].Val()))
			for _, s := range members[k].Val() {
				if p, err := netip.ParsePrefix(s); err == nil {
					ps = append(ps, p)
				}
			}
			if n.lists.Replace(k, ps) {
				n.log.Debug("list resynced from redis", "list", k.String(), "entries", len(ps))
			}
		}
		n.lastVersion = v.Val()
	}
	if initialised {
		n.holdsLists = true // the lists just read are the cluster's
	}
	nowMS := time.Now().UnixMilli()
	blocks, err := n.rdb.ZRangeByScoreWithScores(ctx, n.keys.blocks, &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(nowMS, 10), Max: "+inf",
	}).Result()
	if err != nil {
		return err
	}
	for _, z := range blocks {
		if s, ok := z.Member.(string); ok {
			n.applyBlock(s, int64(z.Score))
		}
	}
	return nil
}

// apply applies one published change to the local state.
func (n *Node) apply(ev string) {
	f := strings.Fields(ev)
	switch {
	case len(f) == 4 && f[0] == "list":
		var k iplist.Kind
		switch f[2] {
		case iplist.Allow.String():
			k = iplist.Allow
		case iplist.Deny.String():
			k = iplist.Deny
		default:
			return
		}
		p, err := netip.ParsePrefix(f[3])
		if err != nil {
			return
		}
		n.lists.Apply(k, p, f[1] == "add")
	case len(f) == 3 && f[0] == "block":
		if ms, err := strconv.ParseInt(f[2], 10, 64); err == nil {
			n.applyBlock(f[1], ms)
		}
	case len(f) == 2 && f[0] == "unblock":
		if a, err := netip.ParseAddr(f[1]); err == nil {
			n.guard.Lift(a)
		}
	}
}

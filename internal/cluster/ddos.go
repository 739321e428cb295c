// The cluster-wide DDoS counters: counted locally on the request path,
// flushed as deltas into Redis's per-minute counters by ddosScript, which
// blocks a key over the threshold and publishes the block; and the lifting
// of a block everywhere.

package cluster

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// countShards × maxCountsPerShard bound the DDoS deltas held between
	// two flushes (a spray of addresses cannot grow them without bound).
	countShards       = 32
	maxCountsPerShard = 8192
	// flushChunk is the number of keys per pipeline of a flush.
	flushChunk = 1000
)

type countShard struct {
	mu sync.Mutex
	m  map[netip.Addr]uint32
	_  [40]byte // keep shards on separate cache lines
}

// Count records a counted request of key for the next flush (ddos.Sharer).
func (n *Node) Count(key netip.Addr) {
	if !n.br.Closed() {
		return // the local guard counts alone during an outage
	}
	s := &n.counts[shardOf(key)]
	s.mu.Lock()
	if v, ok := s.m[key]; ok {
		s.m[key] = v + 1
	} else if len(s.m) < maxCountsPerShard {
		s.m[key] = 1
	}
	s.mu.Unlock()
}

func shardOf(a netip.Addr) int {
	b := a.As16()
	h := uint32(2166136261)
	for _, c := range b {
		h = (h ^ uint32(c)) * 16777619
	}
	return int(h % countShards)
}

// Unblocked lifts key's block everywhere (ddos.Sharer): called by the admin
// API's DELETE /admin/blocked after the local guard lifted it.
func (n *Node) Unblocked(key netip.Addr) {
	n.share(change{p: netip.PrefixFrom(key, key.BitLen()), block: true})
}

func (n *Node) unblockRemote(ctx context.Context, key netip.Addr) error {
	ip := keyText(key)
	return n.unblockLua.Run(ctx, n.rdb, []string{n.keys.blocks, n.keys.dd + ip}, ip, n.keys.channel).Err()
}

func (n *Node) applyBlock(ip string, untilMS int64) {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return
	}
	n.guard.Block(a, time.UnixMilli(untilMS))
}

// flush sends the DDoS counts gathered since the last flush, pipelined;
// the script blocks and publishes keys over the threshold.
func (n *Node) flush(ctx context.Context) error {
	type kv struct {
		k netip.Addr
		v uint32
	}
	var batch []kv
	for i := range n.counts {
		s := &n.counts[i]
		s.mu.Lock()
		if len(s.m) == 0 {
			s.mu.Unlock()
			continue
		}
		m := s.m
		s.m = make(map[netip.Addr]uint32, len(m))
		s.mu.Unlock()
		for k, v := range m {
			batch = append(batch, kv{k, v})
		}
	}
	blockMS := n.o.BlockDuration.Milliseconds()
	for len(batch) > 0 {
		chunk := batch[:min(len(batch), flushChunk)]
		batch = batch[len(chunk):]
		cmds, err := n.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, c := range chunk {
				ip := keyText(c.k)
				n.flushDDoS.EvalSha(ctx, p, []string{n.keys.dd + ip, n.keys.blocks},
					c.v, n.o.DDoSThreshold, blockMS, ip, n.keys.channel)
			}
			return nil
		})
		for i, cmd := range cmds {
			// This replica's counts completed a block: it counts it, once
			// in the cluster. (The block arrives on the channel after this
			// loop iteration, as for every replica.)
			if c, ok := cmd.(*redis.Cmd); ok && i < len(chunk) {
				if until, err := c.Int64(); err == nil && until > 0 {
					n.guard.NoteBlock(chunk[i].k, time.UnixMilli(until))
				}
			}
		}
		if err != nil {
			if strings.HasPrefix(err.Error(), "NOSCRIPT") {
				return n.flushDDoS.Load(ctx, n.rdb).Err() // this batch is lost; the next one goes
			}
			return err
		}
	}
	return nil
}

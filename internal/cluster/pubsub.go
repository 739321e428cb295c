// The subscription to the change channel: reading it, and replacing it
// when it falls silent (a network cut without a reset).

package cluster

import (
	"context"
	"errors"
	"net"
	"time"

	"github.com/redis/go-redis/v9"
)

// pubsubQuiet is how long the channel may stay silent before the
// subscription is pinged. A network cut without a reset (a node lost,
// Redis moved to another address, a NAT or firewall entry dropped)
// leaves a socket that reads nothing and reports no error for as long
// as TCP keepalives take to give up (minutes): the PING's answer is
// what proves the subscription alive. One PING a second per replica.
const pubsubQuiet = time.Second

// receive reads the channel and hands every message to the loop, in order.
// A (re)subscription forces a resync: messages may have been missed.
//
// A subscription silent for pubsubQuiet is pinged; one whose answer does
// not come within BackgroundTimeout is dead (the network dropped it
// without a reset, so no read ever fails) and is replaced by a new one.
// ps nil: subscribe first.
func (n *Node) receive(ctx context.Context, ps *redis.PubSub) {
	if ps == nil {
		ps = n.rdb.Subscribe(ctx, n.keys.channel)
	}
	defer func() { _ = ps.Close() }()
	lastRead := time.Now() // of anything: a message, a confirmation, a pong
	var pinged time.Time   // zero: no ping awaiting its answer
	warned := false        // this silence was logged at warn already
	for ctx.Err() == nil {
		wait := time.Until(lastRead.Add(pubsubQuiet))
		if !pinged.IsZero() {
			wait = time.Until(pinged.Add(n.o.BackgroundTimeout))
		}
		msg, err := ps.ReceiveTimeout(ctx, max(wait, time.Millisecond))
		if n.hook != nil {
			n.hook("receive")
		}
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				n.fail(err)
				select { // go-redis redials on the next receive
				case <-ctx.Done():
					return
				case <-time.After(n.o.ProbeEvery):
				}
				lastRead, pinged = time.Now(), time.Time{}
				continue
			}
			now := time.Now()
			switch {
			case pinged.IsZero() && now.Sub(lastRead) >= pubsubQuiet:
				pctx, cancel := context.WithTimeout(ctx, n.o.BackgroundTimeout)
				err := ps.Ping(pctx)
				cancel()
				pinged = now
				if err == nil {
					continue
				}
				fallthrough // a subscription that cannot even send is dead too
			case !pinged.IsZero() && now.Sub(pinged) >= n.o.BackgroundTimeout:
				silent := now.Sub(lastRead).Round(time.Millisecond).String()
				if !warned {
					warned = true
					n.log.Warn("redis subscription silent: resubscribing on a new connection",
						"redis", n.o.Redis.String(), "silent_for", silent)
				} else {
					n.log.Debug("redis subscription still silent: resubscribing", "silent_for", silent)
				}
				_ = ps.Close()
				ps = n.rdb.Subscribe(ctx, n.keys.channel)
				n.forceSync.Store(true) // what was published meanwhile is lost
				lastRead, pinged = time.Now(), time.Time{}
			}
			continue
		}
		lastRead, pinged = time.Now(), time.Time{}
		switch m := msg.(type) {
		case *redis.Subscription:
			if warned {
				warned = false
				n.log.Info("redis subscription restored", "redis", n.o.Redis.String())
			}
			n.forceSync.Store(true)
		case *redis.Message:
			select {
			case n.events <- m.Payload:
			default:
				// The loop is behind: a resync catches up.
				n.forceSync.Store(true)
			}
		}
	}
}

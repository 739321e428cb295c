// The background goroutines of a Node: the loop that applies published
// changes, flushes DDoS counts, resyncs and probes, and the supervisor that
// restarts a loop that panicked.

package cluster

import (
	"context"
	"fmt"
	"runtime/debug"
	"time"
)

const (
	// restartMin and restartMax bound the pause before a background loop
	// that panicked is started again (doubling while it keeps panicking).
	restartMin = 100 * time.Millisecond
	restartMax = 5 * time.Second
)

// supervise runs one background loop until ctx ends. A panic in it is
// logged with its stack and the loop started again after a pause (doubling
// from restartMin to restartMax while it keeps panicking): the replica
// goes on sharing state instead of the process dying, and the restarted
// loop resyncs in full, since what the panic interrupted is unknown.
func (n *Node) supervise(ctx context.Context, name string, run func(context.Context)) {
	pause := restartMin
	for {
		began := time.Now()
		if !n.runRecovered(ctx, name, run) || ctx.Err() != nil {
			return // run returns only when ctx ends
		}
		if time.Since(began) > time.Minute {
			pause = restartMin // an old panic: start again quickly
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(pause):
		}
		pause = min(2*pause, restartMax)
		n.forceSync.Store(true)
	}
}

// runRecovered runs run and reports whether it panicked.
func (n *Node) runRecovered(ctx context.Context, name string, run func(context.Context)) (panicked bool) {
	defer func() {
		if p := recover(); p != nil {
			panicked = true
			n.log.Error("cluster background loop panicked: restarting it", "loop", name,
				"panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
	}()
	run(ctx)
	return false
}

// loop applies messages, flushes DDoS counts, resyncs, and probes Redis
// during an outage: one goroutine, so resyncs and messages apply in order.
func (n *Node) loop(ctx context.Context) {
	flush := time.NewTicker(n.o.FlushEvery)
	resync := time.NewTicker(n.o.ResyncEvery)
	probe := time.NewTicker(n.o.ProbeEvery)
	defer flush.Stop()
	defer resync.Stop()
	defer probe.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-n.events:
			n.apply(ev)
		case <-flush.C:
			if n.hook != nil {
				n.hook("loop")
			}
			if n.br.Closed() {
				n.bg(ctx, n.flush)
			}
			if n.forceSync.Load() && n.br.Closed() {
				n.forceSync.Store(false)
				n.lastVersion = ""
				n.bg(ctx, n.resync)
			}
		case <-resync.C:
			if n.br.Closed() {
				n.bg(ctx, n.resync)
			}
		case <-probe.C:
			n.probe(ctx) // nothing to do unless degraded
		}
	}
}

// bg runs a background call with its deadline; a failure opens the breaker.
func (n *Node) bg(ctx context.Context, f func(context.Context) error) {
	cctx, cancel := context.WithTimeout(ctx, n.o.BackgroundTimeout)
	defer cancel()
	if err := f(cctx); err != nil && ctx.Err() == nil {
		n.fail(err)
	}
}

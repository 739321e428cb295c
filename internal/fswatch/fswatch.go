// Package fswatch turns the bursts of file-system events that editors,
// deploy tools and Kubernetes produce when they replace a file into one
// call: the files a gateway reloads (CONFIG_FILE, certificates) are watched
// through it.
package fswatch

import (
	"context"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Debounce is how long the loop waits after the last event before it fires:
// an editor writes a temporary file and renames it, Kubernetes swaps a
// ..data symlink, each a burst of events.
const Debounce = 100 * time.Millisecond

// MaxDelay bounds the wait in a directory that never goes quiet.
const MaxDelay = time.Second

// Loop reads w's events until ctx ends or w is closed. Events keep accepts
// (all when keep is nil) are debounced, then fire runs once for the burst;
// watch errors go to onErr.
func Loop(ctx context.Context, w *fsnotify.Watcher, keep func(fsnotify.Event) bool, onErr func(error), fire func()) {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var first time.Time // first event of the pending burst; zero when none
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.Events:
			if !ok {
				return
			}
			if keep != nil && !keep(ev) {
				continue
			}
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			timer.Reset(max(min(Debounce, first.Add(MaxDelay).Sub(now)), 0))
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			onErr(err)
		case <-timer.C:
			first = time.Time{}
			fire()
		}
	}
}

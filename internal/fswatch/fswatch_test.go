package fswatch

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fsnotify/fsnotify"
)

// TestLoopFiresOncePerBurst: a burst of writes and renames in a watched
// directory fires once, after it goes quiet; ignored events never fire.
func TestLoopFiresOncePerBurst(t *testing.T) {
	dir := t.TempDir()
	w, err := fsnotify.NewWatcher()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if err := w.Add(dir); err != nil {
		t.Fatal(err)
	}
	var fired atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		Loop(ctx, w, func(ev fsnotify.Event) bool { return filepath.Ext(ev.Name) != ".ignored" },
			func(err error) { t.Errorf("watch error: %v", err) }, func() { fired.Add(1) })
	}()
	defer func() { cancel(); <-done }()

	for i := range 5 {
		tmp := filepath.Join(dir, "f.tmp")
		if err := os.WriteFile(tmp, []byte{byte(i)}, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, "f")); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(3 * time.Second)
	for fired.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(3 * Debounce) // a second fire for the same burst would land here
	if n := fired.Load(); n != 1 {
		t.Fatalf("fired %d times for one burst, want 1", n)
	}
	if err := os.WriteFile(filepath.Join(dir, "x.ignored"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * Debounce)
	if n := fired.Load(); n != 1 {
		t.Errorf("an ignored event fired: %d", n)
	}
}

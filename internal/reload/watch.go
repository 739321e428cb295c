package reload

import (
	"context"
	"path/filepath"
	"slices"

	"github.com/fsnotify/fsnotify"

	"github.com/portcullis/portcullis/internal/fswatch"
)

// WatchDebounce and WatchMaxDelay bound how long after an edit CONFIG_FILE
// is read (fswatch.Debounce, fswatch.MaxDelay).
const (
	WatchDebounce = fswatch.Debounce
	WatchMaxDelay = fswatch.MaxDelay
)

// Watch reloads when CONFIG_FILE changes, until ctx ends; without
// CONFIG_FILE it returns at once. It watches the file's directory (and the
// directory its symlink resolves to), not the file: editors replace the
// file by renaming over it and Kubernetes swaps a ..data symlink, and a
// watch on the old inode would go quiet. Events are debounced and the
// content compared, so only a real change reloads.
func (m *Manager) Watch(ctx context.Context) {
	path := m.o.Config.ConfigFile
	if path == "" {
		return
	}
	log := m.log
	w, err := fsnotify.NewWatcher()
	if err != nil {
		log.Warn("cannot watch CONFIG_FILE; reload with SIGHUP or POST /admin/reload", "error", err.Error())
		return
	}
	defer w.Close()
	base := filepath.Dir(path)
	if err := w.Add(base); err != nil {
		log.Warn("cannot watch CONFIG_FILE's directory; reload with SIGHUP or POST /admin/reload", "dir", base, "error", err.Error())
		return
	}
	// target is the directory the symlink resolves to, when elsewhere. It
	// is looked up again before each reload: once the symlink is swapped
	// to another directory, edits there must be seen, and the old one's
	// events are noise.
	target := ""
	follow := func() {
		d := ""
		if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != base {
			d = filepath.Dir(real)
		}
		if d == target {
			return
		}
		if target != "" {
			_ = w.Remove(target) // fails when the directory is gone, and is then unwatched anyway
		}
		target = ""
		if d != "" {
			if err := w.Add(d); err != nil {
				log.Warn("cannot watch the directory CONFIG_FILE's symlink points to; edits there need SIGHUP or POST /admin/reload", "dir", d, "error", err.Error())
				return
			}
			target = d
		}
	}
	follow()
	log.Info("watching CONFIG_FILE", "file", path, "dirs", slices.DeleteFunc([]string{base, target}, func(d string) bool { return d == "" }))
	// Chmod alone changes no content.
	fswatch.Loop(ctx, w, func(ev fsnotify.Event) bool { return ev.Op != fsnotify.Chmod },
		func(err error) { log.Warn("CONFIG_FILE watch error", "error", err.Error()) },
		func() {
			follow()
			_, _ = m.ReloadIfChanged(TriggerFile)
		})
}

// ReloadIfChanged is a watcher's reload: a file whose content is the one
// last loaded or refused is skipped, and a panic is logged, never fatal.
func (m *Manager) ReloadIfChanged(trigger string) (Result, error) {
	defer func() {
		if v := recover(); v != nil {
			m.log.Error("reload panicked", "trigger", trigger, "panic", v)
		}
	}()
	return m.reload(trigger, true)
}

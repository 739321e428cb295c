package tlscert

import (
	"context"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fsnotify/fsnotify"

	"github.com/portcullis/portcullis/internal/fswatch"
)

// Reload reads every file again and, when all of them are valid, puts the
// new certificates (and client CAs) in force with one atomic swap:
// connections already established keep theirs, the next handshake gets the
// new ones. On any error the certificates in force stay and the error is
// returned and logged.
func (s *Store) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	snap, err := s.load()
	if err != nil {
		s.reloads.WithLabelValues("failure").Inc()
		s.log.Warn("TLS certificates reload failed; the previous ones stay in force", "error", err.Error())
		return err
	}
	s.install(snap)
	s.reloads.WithLabelValues("success").Inc()
	s.log.Info("TLS certificates reloaded", "certificates", len(snap.certs))
	return nil
}

// Run reloads when the files change, until ctx ends. It watches their
// directories, not the files: a file replaced by a rename, or a symlink
// swapped under it, would take a watch on the file itself with it. Without
// file notifications it logs a warning and returns; Reload still works.
func (s *Store) Run(ctx context.Context) {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		s.log.Warn("cannot watch the TLS certificates; reload them with SIGHUP", "error", err.Error())
		return
	}
	defer w.Close()
	dirs := s.watched()
	for dir := range dirs {
		if err := w.Add(dir); err != nil {
			s.log.Warn("cannot watch a TLS certificate directory; reload with SIGHUP", "dir", dir, "error", err.Error())
			return
		}
	}
	fswatch.Loop(ctx, w, func(ev fsnotify.Event) bool { return relevant(dirs, ev) },
		func(err error) { s.log.Warn("TLS certificate watch error", "error", err.Error()) },
		s.safeReload)
}

// safeReload is the watcher's Reload: a panic is logged, never fatal.
func (s *Store) safeReload() {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("TLS certificate reload panicked", "panic", v)
		}
	}()
	_ = s.Reload() // logged by Reload
}

// watched maps each directory to watch to the names in it that matter;
// nil means every name (TLS_CERTS_DIR).
func (s *Store) watched() map[string][]string {
	dirs := map[string][]string{}
	if s.opts.Dir != "" {
		dirs[filepath.Clean(s.opts.Dir)] = nil
	}
	for _, f := range []string{s.opts.CertFile, s.opts.KeyFile, s.opts.ClientCAFile} {
		if f == "" {
			continue
		}
		dir := filepath.Dir(f)
		if names, ok := dirs[dir]; !ok || names != nil {
			dirs[dir] = append(names, filepath.Base(f))
		}
	}
	return dirs
}

// relevant reports whether ev may change a file the store reads: a name it
// reads, or a Kubernetes Secret volume's ..data and timestamped
// directories, through which its files are symlinks.
func relevant(dirs map[string][]string, ev fsnotify.Event) bool {
	if ev.Op == fsnotify.Chmod {
		return false
	}
	names, ok := dirs[filepath.Dir(ev.Name)]
	if !ok || names == nil {
		return true
	}
	base := filepath.Base(ev.Name)
	return strings.HasPrefix(base, "..") || slices.Contains(names, base)
}

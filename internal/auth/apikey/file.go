package apikey

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// fileDebounce lets an editor finish writing (truncate, write, rename)
// before the file is read.
const fileDebounce = 50 * time.Millisecond

// maxFileErrors caps the problems one error reports.
const maxFileErrors = 10

// fileState is what the watcher last saw of the key file.
type fileState struct {
	info    os.FileInfo // nil when the last stat failed
	sum     [sha256.Size]byte
	lastErr string // the last reload error logged, so a failure is logged once
}

// parseKeyFile parses API_KEYS_FILE content: one `hash` or `name:hash` per
// line (the name is everything before the last ':'), # comments, blank lines.
// Errors name the file and line, never the line's content: an operator who
// pasted a plain key by mistake must not find it in the logs.
func parseKeyFile(path string, data []byte) (map[digest]string, error) {
	keys := make(map[digest]string)
	firstLine := make(map[digest]int)
	var errs []error
	fail := func(n int, format string, args ...any) {
		if len(errs) < maxFileErrors {
			errs = append(errs, fmt.Errorf("API_KEYS_FILE %s line %d: %s", path, n, fmt.Sprintf(format, args...)))
		}
	}
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		line = strings.TrimSpace(line) // also drops a CRLF file's \r
		if line == "" || line[0] == '#' {
			continue
		}
		name, hash := "", line
		if j := strings.LastIndexByte(line, ':'); j >= 0 {
			name, hash = strings.TrimSpace(line[:j]), strings.TrimSpace(line[j+1:])
			if !validName(name) {
				fail(n, "expected name:hash with a name of 1-%d printable ASCII characters", maxNameBytes)
				continue
			}
		}
		d, ok := parseDigest(hash)
		if !ok {
			fail(n, "expected a SHA-256 digest (64 hex characters), optionally after name:")
			continue
		}
		if prev, dup := firstLine[d]; dup {
			fail(n, "the same digest is already on line %d", prev)
			continue
		}
		firstLine[d] = n
		if name == "" {
			name = defaultName(d)
		}
		keys[d] = name
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return keys, nil
}

// loadFileAtBoot reads the file once; any problem fails New.
func (s *Store) loadFileAtBoot() error {
	info, err := os.Stat(s.file)
	if err != nil {
		return fmt.Errorf("API_KEYS_FILE: %w", err)
	}
	data, err := os.ReadFile(s.file)
	if err != nil {
		return fmt.Errorf("API_KEYS_FILE: %w", err)
	}
	keys, err := parseKeyFile(s.file, data)
	if err != nil {
		return err
	}
	s.install(keys)
	s.fileState = fileState{info: info, sum: sha256.Sum256(data)}
	s.log.Info("API key file loaded", "path", s.file, "keys", len(keys))
	return nil
}

// install swaps in the env digests merged with the file's keys (a file
// entry's name wins over the env's nameless entry for the same digest).
func (s *Store) install(fileKeys map[digest]string) {
	merged := make(map[digest]string, len(s.env)+len(fileKeys))
	maps.Copy(merged, s.env)
	maps.Copy(merged, fileKeys)
	s.local.Store(&merged)
}

// reloadFile re-reads the file if its content changed; a bad file is logged
// (once per distinct problem) and the previous keys stay.
func (s *Store) reloadFile() {
	st := &s.fileState
	info, statErr := os.Stat(s.file)
	st.info = info
	data, err := os.ReadFile(s.file)
	if statErr == nil && err == nil {
		sum := sha256.Sum256(data)
		if sum == st.sum {
			st.lastErr = ""
			return
		}
		var keys map[digest]string
		if keys, err = parseKeyFile(s.file, data); err == nil {
			s.install(keys)
			st.sum, st.lastErr = sum, ""
			s.fileReload.WithLabelValues("ok").Inc()
			s.log.Info("API key file reloaded", "path", s.file, "keys", len(keys))
			return
		}
	}
	if err == nil {
		err = statErr
	}
	s.fileReload.WithLabelValues("error").Inc()
	if msg := err.Error(); msg != st.lastErr {
		st.lastErr = msg
		s.log.Error("API key file reload failed; keeping the previous keys", "path", s.file, "error", err)
	}
}

// changedOnDisk reports whether a stat sees a different file than last time
// (mtime, size, inode, or existence).
func (s *Store) changedOnDisk() bool {
	info, err := os.Stat(s.file)
	prev := s.fileState.info
	switch {
	case err != nil:
		return prev != nil
	case prev == nil:
		return true
	default:
		return !info.ModTime().Equal(prev.ModTime()) || info.Size() != prev.Size() || !os.SameFile(info, prev)
	}
}

// newWatcher watches the key file's directory (catches atomic renames and
// Kubernetes' ..data symlink swaps); nil when notifications are unavailable,
// and then the periodic stat alone notices changes.
func (s *Store) newWatcher() *fsnotify.Watcher {
	w, err := fsnotify.NewWatcher()
	if err == nil {
		if err = w.Add(filepath.Dir(s.file)); err == nil {
			return w
		}
		_ = w.Close()
	}
	s.log.Warn("API key file: no change notifications, polling only",
		"path", s.file, "interval", s.filePoll, "error", err)
	return nil
}

// watchFile reloads the key file on change until ctx ends: on w's events
// (debounced) and on a periodic stat. It closes w.
func (s *Store) watchFile(ctx context.Context, w *fsnotify.Watcher) {
	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if w != nil {
		defer w.Close()
		events, watchErrs = w.Events, w.Errors
	}
	for ctx.Err() == nil {
		s.watchLoop(ctx, events, watchErrs)
	}
}

// watchLoop is the body of watchFile; a panic is logged and the loop restarts
// after a pause.
func (s *Store) watchLoop(ctx context.Context, events <-chan fsnotify.Event, watchErrs <-chan error) {
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("API key file watcher panicked; restarting", "panic", fmt.Sprint(r))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}()
	tick := time.NewTicker(s.filePoll)
	defer tick.Stop()
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	base := filepath.Base(s.file)
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			// Any entry of the directory may be the file's symlink target.
			if filepath.Base(ev.Name) == base || strings.HasPrefix(filepath.Base(ev.Name), "..") || isSymlink(s.file) {
				debounce.Reset(fileDebounce)
			}
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			s.log.Warn("API key file watcher error", "path", s.file, "error", err)
		case <-debounce.C:
			s.reloadFile()
		case <-tick.C:
			if s.changedOnDisk() {
				s.reloadFile()
			}
		}
	}
}

// isSymlink reports whether path is a symbolic link (then changes show up on
// other names in the directory).
func isSymlink(path string) bool {
	fi, err := os.Lstat(path)
	return err == nil && fi.Mode()&os.ModeSymlink != 0
}

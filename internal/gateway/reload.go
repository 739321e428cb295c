package gateway

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/gwerror"
	"github.com/portcullis/portcullis/internal/middleware"
	"github.com/portcullis/portcullis/internal/request"
	"github.com/portcullis/portcullis/internal/routetable"
	"github.com/portcullis/portcullis/internal/telemetry"
	"github.com/portcullis/portcullis/internal/upstream"
)

// Triggers of a reload, as logged and returned.
const (
	TriggerFile   = "file"   // the file watcher saw CONFIG_FILE change
	TriggerSignal = "SIGHUP" // the process got SIGHUP
	TriggerAdmin  = "admin"  // POST /admin/reload
)

// watchDebounce is how long the watcher waits after the last event in
// CONFIG_FILE's directory before reading it: editors write a temporary file
// and rename it, Kubernetes swaps a ..data symlink, each a burst of events.
const watchDebounce = 100 * time.Millisecond

// watchMaxDelay bounds the debounce in a directory that is never quiet.
const watchMaxDelay = time.Second

// ErrNoConfigFile is returned by Reload when CONFIG_FILE is not set.
var ErrNoConfigFile = errors.New("CONFIG_FILE is not set: there is nothing to reload")

// reloader is the hot-reload state of a Gateway (docs/hot-reload.md). Reloads are
// serialized by mu; requests never take it: they load the snapshot pointer.
type reloader struct {
	mu      sync.Mutex
	active  atomic.Pointer[config.Config] // the configuration in force
	lastSum [sha256.Size]byte
	lastErr string // last refusal, "" after a success
	lastAt  time.Time

	// healthMu orders gauge updates of health probes against the removal
	// of a backend's series by a reload, so a probe that finishes just
	// after its backend left cannot bring the series back.
	healthMu sync.Mutex

	success   prometheus.Gauge       // config_reload_success
	total     *prometheus.CounterVec // config_reloads_total{result}
	lastOKSec prometheus.Gauge       // config_last_reload_success_timestamp_seconds

	log *slog.Logger
}

// ReloadResult says what a successful reload changed, by route prefix.
type ReloadResult struct {
	Routes          int      `json:"routes"`
	Added           []string `json:"added"`
	Removed         []string `json:"removed"`
	Changed         []string `json:"changed"`
	BackendsAdded   []string `json:"backends_added"`
	BackendsRemoved []string `json:"backends_removed"`
}

// ReloadError is a refused configuration: the problems, one line each.
type ReloadError struct{ Problems []string }

func (e *ReloadError) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return e.Problems[0] + " (and more)"
}

func newReloader(cfg *config.Config, log *slog.Logger, reg prometheus.Registerer) (*reloader, error) {
	rl := &reloader{
		log: telemetry.Component(log, "config"),
		success: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_reload_success",
			Help: "1 when the last configuration load (boot or reload) succeeded, 0 when the last reload was refused and the previous configuration kept serving.",
		}),
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "config_reloads_total",
			Help: "Configuration reloads by result (success, failure).",
		}, []string{"result"}),
		lastOKSec: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "config_last_reload_success_timestamp_seconds",
			Help: "Unix time of the last successful configuration load (boot or reload).",
		}),
	}
	for _, c := range []prometheus.Collector{rl.success, rl.total, rl.lastOKSec} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	rl.total.WithLabelValues("success")
	rl.total.WithLabelValues("failure")
	rl.success.Set(1)
	rl.lastAt = time.Now()
	rl.lastOKSec.Set(float64(rl.lastAt.Unix()))
	rl.active.Store(cfg)
	// The content cfg was built from, as config.Load read it; the watcher
	// reloads only when the file differs. Reading the file again here would
	// record an edit made since Load as already applied.
	rl.lastSum = cfg.FileSum()
	return rl, nil
}

// Config returns the configuration in force (the boot one until a reload).
func (g *Gateway) Config() *config.Config { return g.reload.active.Load() }

// Reload reads CONFIG_FILE again and, when it is valid whole, swaps in the
// routes built from it; otherwise the routes in force keep serving and the
// error is a *ReloadError listing every problem. trigger says who asked
// (TriggerFile, TriggerSignal, TriggerAdmin) for the log.
func (g *Gateway) Reload(trigger string) (ReloadResult, error) {
	return g.reloadFile(trigger, false)
}

// reloadFile is Reload; onlyIfChanged skips a file whose content is the
// one last loaded or refused (the watcher sees many events that change
// nothing, and must not log one refusal per event).
func (g *Gateway) reloadFile(trigger string, onlyIfChanged bool) (ReloadResult, error) {
	rl := g.reload
	rl.mu.Lock()
	defer rl.mu.Unlock()
	cur := rl.active.Load()
	if cur.ConfigFile == "" {
		return ReloadResult{}, ErrNoConfigFile
	}
	start := time.Now()
	data, err := config.ReadFile(cur.ConfigFile)
	var next *config.Config
	if err == nil {
		sum := sha256.Sum256(data)
		if onlyIfChanged && sum == rl.lastSum {
			return ReloadResult{}, nil
		}
		rl.lastSum = sum
		next, err = cur.WithFile(data)
	} else {
		if onlyIfChanged && rl.lastErr == err.Error() {
			return ReloadResult{}, nil
		}
		rl.lastSum = [sha256.Size]byte{} // the same content coming back is a change
	}
	var snap *routetable.Snapshot
	if err == nil {
		snap, err = g.buildSnapshot(next, g.snap.Load(), cur)
	}
	if err != nil {
		return ReloadResult{}, rl.refuse(trigger, err)
	}
	res := g.swap(cur, next, snap)
	rl.lastErr = ""
	rl.lastAt = time.Now()
	rl.success.Set(1)
	rl.total.WithLabelValues("success").Inc()
	rl.lastOKSec.Set(float64(rl.lastAt.Unix()))
	for _, w := range next.Warnings {
		rl.log.Warn(w, "trigger", trigger)
	}
	rl.log.Info("configuration reloaded", "trigger", trigger, "routes", res.Routes,
		"added", res.Added, "removed", res.Removed, "changed", res.Changed,
		"backends_added", res.BackendsAdded, "backends_removed", res.BackendsRemoved,
		"duration_ms", float64(time.Since(start).Microseconds())/1000)
	g.warnAuthless(next.Routes)
	return res, nil
}

// maxProblems bounds the problems a refusal reports: a 4 MiB file of bad
// routes has 130,000 of them, 20 MB of text for one log line, one answer
// and /admin/config. The first ones say what is wrong.
const maxProblems = 100

// refuse records a refused configuration; the caller holds mu.
func (rl *reloader) refuse(trigger string, err error) *ReloadError {
	re := &ReloadError{Problems: problems(err)}
	if n := len(re.Problems); n > maxProblems {
		re.Problems = append(re.Problems[:maxProblems:maxProblems], fmt.Sprintf("CONFIG_FILE: %d more problems not shown", n-maxProblems))
	}
	rl.lastErr = strings.Join(re.Problems, "\n")
	rl.lastAt = time.Now()
	rl.success.Set(0)
	rl.total.WithLabelValues("failure").Inc()
	rl.log.Error("configuration refused; the previous one keeps serving", "trigger", trigger, "problems", re.Problems)
	return re
}

// problems flattens errors.Join trees into one line per problem.
func problems(err error) []string {
	var joined interface{ Unwrap() []error }
	if errors.As(err, &joined) && errors.Unwrap(err) == nil {
		var out []string
		for _, e := range joined.Unwrap() {
			out = append(out, problems(e)...)
		}
		return out
	}
	return []string{err.Error()}
}

// routeDeps is what every route's chain shares; the CORS origins come from
// the configuration the routes are built for.
func (g *Gateway) routeDeps(cfg *config.Config) middleware.RouteDeps {
	rd := middleware.RouteDeps{Limits: g.limits, CORSOrigins: cfg.CORSAllowedOrigins, Auth: g.auth, Cache: g.cache, Log: telemetry.Component(g.log, "auth")}
	if g.cfg.EnableCompression {
		rd.CompressMinBytes = g.cfg.CompressionMinBytes
	} else {
		rd.CompressMinBytes = -1
	}
	return rd
}

// buildSnapshot builds the route table of next; routes of prev whose
// configuration is unchanged are taken over with their state, unless a
// setting every chain depends on (the CORS origins) changed.
func (g *Gateway) buildSnapshot(next *config.Config, prev *routetable.Snapshot, prevCfg *config.Config) (*routetable.Snapshot, error) {
	if prevCfg == nil || !slices.Equal(prevCfg.CORSAllowedOrigins, next.CORSAllowedOrigins) {
		prev = nil
	}
	snap, err := routetable.BuildFrom(prev, next.Routes, g.registry, g.engine, g.routeDeps(next).PerRoute)
	if err != nil {
		// Backends the failed build created serve nothing.
		if cur := g.snap.Load(); cur != nil {
			g.registry.Retain(cur.Backends)
		}
		return nil, err
	}
	return snap, nil
}

// swap makes snap the table in force. Requests that already matched a
// route finish on the old table (they hold its *Route); backends no route
// uses any more are dropped from the registry and their health series
// deleted; new ones get a series and are probed from the next round.
func (g *Gateway) swap(cur, next *config.Config, snap *routetable.Snapshot) ReloadResult {
	rl := g.reload
	rl.healthMu.Lock()
	old := g.snap.Load()
	g.snap.Store(snap)
	rl.active.Store(next)
	dropped := g.registry.Retain(snap.Backends)
	res := ReloadResult{Routes: len(snap.Routes), Added: []string{}, Removed: []string{}, Changed: []string{},
		BackendsAdded: []string{}, BackendsRemoved: []string{}}
	for _, b := range dropped {
		g.metrics.BackendHealth.DeleteLabelValues(b.String())
		g.engine.Forget(b)
		if old.Has(b) {
			res.BackendsRemoved = append(res.BackendsRemoved, b.String())
		}
	}
	for _, b := range snap.Backends {
		if !old.Has(b) {
			g.metrics.BackendHealth.WithLabelValues(b.String()).Set(boolFloat(b.Alive()))
			res.BackendsAdded = append(res.BackendsAdded, b.String())
		}
	}
	rl.healthMu.Unlock()
	// The request series of removed prefixes go too; a request still
	// running on one of them counts nowhere (see liveEndpoint).
	g.metrics.PruneEndpoints()

	before := make(map[string]config.Route, len(cur.Routes))
	for _, r := range cur.Routes {
		before[r.Prefix] = r
	}
	for _, r := range next.Routes {
		o, ok := before[r.Prefix]
		switch {
		case !ok:
			res.Added = append(res.Added, r.Prefix)
		case !reflect.DeepEqual(o, r):
			res.Changed = append(res.Changed, r.Prefix)
		}
		delete(before, r.Prefix)
	}
	for p := range before {
		res.Removed = append(res.Removed, p)
	}
	slices.Sort(res.Removed)
	return res
}

// liveEndpoint is the request metrics' endpoint gate
// (telemetry.Metrics.GateEndpoints): fixed words such as "unmatched" and
// the gateway's own paths always have series, a route prefix only while the
// table in force has that route. Without it every prefix a CONFIG_FILE ever
// held would keep its series, and a request finishing on a removed route
// would bring them back. It runs only when a label is first counted.
func (g *Gateway) liveEndpoint(label string) bool {
	if _, own := g.own[label]; own || g.opsPaths[label] || !strings.HasPrefix(label, "/") {
		return true
	}
	e, ok := g.snap.Load().Table.Match(label)
	return ok && e.Value.Config.Prefix == label
}

// onProbe keeps backend_health_status in step with the checker, for the
// backends of the table in force only.
func (g *Gateway) onProbe(b *upstream.Backend, alive bool) {
	g.reload.healthMu.Lock()
	defer g.reload.healthMu.Unlock()
	if g.snap.Load().Has(b) {
		g.metrics.BackendHealth.WithLabelValues(b.String()).Set(boolFloat(alive))
	}
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// watchConfig reloads when CONFIG_FILE changes, until ctx ends. It watches
// the file's directory (and the directory its symlink resolves to), not
// the file: editors replace the file by renaming over it and Kubernetes
// swaps a ..data symlink, and a watch on the old inode would go quiet.
// Events are debounced and the content compared, so only a real change
// reloads.
func (g *Gateway) watchConfig(ctx context.Context) {
	path := g.cfg.ConfigFile
	log := g.reload.log
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
			if ev.Op == fsnotify.Chmod {
				continue
			}
			// Debounce, but a directory that never goes quiet for
			// watchDebounce still gets its reload after watchMaxDelay.
			now := time.Now()
			if first.IsZero() {
				first = now
			}
			timer.Reset(max(min(watchDebounce, first.Add(watchMaxDelay).Sub(now)), 0))
		case err, ok := <-w.Errors:
			if !ok {
				return
			}
			log.Warn("CONFIG_FILE watch error", "error", err.Error())
		case <-timer.C:
			first = time.Time{}
			follow()
			g.safeReload(TriggerFile)
		}
	}
}

// safeReload is a watcher's reload: a panic is logged, never fatal.
func (g *Gateway) safeReload(trigger string) {
	defer func() {
		if v := recover(); v != nil {
			g.reload.log.Error("reload panicked", "trigger", trigger, "panic", v)
		}
	}()
	_, _ = g.reloadFile(trigger, true)
}

// ReloadOnSignal reloads each time sig delivers, until ctx ends (SIGHUP,
// wired by main). Without CONFIG_FILE the signal is logged and ignored.
func (g *Gateway) ReloadOnSignal(ctx context.Context, sig <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-sig:
			if _, err := g.Reload(TriggerSignal); errors.Is(err, ErrNoConfigFile) {
				g.reload.log.Warn("SIGHUP ignored: " + err.Error())
			}
		}
	}
}

// reloadRoutes are the admin endpoints of hot reload, behind the admin
// API's own guard (ADMIN_TOKEN).
func (g *Gateway) reloadRoutes() map[string]http.Handler {
	return map[string]http.Handler{
		"/admin/reload": g.admin.Guard("POST", http.HandlerFunc(g.serveReload)),
		"/admin/config": g.admin.Guard("GET, HEAD", http.HandlerFunc(g.serveConfig)),
	}
}

// serveReload is POST /admin/reload: 200 with what changed, 400 with every
// problem of a refused file, 409 without CONFIG_FILE.
func (g *Gateway) serveReload(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<10))
	in := request.From(r.Context())
	id, ip := "", ""
	if in != nil {
		id, ip = in.ID, in.ClientIPText
	}
	g.reload.log.Info("reload requested", "trigger", TriggerAdmin, "client_ip", ip, "request_id", id)
	res, err := g.Reload(TriggerAdmin)
	var re *ReloadError
	switch {
	case errors.Is(err, ErrNoConfigFile):
		gwerror.Write(w, r, http.StatusConflict, err.Error())
	case errors.As(err, &re):
		writeJSON(w, http.StatusBadRequest, map[string]any{
			"error": "configuration refused; the previous one keeps serving", "problems": re.Problems, "request_id": id,
		})
	case err != nil:
		gwerror.Write(w, r, http.StatusInternalServerError, "reload failed")
	default:
		writeJSON(w, http.StatusOK, map[string]any{"status": "reloaded", "result": res})
	}
}

// configView is GET /admin/config's answer.
type configView struct {
	config.View
	Reload reloadView `json:"reload"`
}

type reloadView struct {
	Success bool      `json:"success"`
	LastAt  time.Time `json:"last_at"`
	Error   string    `json:"error,omitempty"`
}

// serveConfig is GET /admin/config: the configuration in force, secrets
// redacted, and how the last reload went.
func (g *Gateway) serveConfig(w http.ResponseWriter, _ *http.Request) {
	rl := g.reload
	rl.mu.Lock()
	rv := reloadView{Success: rl.lastErr == "", LastAt: rl.lastAt.UTC(), Error: rl.lastErr}
	cfg := rl.active.Load()
	rl.mu.Unlock()
	writeJSON(w, http.StatusOK, configView{View: cfg.View(), Reload: rv})
}

// warnAuthless warns when routes require auth that nothing can grant.
func (g *Gateway) warnAuthless(routes []config.Route) {
	if g.canAuth {
		return
	}
	for _, r := range routes {
		if r.RequireAuth {
			telemetry.Component(g.log, "config").Warn("routes require auth but no JWT_SECRET, JWT_JWKS_URL or API key source is set: every request to them gets 401")
			return
		}
	}
}

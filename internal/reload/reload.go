// Package reload holds the configuration and the route table in force, and
// changes them: CONFIG_FILE is read again on a file change, SIGHUP or POST
// /admin/reload, and a file that is valid whole swaps in a new route table
// while requests keep flowing (docs/hot-reload.md). A refused file changes
// nothing.
package reload

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/config"
	"github.com/portcullis/portcullis/internal/gwerror"
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

// ErrNoConfigFile is returned by Reload when CONFIG_FILE is not set.
var ErrNoConfigFile = errors.New("CONFIG_FILE is not set: there is nothing to reload")

// Options is what a Manager changes and how it builds a route table.
type Options struct {
	Config   *config.Config     // the boot configuration
	Routes   *routetable.Holder // the table in force; Build's first table must be in it
	Registry *upstream.Registry // backends; those no route uses any more are dropped
	// Build makes the table of next, taking over the routes of prev (nil
	// for none) whose configuration did not change.
	Build func(next *config.Config, prev *routetable.Snapshot) (*routetable.Snapshot, error)
	// Forget drops what the proxy keeps for a backend that left (idle
	// connections).
	Forget  func(*upstream.Backend)
	Metrics *telemetry.Metrics
	// Applied runs after each successful reload, with the new configuration.
	Applied func(next *config.Config)
	Log     *slog.Logger
}

// Manager is the hot-reload state of a gateway. Reloads are serialized by
// mu; requests never take it: they load the snapshot pointer.
type Manager struct {
	o       Options
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

// Result says what a successful reload changed, by route prefix.
type Result struct {
	Routes          int      `json:"routes"`
	Added           []string `json:"added"`
	Removed         []string `json:"removed"`
	Changed         []string `json:"changed"`
	BackendsAdded   []string `json:"backends_added"`
	BackendsRemoved []string `json:"backends_removed"`
}

// Error is a refused configuration: the problems, one line each.
type Error struct{ Problems []string }

func (e *Error) Error() string {
	if len(e.Problems) == 1 {
		return e.Problems[0]
	}
	return e.Problems[0] + " (and more)"
}

// New returns the Manager of o.Config, whose table is in o.Routes, and
// registers the reload metrics.
func New(o Options) (*Manager, error) {
	m := &Manager{
		o:   o,
		log: telemetry.Component(o.Log, "config"),
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
	for _, c := range []prometheus.Collector{m.success, m.total, m.lastOKSec} {
		if err := o.Metrics.Registry.Register(c); err != nil {
			return nil, err
		}
	}
	m.total.WithLabelValues("success")
	m.total.WithLabelValues("failure")
	m.success.Set(1)
	m.lastAt = time.Now()
	m.lastOKSec.Set(float64(m.lastAt.Unix()))
	m.active.Store(o.Config)
	// The content the boot configuration was built from, as config.Load
	// read it; the watcher reloads only when the file differs. Reading the
	// file again here would record an edit made since Load as already
	// applied.
	m.lastSum = o.Config.FileSum()
	return m, nil
}

// Config returns the configuration in force (the boot one until a reload).
func (m *Manager) Config() *config.Config { return m.active.Load() }

// Reload reads CONFIG_FILE again and, when it is valid whole, swaps in the
// routes built from it; otherwise the routes in force keep serving and the
// error is an *Error listing every problem. trigger says who asked
// (TriggerFile, TriggerSignal, TriggerAdmin) for the log.
func (m *Manager) Reload(trigger string) (Result, error) {
	return m.reload(trigger, false)
}

// reload is Reload; onlyIfChanged skips a file whose content is the one
// last loaded or refused (the watcher sees many events that change
// nothing, and must not log one refusal per event).
func (m *Manager) reload(trigger string, onlyIfChanged bool) (Result, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.active.Load()
	if cur.ConfigFile == "" {
		return Result{}, ErrNoConfigFile
	}
	start := time.Now()
	data, err := config.ReadFile(cur.ConfigFile)
	var next *config.Config
	if err == nil {
		sum := sha256.Sum256(data)
		if onlyIfChanged && sum == m.lastSum {
			return Result{}, nil
		}
		m.lastSum = sum
		next, err = cur.WithFile(data)
	} else {
		if onlyIfChanged && m.lastErr == err.Error() {
			return Result{}, nil
		}
		m.lastSum = [sha256.Size]byte{} // the same content coming back is a change
	}
	var snap *routetable.Snapshot
	if err == nil {
		snap, err = m.build(next, cur)
	}
	if err != nil {
		return Result{}, m.refuse(trigger, err)
	}
	res := m.swap(cur, next, snap)
	m.lastErr = ""
	m.lastAt = time.Now()
	m.success.Set(1)
	m.total.WithLabelValues("success").Inc()
	m.lastOKSec.Set(float64(m.lastAt.Unix()))
	for _, w := range next.Warnings {
		m.log.Warn(w, "trigger", trigger)
	}
	m.log.Info("configuration reloaded", "trigger", trigger, "routes", res.Routes,
		"added", res.Added, "removed", res.Removed, "changed", res.Changed,
		"backends_added", res.BackendsAdded, "backends_removed", res.BackendsRemoved,
		"duration_ms", float64(time.Since(start).Microseconds())/1000)
	if m.o.Applied != nil {
		m.o.Applied(next)
	}
	return res, nil
}

// build makes the route table of next. Routes whose configuration is
// unchanged are taken over with their state, unless a setting every chain
// depends on (the CORS origins) changed.
func (m *Manager) build(next, cur *config.Config) (*routetable.Snapshot, error) {
	prev := m.o.Routes.Load()
	if !slices.Equal(cur.CORSAllowedOrigins, next.CORSAllowedOrigins) {
		prev = nil
	}
	snap, err := m.o.Build(next, prev)
	if err != nil {
		// Backends the failed build created serve nothing.
		m.o.Registry.Retain(m.o.Routes.Load().Backends)
		return nil, err
	}
	return snap, nil
}

// MaxProblems bounds the problems a refusal reports: a 4 MiB file of bad
// routes has 130,000 of them, 20 MB of text for one log line, one answer
// and /admin/config. The first ones say what is wrong.
const MaxProblems = 100

// refuse records a refused configuration; the caller holds mu.
func (m *Manager) refuse(trigger string, err error) *Error {
	re := &Error{Problems: problems(err)}
	if n := len(re.Problems); n > MaxProblems {
		re.Problems = append(re.Problems[:MaxProblems:MaxProblems], fmt.Sprintf("CONFIG_FILE: %d more problems not shown", n-MaxProblems))
	}
	m.lastErr = strings.Join(re.Problems, "\n")
	m.lastAt = time.Now()
	m.success.Set(0)
	m.total.WithLabelValues("failure").Inc()
	m.log.Error("configuration refused; the previous one keeps serving", "trigger", trigger, "problems", re.Problems)
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

// swap makes snap the table in force. Requests that already matched a
// route finish on the old table (they hold its *Route); backends no route
// uses any more are dropped from the registry and their health series
// deleted; new ones get a series and are probed from the next round.
func (m *Manager) swap(cur, next *config.Config, snap *routetable.Snapshot) Result {
	metrics := m.o.Metrics
	m.healthMu.Lock()
	old := m.o.Routes.Load()
	m.o.Routes.Store(snap)
	m.active.Store(next)
	dropped := m.o.Registry.Retain(snap.Backends)
	res := Result{Routes: len(snap.Routes), Added: []string{}, Removed: []string{}, Changed: []string{},
		BackendsAdded: []string{}, BackendsRemoved: []string{}}
	for _, b := range dropped {
		metrics.BackendHealth.DeleteLabelValues(b.String())
		m.o.Forget(b)
		if old.Has(b) {
			res.BackendsRemoved = append(res.BackendsRemoved, b.String())
		}
	}
	for _, b := range snap.Backends {
		if !old.Has(b) {
			metrics.BackendHealth.WithLabelValues(b.String()).Set(boolFloat(b.Alive()))
			res.BackendsAdded = append(res.BackendsAdded, b.String())
		}
	}
	m.healthMu.Unlock()
	closeReplacedClients(old, snap)
	// The request series of removed prefixes go too; a request still
	// running on one of them counts nowhere (telemetry's endpoint gate).
	metrics.PruneEndpoints()

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

// closeReplacedClients closes the idle connections of the route clients
// (upstream_tls, upstream_http2, h2c targets) that only routes of old had:
// routes taken over keep theirs, and the others would otherwise hold
// their backends' connections until IDLE_CONN_TIMEOUT. Requests still
// running on old finish; only idle connections close.
func closeReplacedClients(old, next *routetable.Snapshot) {
	kept := make(map[*routetable.Route]bool, len(next.Routes))
	for _, r := range next.Routes {
		kept[r] = true
	}
	for _, r := range old.Routes {
		if c, ok := r.Proxy.Client.(interface{ CloseIdleConnections() }); ok && !kept[r] {
			c.CloseIdleConnections()
		}
	}
}

// OnProbe keeps backend_health_status in step with the health checker, for
// the backends of the table in force only.
func (m *Manager) OnProbe(b *upstream.Backend, alive bool) {
	m.healthMu.Lock()
	defer m.healthMu.Unlock()
	if m.o.Routes.Load().Has(b) {
		m.o.Metrics.BackendHealth.WithLabelValues(b.String()).Set(boolFloat(alive))
	}
}

func boolFloat(v bool) float64 {
	if v {
		return 1
	}
	return 0
}

// ServeReload is POST /admin/reload: 200 with what changed, 400 with every
// problem of a refused file, 409 without CONFIG_FILE. It is served behind
// the admin API's guard.
func (m *Manager) ServeReload(w http.ResponseWriter, r *http.Request) {
	_, _ = io.Copy(io.Discard, io.LimitReader(r.Body, 1<<10))
	in := request.From(r.Context())
	id, ip := "", ""
	if in != nil {
		id, ip = in.ID, in.ClientIPText
	}
	m.log.Info("reload requested", "trigger", TriggerAdmin, "client_ip", ip, "request_id", id)
	res, err := m.Reload(TriggerAdmin)
	var re *Error
	switch {
	case errors.Is(err, ErrNoConfigFile):
		gwerror.Write(w, r, http.StatusConflict, err.Error())
	case errors.As(err, &re):
		gwerror.JSON(w, http.StatusBadRequest, map[string]any{
			"error": "configuration refused; the previous one keeps serving", "problems": re.Problems, "request_id": id,
		})
	case err != nil:
		gwerror.Write(w, r, http.StatusInternalServerError, "reload failed")
	default:
		gwerror.JSON(w, http.StatusOK, map[string]any{"status": "reloaded", "result": res})
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

// ServeConfig is GET /admin/config: the configuration in force, secrets
// redacted, and how the last reload went. It is served behind the admin
// API's guard.
func (m *Manager) ServeConfig(w http.ResponseWriter, _ *http.Request) {
	m.mu.Lock()
	rv := reloadView{Success: m.lastErr == "", LastAt: m.lastAt.UTC(), Error: m.lastErr}
	cfg := m.active.Load()
	m.mu.Unlock()
	gwerror.JSON(w, http.StatusOK, configView{View: cfg.View(), Reload: rv})
}

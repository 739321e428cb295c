package apikey

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/telemetry"
)

// registerMetrics creates the apikey_* collectors and registers them on reg
// (nil: kept unregistered). A collector already registered by an earlier
// Store (a config reload) is reused.
func (s *Store) registerMetrics(reg prometheus.Registerer) error {
	s.storeErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apikey_store_errors_total",
		Help: "Remote API key lookups that failed or timed out, by store (redis, postgres); each one failed closed.",
	}, []string{"store"})
	s.shed = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apikey_lookups_shed_total",
		Help: "Remote API key lookups refused because the concurrency limit stayed full for the whole store timeout.",
	})
	s.stale = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apikey_stale_answers_total",
		Help: "API keys accepted from an expired cache entry (up to 5 min past it) because the remote stores could not answer.",
	})
	s.unverified = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "apikey_unverified_answers_total",
		Help: "API keys listed in API_KEYS, API_KEY_HASHES, API_KEYS_FILE or Redis accepted without their revocation check because PostgreSQL could not answer (never for a key seen revoked).",
	})
	s.fileReload = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "apikey_file_reloads_total",
		Help: "Reloads of API_KEYS_FILE after a change, by result (ok, error; on error the previous keys stay).",
	}, []string{"result"})
	if reg == nil {
		return nil
	}
	var err error
	if s.storeErrors, err = telemetry.Register(reg, s.storeErrors); err != nil {
		return fmt.Errorf("registering API key metrics: %w", err)
	}
	if s.shed, err = telemetry.Register(reg, s.shed); err != nil {
		return fmt.Errorf("registering API key metrics: %w", err)
	}
	if s.stale, err = telemetry.Register(reg, s.stale); err != nil {
		return fmt.Errorf("registering API key metrics: %w", err)
	}
	if s.unverified, err = telemetry.Register(reg, s.unverified); err != nil {
		return fmt.Errorf("registering API key metrics: %w", err)
	}
	if s.fileReload, err = telemetry.Register(reg, s.fileReload); err != nil {
		return fmt.Errorf("registering API key metrics: %w", err)
	}
	for _, l := range []string{StoreRedis, StorePostgres} {
		s.storeErrors.WithLabelValues(l)
	}
	for _, l := range []string{"ok", "error"} {
		s.fileReload.WithLabelValues(l)
	}
	return nil
}

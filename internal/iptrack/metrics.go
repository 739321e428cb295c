package iptrack

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/telemetry"
)

// RegisterMetrics registers tracked_ips{table} (entries held) and
// tracked_ips_evicted_total{table} (entries dropped at capacity) on reg,
// reading size and evictions at scrape time. A nil reg registers nothing.
func RegisterMetrics(reg prometheus.Registerer, table string, size func() int, evictions func() uint64) error {
	if reg == nil {
		return nil
	}
	labels := prometheus.Labels{"table": table}
	return Register(reg,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "tracked_ips",
			Help:        "Per-client state entries held (capped by MAX_TRACKED_IPS), by table.",
			ConstLabels: labels,
		}, func() float64 { return float64(size()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name:        "tracked_ips_evicted_total",
			Help:        "Per-client state entries dropped at capacity, least recently seen first, by table.",
			ConstLabels: labels,
		}, func() float64 { return float64(evictions()) }),
	)
}

// Register registers each collector on reg (nil: none). A collector already
// registered under the same description is left in place, so a chain built
// twice on one registry does not fail; any other conflict is returned.
func Register(reg prometheus.Registerer, cs ...prometheus.Collector) error {
	if reg == nil {
		return nil
	}
	var errs []error
	for _, c := range cs {
		if _, err := telemetry.Register(reg, c); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

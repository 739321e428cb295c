package acme

import (
	"context"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portcullis/portcullis/internal/overview"
	"github.com/portcullis/portcullis/internal/telemetry"
)

// metrics are the acme_* series. Two Managers on one registry share the
// counters; the expiry gauge is the first one's.
type metrics struct {
	obtained, renewed, failures prometheus.Counter
}

func newMetrics(reg prometheus.Registerer, m *Manager) (*metrics, error) {
	var (
		ms  metrics
		err error
	)
	if ms.obtained, err = telemetry.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "acme_certificates_obtained_total",
		Help: "New certificates this replica obtained from the ACME CA (renewals not included).",
	})); err != nil {
		return nil, err
	}
	if ms.renewed, err = telemetry.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "acme_certificates_renewed_total",
		Help: "Certificates this replica renewed with the ACME CA.",
	})); err != nil {
		return nil, err
	}
	if ms.failures, err = telemetry.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{
		Name: "acme_certificate_failures_total",
		Help: "Failed attempts to obtain or renew a certificate (each retry counts).",
	})); err != nil {
		return nil, err
	}
	if _, err = telemetry.Register(reg, &expiryCollector{m: m}); err != nil {
		return nil, err
	}
	return &ms, nil
}

// expiryDesc: an alert on it catches renewals that keep failing, whatever
// the reason, well before clients see an expired certificate.
var expiryDesc = prometheus.NewDesc(
	"acme_certificate_expiry_timestamp_seconds",
	"When the certificate served for each ACME domain expires (Unix time); absent until there is one.",
	[]string{"domain"}, nil,
)

// expiryCollector reads the served certificates at scrape time, so the
// gauge follows renewals and certificates loaded from another replica.
type expiryCollector struct{ m *Manager }

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- expiryDesc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for _, d := range c.m.domains {
		if na := c.m.notAfter(d); !na.IsZero() {
			ch <- prometheus.MustNewConstMetric(expiryDesc, prometheus.GaugeValue, float64(na.Unix()), d)
		}
	}
}

// Certificates lists the ACME_DOMAINS that have a certificate in the cache
// (loaded from storage or obtained), with when the one served expires,
// sorted by domain; a domain still waiting for its first certificate is
// left out. It reads what the expiry gauge reads.
func (m *Manager) Certificates() []overview.Certificate {
	var out []overview.Certificate
	for _, d := range m.domains {
		if na := m.notAfter(d); !na.IsZero() {
			out = append(out, overview.Certificate{Name: d, NotAfter: na})
		}
	}
	slices.SortFunc(out, func(a, b overview.Certificate) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// notAfter is the latest expiry among the cached certificates for name;
// zero when there is none.
func (m *Manager) notAfter(name string) time.Time {
	var latest time.Time
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && c.Leaf.NotAfter.After(latest) {
			latest = c.Leaf.NotAfter
		}
	}
	return latest
}

// onEvent counts and logs certmagic's outcomes under messages of our own,
// which docs and alerts can rely on whatever certmagic's wording.
func (m *Manager) onEvent(_ context.Context, event string, data map[string]any) error {
	domain, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		if renewal {
			m.metrics.renewed.Inc()
			m.log.Info("certificate renewed", "domain", domain, "issuer", data["issuer"])
		} else {
			m.metrics.obtained.Inc()
			m.log.Info("certificate obtained", "domain", domain, "issuer", data["issuer"])
		}
	case "cert_failed":
		m.metrics.failures.Inc()
		err, _ := data["error"].(error)
		m.log.Warn("certificate attempt failed", "domain", domain, "renewal", renewal, "error", err)
	}
	return nil
}

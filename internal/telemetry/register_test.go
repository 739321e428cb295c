package telemetry

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

func TestRegisterReusesTheRegisteredCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "things_total", Help: "Things."}
	first, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil {
		t.Fatal(err)
	}
	second, err := Register(reg, prometheus.NewCounter(opts))
	if err != nil || second != first {
		t.Fatalf("second registration: %v, same collector %v", err, second == first)
	}
	second.Inc()
	if _, err := Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "things_total", Help: "Other help."})); err == nil {
		t.Fatal("a conflicting description was accepted")
	}
	if c, err := Register[prometheus.Counter](nil, first); err != nil || c != first {
		t.Fatal("a nil registry must register nothing and return c")
	}
}

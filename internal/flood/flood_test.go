package flood

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestConstructorValidates(t *testing.T) {
	tests := []struct {
		name string
		c    Config
	}{
		{name: "zero threshold", c: Config{BlockDuration: time.Minute}},
		{name: "zero block", c: Config{Threshold: 1}},
		{name: "negative block", c: Config{Threshold: 1, BlockDuration: -time.Second}},
		{name: "negative cap", c: Config{Threshold: 1, BlockDuration: time.Second, MaxBlocks: -1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := New(tc.c); err == nil {
				t.Fatal("accepted")
			}
		})
	}
	// Two guards on one registry (a rebuilt chain) share the counter.
	reg := prometheus.NewRegistry()
	g1, err1 := New(Config{Threshold: 1, BlockDuration: time.Second, Registerer: reg})
	g2, err2 := New(Config{Threshold: 1, BlockDuration: time.Second, Registerer: reg})
	if err1 != nil || err2 != nil || g1.blockedTotal != g2.blockedTotal {
		t.Fatalf("second registration: %v %v", err1, err2)
	}
}

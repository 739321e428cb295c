package telemetry

import (
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

// endpointLabels gathers the registry and returns, per request metric, the
// endpoint label values that have a series, sorted.
func endpointLabels(t *testing.T, m *Metrics) map[string][]string {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]string{}
	for _, mf := range mfs {
		name := mf.GetName()
		if name != "http_requests_total" && name != "http_request_duration_seconds" {
			continue
		}
		for _, s := range mf.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "endpoint" && !slices.Contains(out[name], l.GetValue()) {
					out[name] = append(out[name], l.GetValue())
				}
			}
		}
		slices.Sort(out[name])
	}
	return out
}

// gate is a route table stand-in: the labels in it are live.
type gate struct {
	mu   sync.Mutex
	live map[string]bool
}

func (g *gate) set(labels ...string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.live = map[string]bool{}
	for _, l := range labels {
		g.live[l] = true
	}
}

func (g *gate) admits(l string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.live[l]
}

// TestPrunedEndpointsStayGone pins that PruneEndpoints deletes the series
// of the labels the gate dropped, keeps the others, and that a request
// that was running when its route went (one that fetched its
// EndpointMetrics before, or one that asks for it after) does not bring
// the series back; a label admitted again counts afresh.
func TestPrunedEndpointsStayGone(t *testing.T) {
	m := NewMetrics("test")
	g := &gate{}
	g.set("/keep", "/gone", "unmatched")
	m.GateEndpoints(g.admits)
	for _, l := range []string{"/keep", "/gone", "unmatched"} {
		m.Endpoint(l).Observe("GET", 200, 0.01)
	}
	held := m.Endpoint("/gone") // a request that looked its metrics up before the reload

	g.set("/keep", "unmatched")
	if n := m.PruneEndpoints(); n != 1 {
		t.Errorf("pruned %d labels, want 1", n)
	}
	want := []string{"/keep", "unmatched"}
	check := func(when string) {
		t.Helper()
		got := endpointLabels(t, m)
		for _, name := range []string{"http_requests_total", "http_request_duration_seconds"} {
			if !slices.Equal(got[name], want) {
				t.Errorf("%s: %s has endpoints %q, want %q", when, name, got[name], want)
			}
		}
	}
	check("after the prune")

	// Late requests on the removed route: new status, new method, and a
	// fresh lookup.
	held.Observe("GET", 503, 0.5)
	held.Observe("POST", 200, 0.5)
	m.Endpoint("/gone").Observe("GET", 504, 0.5)
	check("after late requests on the removed route")
	if _, ok := m.endpoints.Load("/gone"); ok {
		t.Error("the removed label is cached again")
	}

	// The prefix comes back in a later reload: it is counted from zero.
	g.set("/keep", "/gone", "unmatched")
	m.Endpoint("/gone").Observe("GET", 200, 0.01)
	want = []string{"/gone", "/keep", "unmatched"}
	check("after the route came back")
}

// TestPruneRacesWithRequests runs requests on a route while reloads drop
// and restore it; once it is dropped for good and the requests are done,
// no series of it is left, whatever the interleaving. Run with -race.
func TestPruneRacesWithRequests(t *testing.T) {
	m := NewMetrics("test")
	g := &gate{}
	g.set("/r", "/s")
	m.GateEndpoints(g.admits)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; !stop.Load(); i++ {
				m.Endpoint("/r").Observe([]string{"GET", "POST", "PUT"}[i%3], 200+(w*7+i)%300, 0.001)
				m.Endpoint("/s").Observe("GET", 200, 0.001)
			}
		})
	}
	for i := range 200 {
		if i%2 == 0 {
			g.set("/s")
		} else {
			g.set("/r", "/s")
		}
		m.PruneEndpoints()
	}
	g.set("/s")
	m.PruneEndpoints()
	stop.Store(true)
	wg.Wait()
	got := endpointLabels(t, m)
	for name, labels := range got {
		if !slices.Equal(labels, []string{"/s"}) {
			t.Errorf("%s has endpoints %q after /r was removed", name, labels)
		}
	}
}

// TestUngatedMetricsAdmitEveryLabel pins the default: without a gate every
// label counts and PruneEndpoints removes nothing.
func TestUngatedMetricsAdmitEveryLabel(t *testing.T) {
	m := NewMetrics("test")
	for i := range 3 {
		m.Endpoint(fmt.Sprintf("/e%d", i)).Observe("GET", 200, 0.01)
	}
	if n := m.PruneEndpoints(); n != 0 {
		t.Errorf("pruned %d labels without a gate", n)
	}
	if got := endpointLabels(t, m)["http_requests_total"]; len(got) != 3 {
		t.Errorf("endpoints %q", got)
	}
}

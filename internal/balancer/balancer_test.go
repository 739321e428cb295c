package balancer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/upstream"
)

var algos = []string{AlgoRoundRobin, AlgoLeastConn, AlgoIPHash, AlgoWeighted}

// newPool returns a pool of backends http://10.0.0.<i>:8080 with weights.
func newPool(t testing.TB, weights ...int) (*upstream.Pool, []*upstream.Backend) {
	t.Helper()
	pool := &upstream.Pool{}
	backends := make([]*upstream.Backend, len(weights))
	for i, w := range weights {
		u, err := url.Parse(fmt.Sprintf("http://10.0.0.%d:8080", i+1))
		if err != nil {
			t.Fatal(err)
		}
		backends[i] = upstream.NewBackend(u, upstream.BreakerSettings{MaxFailures: 1, OpenTimeout: time.Hour})
		pool.Members = append(pool.Members, upstream.Member{Backend: backends[i], Weight: w})
	}
	return pool, backends
}

func mustNew(t testing.TB, algo string, pool *upstream.Pool) Selector {
	t.Helper()
	s, err := New(algo, pool)
	if err != nil {
		t.Fatalf("New(%q): %v", algo, err)
	}
	return s
}

// openBreaker fails one attempt, which opens a MaxFailures: 1 breaker.
func openBreaker(t *testing.T, b *upstream.Backend) {
	t.Helper()
	done, err := b.Acquire()
	if err != nil {
		t.Fatalf("Acquire: %v", err)
	}
	done(errors.New("x"))
	if b.Available() {
		t.Fatalf("%s still available after a failure", b)
	}
}

func ipHash(i int) uint64 {
	var ip [4]byte
	binary.BigEndian.PutUint32(ip[:], 0x0a000000+uint32(i))
	return HashKey(ip[:])
}

func TestNewRejects(t *testing.T) {
	good, _ := newPool(t, 1, 2)
	tests := []struct {
		name string
		algo string
		pool *upstream.Pool
	}{
		{name: "unknown algorithm", algo: "random", pool: good},
		{name: "empty algorithm", algo: "", pool: good},
		{name: "nil pool", algo: AlgoRoundRobin, pool: nil},
		{name: "empty pool", algo: AlgoRoundRobin, pool: &upstream.Pool{}},
		{name: "zero weight", algo: AlgoWeighted, pool: &upstream.Pool{Members: []upstream.Member{{Backend: good.Members[0].Backend, Weight: 0}}}},
		{name: "negative weight", algo: AlgoLeastConn, pool: &upstream.Pool{Members: []upstream.Member{{Backend: good.Members[0].Backend, Weight: -1}}}},
		{name: "huge weight", algo: AlgoIPHash, pool: &upstream.Pool{Members: []upstream.Member{{Backend: good.Members[0].Backend, Weight: MaxWeight + 1}}}},
		{name: "nil backend", algo: AlgoRoundRobin, pool: &upstream.Pool{Members: []upstream.Member{{Weight: 1}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if s, err := New(tt.algo, tt.pool); err == nil {
				t.Fatalf("New(%q) = %T, want an error", tt.algo, s)
			}
		})
	}
	for _, algo := range algos {
		if !Known(algo) {
			t.Errorf("Known(%q) = false", algo)
		}
	}
}

func TestDistribution(t *testing.T) {
	const n = 60000
	tests := []struct {
		name    string
		algo    string
		weights []int
		dead    []int // indexes set dead before selecting
		want    []float64
		tol     float64 // absolute tolerance on each share
	}{
		{name: "round-robin equal", algo: AlgoRoundRobin, weights: []int{1, 1, 1}, want: []float64{1. / 3, 1. / 3, 1. / 3}, tol: 0.001},
		{name: "round-robin 1:2:3", algo: AlgoRoundRobin, weights: []int{1, 2, 3}, want: []float64{1. / 6, 2. / 6, 3. / 6}, tol: 0.001},
		{name: "round-robin 10:20:30 reduced", algo: AlgoRoundRobin, weights: []int{10, 20, 30}, want: []float64{1. / 6, 2. / 6, 3. / 6}, tol: 0.001},
		{name: "round-robin one dead spreads its share", algo: AlgoRoundRobin, weights: []int{1, 1, 1}, dead: []int{1}, want: []float64{0.5, 0, 0.5}, tol: 0.01},
		{name: "round-robin 1:2:3 middle dead", algo: AlgoRoundRobin, weights: []int{1, 2, 3}, dead: []int{1}, want: []float64{0.25, 0, 0.75}, tol: 0.02},
		{name: "weighted 1:2:3", algo: AlgoWeighted, weights: []int{1, 2, 3}, want: []float64{1. / 6, 2. / 6, 3. / 6}, tol: 0.02},
		{name: "weighted 1:2:3 one dead", algo: AlgoWeighted, weights: []int{1, 2, 3}, dead: []int{2}, want: []float64{1. / 3, 2. / 3, 0}, tol: 0.02},
		{name: "ip-hash 1:2:3", algo: AlgoIPHash, weights: []int{1, 2, 3}, want: []float64{1. / 6, 2. / 6, 3. / 6}, tol: 0.02},
		{name: "ip-hash equal", algo: AlgoIPHash, weights: []int{1, 1, 1, 1}, want: []float64{0.25, 0.25, 0.25, 0.25}, tol: 0.02},
		{name: "ip-hash 1:2:3 one dead", algo: AlgoIPHash, weights: []int{1, 2, 3}, dead: []int{0}, want: []float64{0, 2. / 5, 3. / 5}, tol: 0.02},
		// Idle least-conn (nothing in flight) is an all-way tie broken by weight.
		{name: "least-conn idle 1:2:3", algo: AlgoLeastConn, weights: []int{1, 2, 3}, want: []float64{1. / 6, 2. / 6, 3. / 6}, tol: 0.02},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, backends := newPool(t, tt.weights...)
			for _, i := range tt.dead {
				backends[i].SetAlive(false)
			}
			s := mustNew(t, tt.algo, pool)
			counts := map[*upstream.Backend]int{}
			for i := range n {
				b := s.Select(ipHash(i), nil)
				if b == nil {
					t.Fatal("Select returned nil with live backends")
				}
				counts[b]++
			}
			for i, b := range backends {
				got := float64(counts[b]) / n
				if math.Abs(got-tt.want[i]) > tt.tol {
					t.Errorf("backend %d (weight %d): share %.4f, want %.4f±%.3f", i, tt.weights[i], got, tt.want[i], tt.tol)
				}
			}
		})
	}
}

func TestRoundRobinSmoothOrder(t *testing.T) {
	pool, b := newPool(t, 5, 1, 1)
	s := mustNew(t, AlgoRoundRobin, pool)
	// nginx's documented sequence for weights 5:1:1.
	want := []*upstream.Backend{b[0], b[0], b[1], b[0], b[2], b[0], b[0]}
	for round := range 3 {
		for i, w := range want {
			if got := s.Select(0, nil); got != w {
				t.Fatalf("round %d pick %d = %s, want %s", round, i, got, w)
			}
		}
	}
}

func TestRoundRobinScheduleCapped(t *testing.T) {
	pool, b := newPool(t, MaxWeight, MaxWeight-1, 1)
	rr := mustNew(t, AlgoRoundRobin, pool).(*RoundRobin)
	if l := len(rr.schedule); l > maxSchedule+len(b) {
		t.Fatalf("schedule length %d, want at most %d", l, maxSchedule+len(b))
	}
	counts := map[*upstream.Backend]int{}
	for range 2 * len(rr.schedule) {
		counts[rr.Select(0, nil)]++
	}
	if counts[b[2]] == 0 {
		t.Fatal("weight-1 member never picked after scaling")
	}
}

func TestLeastConnPicksLowestRatio(t *testing.T) {
	tests := []struct {
		name     string
		weights  []int
		inflight []int
		want     int
	}{
		{name: "fewest in flight", weights: []int{1, 1, 1}, inflight: []int{3, 1, 2}, want: 1},
		{name: "weight scales capacity", weights: []int{1, 3}, inflight: []int{1, 2}, want: 1},      // 1/1 > 2/3
		{name: "weight not enough", weights: []int{1, 3}, inflight: []int{1, 4}, want: 0},           // 1/1 < 4/3
		{name: "idle heavy beats busy light", weights: []int{5, 1}, inflight: []int{0, 1}, want: 0}, // 0 < 1
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pool, backends := newPool(t, tt.weights...)
			for i, n := range tt.inflight {
				for range n {
					done, err := backends[i].Acquire()
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { done(nil) })
				}
			}
			s := mustNew(t, AlgoLeastConn, pool)
			for range 100 {
				if got := s.Select(0, nil); got != backends[tt.want] {
					t.Fatalf("Select = %s, want %s", got, backends[tt.want])
				}
			}
		})
	}
}

// TestLeastConnHoldsShareByWeight keeps every selected request in flight: the
// in-flight counts must end up proportional to weight.
func TestLeastConnHoldsShareByWeight(t *testing.T) {
	pool, backends := newPool(t, 1, 2, 3)
	s := mustNew(t, AlgoLeastConn, pool)
	var dones []func(error)
	for range 600 {
		b := s.Select(0, nil)
		done, err := b.Acquire()
		if err != nil {
			t.Fatal(err)
		}
		dones = append(dones, done)
	}
	for i, b := range backends {
		if want := int64(100 * (i + 1)); b.InFlight() < want-1 || b.InFlight() > want+1 {
			t.Errorf("backend %d in flight %d, want %d±1", i, b.InFlight(), want)
		}
	}
	for _, done := range dones {
		done(nil)
	}
}

func TestUnavailableNeverPicked(t *testing.T) {
	type setup func(t *testing.T, b []*upstream.Backend) (excluded []int, tried []*upstream.Backend)
	tests := []struct {
		name  string
		setup setup
	}{
		{name: "dead", setup: func(t *testing.T, b []*upstream.Backend) ([]int, []*upstream.Backend) {
			b[0].SetAlive(false)
			b[2].SetAlive(false)
			return []int{0, 2}, nil
		}},
		{name: "breaker open", setup: func(t *testing.T, b []*upstream.Backend) ([]int, []*upstream.Backend) {
			openBreaker(t, b[1])
			openBreaker(t, b[3])
			return []int{1, 3}, nil
		}},
		{name: "tried", setup: func(t *testing.T, b []*upstream.Backend) ([]int, []*upstream.Backend) {
			return []int{0, 3}, []*upstream.Backend{b[3], b[0]}
		}},
		{name: "dead, open and tried", setup: func(t *testing.T, b []*upstream.Backend) ([]int, []*upstream.Backend) {
			b[0].SetAlive(false)
			openBreaker(t, b[1])
			return []int{0, 1, 2}, []*upstream.Backend{b[2]}
		}},
	}
	for _, algo := range algos {
		for _, tt := range tests {
			t.Run(algo+"/"+tt.name, func(t *testing.T) {
				pool, backends := newPool(t, 3, 1, 2, 1)
				excluded, tried := tt.setup(t, backends)
				s := mustNew(t, algo, pool)
				for i := range 5000 {
					b := s.Select(ipHash(i), tried)
					if b == nil {
						t.Fatal("Select returned nil with a usable backend")
					}
					for _, x := range excluded {
						if b == backends[x] {
							t.Fatalf("picked excluded backend %d (%s)", x, b)
						}
					}
				}
			})
		}
	}
}

func TestNoneUsableReturnsNil(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, b []*upstream.Backend) []*upstream.Backend
	}{
		{name: "all dead", setup: func(t *testing.T, b []*upstream.Backend) []*upstream.Backend {
			for _, x := range b {
				x.SetAlive(false)
			}
			return nil
		}},
		{name: "all breakers open", setup: func(t *testing.T, b []*upstream.Backend) []*upstream.Backend {
			for _, x := range b {
				openBreaker(t, x)
			}
			return nil
		}},
		{name: "all tried", setup: func(t *testing.T, b []*upstream.Backend) []*upstream.Backend { return b }},
		{name: "mixed", setup: func(t *testing.T, b []*upstream.Backend) []*upstream.Backend {
			b[0].SetAlive(false)
			openBreaker(t, b[1])
			return b[2:]
		}},
	}
	for _, algo := range algos {
		for _, tt := range tests {
			t.Run(algo+"/"+tt.name, func(t *testing.T) {
				pool, backends := newPool(t, 1, 2, 3)
				tried := tt.setup(t, backends)
				s := mustNew(t, algo, pool)
				for i := range 100 {
					if b := s.Select(ipHash(i), tried); b != nil {
						t.Fatalf("Select = %s, want nil", b)
					}
				}
			})
		}
	}
}

func TestIPHashSticky(t *testing.T) {
	pool, _ := newPool(t, 1, 2, 3, 1, 1)
	s := mustNew(t, AlgoIPHash, pool)
	again := mustNew(t, AlgoIPHash, pool) // a second replica builds its own
	for i := range 1000 {
		first := s.Select(ipHash(i), nil)
		for range 5 {
			if b := s.Select(ipHash(i), nil); b != first {
				t.Fatalf("hash %d moved from %s to %s", i, first, b)
			}
		}
		if b := again.Select(ipHash(i), nil); b != first {
			t.Fatalf("hash %d: replica picked %s, want %s", i, b, first)
		}
	}
}

func TestIPHashOnlyDeadBackendsClientsMove(t *testing.T) {
	const clients = 10000
	for _, weights := range [][]int{{1, 1, 1, 1, 1}, {1, 2, 3, 2, 1}} {
		t.Run(fmt.Sprint(weights), func(t *testing.T) {
			pool, backends := newPool(t, weights...)
			s := mustNew(t, AlgoIPHash, pool)
			before := make([]*upstream.Backend, clients)
			for i := range clients {
				before[i] = s.Select(ipHash(i), nil)
			}
			dead := backends[2]
			dead.SetAlive(false)
			moved := 0
			for i := range clients {
				after := s.Select(ipHash(i), nil)
				switch {
				case before[i] == dead && after == dead:
					t.Fatalf("client %d still on the dead backend", i)
				case before[i] == dead:
					moved++
				case after != before[i]:
					t.Fatalf("client %d moved from live %s to %s", i, before[i], after)
				}
			}
			if moved == 0 {
				t.Fatal("no client was on the backend that died")
			}
			dead.SetAlive(true)
			for i := range clients {
				if b := s.Select(ipHash(i), nil); b != before[i] {
					t.Fatalf("client %d did not return to %s after recovery (got %s)", i, before[i], b)
				}
			}
		})
	}
}

// TestIPHashTriedIsStable: a retry goes to the client's second choice, the
// same one it would get if its first backend died.
func TestIPHashTriedIsStable(t *testing.T) {
	pool, _ := newPool(t, 1, 2, 3, 1, 1)
	s := mustNew(t, AlgoIPHash, pool)
	for i := range 1000 {
		first := s.Select(ipHash(i), nil)
		second := s.Select(ipHash(i), []*upstream.Backend{first})
		if second == nil || second == first {
			t.Fatalf("hash %d: retry picked %v after %s", i, second, first)
		}
		first.SetAlive(false)
		if b := s.Select(ipHash(i), nil); b != second {
			t.Fatalf("hash %d: with %s dead got %s, want %s", i, first, b, second)
		}
		first.SetAlive(true)
	}
}

func TestHashKeyStable(t *testing.T) {
	// Pinned values: changing HashKey re-shuffles every ip-hash client of
	// every replica, so a change here must be deliberate.
	tests := []struct {
		name string
		in   []byte
		want uint64
	}{
		{name: "empty", in: nil, want: 0xefd01f60ba992926},
		{name: "ipv4", in: []byte{192, 0, 2, 1}, want: 0x803931826a2288ea},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := HashKey(tt.in); got != tt.want {
				t.Fatalf("HashKey(%v) = %#x, want %#x", tt.in, got, tt.want)
			}
			f := fnv.New64a()
			f.Write(tt.in)
			if got, want := HashKey(tt.in), fmix64(f.Sum64()); got != want {
				t.Fatalf("HashKey(%v) = %#x, want fmix64(FNV-1a) = %#x", tt.in, got, want)
			}
		})
	}
	if HashKey([]byte{192, 0, 2, 1}) == HashKey([]byte{192, 0, 2, 2}) {
		t.Fatal("adjacent addresses collide")
	}
	if allocs := testing.AllocsPerRun(100, func() { HashKey([]byte{192, 0, 2, 1}) }); allocs != 0 {
		t.Fatalf("HashKey allocated %v times", allocs)
	}
}

func TestConcurrentSelect(t *testing.T) {
	for _, algo := range algos {
		t.Run(algo, func(t *testing.T) {
			pool, backends := newPool(t, 1, 2, 3, 4)
			s := mustNew(t, algo, pool)
			stop := make(chan struct{})
			var flip sync.WaitGroup
			flip.Go(func() {
				for i := 0; ; i++ {
					select {
					case <-stop:
						backends[0].SetAlive(true)
						return
					default:
						backends[0].SetAlive(i%2 == 0)
					}
				}
			})
			var wg sync.WaitGroup
			for g := range 8 {
				wg.Go(func() {
					for i := range 2000 {
						b := s.Select(ipHash(g*2000+i), nil)
						if b == nil {
							t.Error("Select returned nil with live backends")
							return
						}
						if done, err := b.Acquire(); err == nil {
							done(nil)
						}
					}
				})
			}
			wg.Wait()
			close(stop)
			flip.Wait()
		})
	}
}

func TestSelectDoesNotAllocate(t *testing.T) {
	for _, algo := range algos {
		t.Run(algo, func(t *testing.T) {
			pool, backends := newPool(t, 1, 2, 3)
			backends[0].SetAlive(false)
			s := mustNew(t, algo, pool)
			tried := []*upstream.Backend{backends[1]}
			if allocs := testing.AllocsPerRun(200, func() { s.Select(12345, tried) }); allocs != 0 {
				t.Fatalf("Select allocated %v times", allocs)
			}
		})
	}
}

func BenchmarkSelect(b *testing.B) {
	for _, algo := range algos {
		for _, n := range []int{3, 10} {
			b.Run(fmt.Sprintf("%s/%d", algo, n), func(b *testing.B) {
				weights := make([]int, n)
				for i := range weights {
					weights[i] = i%3 + 1
				}
				pool, _ := newPool(b, weights...)
				s := mustNew(b, algo, pool)
				b.ReportAllocs()
				var i uint64
				for b.Loop() {
					i++
					if s.Select(i*0x9e3779b97f4a7c15, nil) == nil {
						b.Fatal("nil")
					}
				}
			})
		}
	}
}

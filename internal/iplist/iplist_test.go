package iplist

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"testing"

	"github.com/portcullis/portcullis/internal/testutil"
)

var (
	mustAddr   = netip.MustParseAddr
	mustPrefix = netip.MustParsePrefix
)

func TestListsMatch(t *testing.T) {
	l := NewLists(
		testutil.Prefixes("203.0.113.7/32", "10.0.0.0/8", "2001:db8::1/128", "2001:db8:1::/48", "::ffff:198.51.100.9/128", "fe80::/10"),
		testutil.Prefixes("192.0.2.0/24", "2001:db8:bad::/64"),
	)
	tests := []struct {
		name        string
		addr        string
		wantAllowed bool
		wantDenied  bool
	}{
		{name: "IPv4 exact", addr: "203.0.113.7", wantAllowed: true},
		{name: "IPv4 exact neighbour", addr: "203.0.113.8"},
		{name: "IPv4 CIDR first", addr: "10.0.0.0", wantAllowed: true},
		{name: "IPv4 CIDR last", addr: "10.255.255.255", wantAllowed: true},
		{name: "IPv4 just outside CIDR", addr: "11.0.0.0"},
		{name: "IPv4 deny CIDR", addr: "192.0.2.200", wantDenied: true},
		{name: "IPv4 outside deny CIDR", addr: "192.0.3.1"},
		{name: "IPv6 exact", addr: "2001:db8::1", wantAllowed: true},
		{name: "IPv6 exact other spelling", addr: "2001:0DB8:0:0::1", wantAllowed: true},
		{name: "IPv6 exact neighbour", addr: "2001:db8::2"},
		{name: "IPv6 CIDR", addr: "2001:db8:1:ffff::42", wantAllowed: true},
		{name: "IPv6 outside CIDR", addr: "2001:db8:2::1"},
		{name: "IPv6 deny /64", addr: "2001:db8:bad::dead:beef", wantDenied: true},
		{name: "IPv6 next /64 not denied", addr: "2001:db8:bad:1::1"},
		{name: "IPv4-mapped address matches IPv4 entry", addr: "::ffff:203.0.113.7", wantAllowed: true},
		{name: "IPv4-mapped address matches IPv4 deny", addr: "::ffff:192.0.2.1", wantDenied: true},
		{name: "IPv4-mapped entry stored as IPv4", addr: "198.51.100.9", wantAllowed: true},
		{name: "zone ignored", addr: "fe80::1%eth0", wantAllowed: true},
		{name: "IPv4 is not IPv6", addr: "::a00:1"},
		{name: "invalid address", addr: ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var a netip.Addr
			if tc.addr != "" {
				a = mustAddr(tc.addr)
			}
			if got := l.Allowed(a); got != tc.wantAllowed {
				t.Errorf("Allowed(%v) = %v, want %v", a, got, tc.wantAllowed)
			}
			if got := l.Denied(a); got != tc.wantDenied {
				t.Errorf("Denied(%v) = %v, want %v", a, got, tc.wantDenied)
			}
		})
	}
}

func TestAddRemove(t *testing.T) {
	l := NewLists(nil, nil)
	steps := []struct {
		name       string
		op         string // add, remove
		kind       Kind
		prefix     netip.Prefix
		want       bool
		probe      string
		wantDenied bool
	}{
		{name: "add CIDR", op: "add", kind: Deny, prefix: mustPrefix("198.51.100.0/24"), want: true, probe: "198.51.100.77", wantDenied: true},
		{name: "add again", op: "add", kind: Deny, prefix: mustPrefix("198.51.100.0/24"), want: false, probe: "198.51.100.77", wantDenied: true},
		{name: "add with host bits is the same entry", op: "add", kind: Deny, prefix: mustPrefix("198.51.100.5/24"), want: false, probe: "198.51.100.1", wantDenied: true},
		{name: "remove a host inside does not split", op: "remove", kind: Deny, prefix: mustPrefix("198.51.100.77/32"), want: false, probe: "198.51.100.77", wantDenied: true},
		{name: "remove from the other list", op: "remove", kind: Allow, prefix: mustPrefix("198.51.100.0/24"), want: false, probe: "198.51.100.77", wantDenied: true},
		{name: "remove CIDR", op: "remove", kind: Deny, prefix: mustPrefix("198.51.100.0/24"), want: true, probe: "198.51.100.77"},
		{name: "remove again", op: "remove", kind: Deny, prefix: mustPrefix("198.51.100.0/24"), want: false, probe: "198.51.100.77"},
		{name: "add mapped IPv6 form", op: "add", kind: Deny, prefix: mustPrefix("::ffff:192.0.2.1/128"), want: true, probe: "192.0.2.1", wantDenied: true},
		{name: "remove IPv4 form of it", op: "remove", kind: Deny, prefix: mustPrefix("192.0.2.1/32"), want: true, probe: "192.0.2.1"},
		{name: "add IPv6", op: "add", kind: Deny, prefix: mustPrefix("2001:db8::/32"), want: true, probe: "2001:db8:ffff::1", wantDenied: true},
		{name: "invalid prefix", op: "add", kind: Deny, prefix: netip.Prefix{}, want: false, probe: "2001:db8::1", wantDenied: true},
		{name: "mapped prefix shorter than /96", op: "add", kind: Deny, prefix: netip.PrefixFrom(mustAddr("::ffff:0.0.0.0"), 80), want: false, probe: "1.2.3.4"},
		{name: "invalid kind", op: "add", kind: Kind(7), prefix: mustPrefix("1.2.3.4/32"), want: false, probe: "1.2.3.4"},
	}
	for _, s := range steps {
		var got bool
		switch s.op {
		case "add":
			got = l.Add(s.kind, s.prefix)
		case "remove":
			got = l.Remove(s.kind, s.prefix)
		}
		if got != s.want {
			t.Errorf("%s: %s(%v, %v) = %v, want %v", s.name, s.op, s.kind, s.prefix, got, s.want)
		}
		if d := l.Denied(mustAddr(s.probe)); d != s.wantDenied {
			t.Errorf("%s: Denied(%s) = %v right after, want %v", s.name, s.probe, d, s.wantDenied)
		}
	}
	if got := l.Entries(Deny); !slices.Equal(got, testutil.Prefixes("2001:db8::/32")) {
		t.Errorf("Entries(Deny) = %v", got)
	}
	if n := l.Len(Deny); n != 1 {
		t.Errorf("Len(Deny) = %d, want 1", n)
	}
	if got := l.Entries(Allow); len(got) != 0 {
		t.Errorf("Entries(Allow) = %v, want none", got)
	}
}

func TestEntriesSorted(t *testing.T) {
	in := testutil.Prefixes("2001:db8::1/128", "10.1.0.0/16", "10.0.0.0/8", "192.0.2.7/32", "1.2.3.4/32", "2001:db8::/32", "10.0.0.1/32", "::1/128")
	l := NewLists(nil, nil)
	for i, p := range in {
		if !l.Add(Allow, p) {
			t.Fatalf("Add(%v) #%d = false", p, i)
		}
	}
	want := testutil.Prefixes("1.2.3.4/32", "10.0.0.0/8", "10.0.0.1/32", "10.1.0.0/16", "192.0.2.7/32", "::1/128", "2001:db8::/32", "2001:db8::1/128")
	if got := l.Entries(Allow); !slices.Equal(got, want) {
		t.Errorf("Entries = %v\nwant      %v", got, want)
	}
	// The same order for a random list: by address, then shorter first.
	r := rand.New(rand.NewPCG(1, 2))
	big := NewLists(randomPrefixes(r, 2000), nil).Entries(Allow)
	if !slices.IsSortedFunc(big, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	}) {
		t.Error("Entries of a random list are not sorted")
	}
}

func TestCanonical(t *testing.T) {
	tests := []struct {
		name   string
		in     netip.Prefix
		want   string
		wantOK bool
	}{
		{name: "IPv4 host", in: mustPrefix("1.2.3.4/32"), want: "1.2.3.4/32", wantOK: true},
		{name: "host bits masked", in: mustPrefix("10.9.8.7/8"), want: "10.0.0.0/8", wantOK: true},
		{name: "IPv6 masked", in: mustPrefix("2001:db8::1/32"), want: "2001:db8::/32", wantOK: true},
		{name: "mapped host", in: mustPrefix("::ffff:1.2.3.4/128"), want: "1.2.3.4/32", wantOK: true},
		{name: "mapped /104", in: mustPrefix("::ffff:10.1.2.3/104"), want: "10.0.0.0/8", wantOK: true},
		{name: "mapped shorter than /96", in: netip.PrefixFrom(mustAddr("::ffff:1.2.3.4"), 64)},
		{name: "invalid", in: netip.Prefix{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := Canonical(tc.in)
			if ok != tc.wantOK || (ok && got.String() != tc.want) {
				t.Errorf("Canonical(%v) = %v, %v; want %v, %v", tc.in, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

func TestKindString(t *testing.T) {
	for _, tc := range []struct {
		kind Kind
		want string
	}{{kind: Allow, want: "whitelist"}, {kind: Deny, want: "blacklist"}, {kind: Kind(9), want: "unknown"}} {
		if got := tc.kind.String(); got != tc.want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(tc.kind), got, tc.want)
		}
	}
}

// Lookups run lock-free while writers change the lists; run with -race.
// Entries that are never touched must answer the same throughout.
func TestConcurrentLookupsDuringChanges(t *testing.T) {
	l := NewLists(testutil.Prefixes("203.0.113.0/24"), testutil.Prefixes("192.0.2.0/24"))
	churn := testutil.Prefixes("198.51.100.0/24", "2001:db8::/48", "10.0.0.1/32", "2001:db8:1::7/128")
	stable := mustAddr("203.0.113.9")
	denied := mustAddr("192.0.2.9")
	never := mustAddr("8.8.8.8")

	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 8)
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if !l.Allowed(stable) || !l.Denied(denied) || l.Allowed(never) || l.Denied(never) {
					errs <- "a stable entry changed its answer during writes"
					return
				}
				_ = l.Denied(mustAddr("198.51.100.1"))
				_ = l.Entries(Deny)
			}
		})
	}
	var writers sync.WaitGroup
	for w := range 2 {
		writers.Go(func() {
			k := Kind(w)
			for range 500 {
				for _, p := range churn {
					l.Add(k, p)
				}
				for _, p := range churn {
					l.Remove(k, p)
				}
			}
		})
	}
	writers.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if got := l.Entries(Deny); !slices.Equal(got, testutil.Prefixes("192.0.2.0/24")) {
		t.Errorf("after balanced add/remove, Entries(Deny) = %v", got)
	}
	if got := l.Entries(Allow); !slices.Equal(got, testutil.Prefixes("203.0.113.0/24")) {
		t.Errorf("after balanced add/remove, Entries(Allow) = %v", got)
	}
}

func TestLookupAllocs(t *testing.T) {
	l := NewLists(testutil.Prefixes("10.0.0.0/8", "2001:db8::/32"), testutil.Prefixes("192.0.2.0/24"))
	for _, s := range []string{"10.1.2.3", "2001:db8::1", "8.8.8.8", "2001:4860::8888", "::ffff:10.0.0.1"} {
		a := mustAddr(s)
		if n := testing.AllocsPerRun(100, func() { _, _ = l.Allowed(a), l.Denied(a) }); n != 0 {
			t.Errorf("lookup of %s: %v allocs, want 0", s, n)
		}
	}
}

// randomPrefixes returns n distinct random prefixes, IPv4 and IPv6 mixed,
// of lengths /8 to /32 and /32 to /128.
func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var p netip.Prefix
		if r.IntN(2) == 0 {
			var b [4]byte
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom4(b), 8+r.IntN(25)).Masked()
		} else {
			var b [16]byte
			for i := range b {
				b[i] = byte(r.Uint32())
			}
			p = netip.PrefixFrom(netip.AddrFrom16(b), 32+r.IntN(97)).Masked()
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// The cost of a lookup depends on the address length, not on the number of
// entries: compare the 10 and 100k rows.
func BenchmarkLookup(b *testing.B) {
	for _, size := range []int{10, 100_000} {
		r := rand.New(rand.NewPCG(uint64(size), 42))
		entries := randomPrefixes(r, size)
		l := NewLists(entries, entries)
		// Probes: half inside stored entries, half random (mostly misses).
		probes := make([]netip.Addr, 0, 1024)
		for i := range cap(probes) {
			if i%2 == 0 {
				probes = append(probes, entries[r.IntN(len(entries))].Addr())
			} else {
				probes = append(probes, randomPrefixes(r, 1)[0].Addr())
			}
		}
		for _, fam := range []string{"v4", "v6"} {
			var ps []netip.Addr
			for _, a := range probes {
				if a.Is4() == (fam == "v4") {
					ps = append(ps, a)
				}
			}
			b.Run(fmt.Sprintf("Allowed/%s/entries=%d", fam, size), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = l.Allowed(ps[i%len(ps)])
					i++
				}
			})
			b.Run(fmt.Sprintf("Denied/%s/entries=%d", fam, size), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					_ = l.Denied(ps[i%len(ps)])
					i++
				}
			})
		}
	}
}

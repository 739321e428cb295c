// Package iplist holds the allow and deny lists of client IPs and CIDRs
// (IP_WHITELIST, IP_BLACKLIST and the admin API's changes) in prefix tries,
// swapped whole on every change, so a lookup takes no lock and its cost
// does not grow with the lists.
package iplist

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/gaissmai/bart"
)

// Kind names one of the two lists.
type Kind int

const (
	// Allow is the allow list (IP_WHITELIST): a client on it skips every
	// later IP check (deny, DDoS, rate limit).
	Allow Kind = iota
	// Deny is the deny list (IP_BLACKLIST): a client on it gets 403.
	Deny
)

// String returns "whitelist" or "blacklist", the words of the admin paths
// and the logs.
func (k Kind) String() string {
	switch k {
	case Allow:
		return "whitelist"
	case Deny:
		return "blacklist"
	}
	return "unknown"
}

func (k Kind) valid() bool { return k == Allow || k == Deny }

// Lists holds both lists. Lookups run on every request and are lock-free:
// each list is an immutable prefix trie (bart.Lite, whose lookup cost
// depends on the address length, not on the number of entries) behind an
// atomic pointer. Changes are rare (admin API) and copy-on-write: under a
// mutex, the changed path of the trie is cloned and the new root swapped in,
// so a lookup sees either the old or the new list, never a torn one.
type Lists struct {
	mu     sync.Mutex // serialises writers only
	tables [2]atomic.Pointer[bart.Lite]
	sync   Sync // told of Add and Remove; nil outside cluster mode
}

// Sync is told of every change made through Add and Remove (the admin API),
// after the change applied locally, so it can share it with other replicas
// (CLUSTER_MODE=redis). Changes that came from other replicas arrive through
// Apply and Replace and are not reported back.
type Sync interface {
	ListChanged(k Kind, p netip.Prefix, added bool)
}

// SetSync installs s. Call it before the lists are shared between
// goroutines (at build time); it is not synchronised.
func (l *Lists) SetSync(s Sync) { l.sync = s }

// NewLists returns lists seeded with allow and deny (config's IPWhitelist
// and IPBlacklist). Entries are canonicalised like Add does; invalid ones
// are skipped (config has validated them already).
func NewLists(allow, deny []netip.Prefix) *Lists {
	l := &Lists{}
	for k, ps := range [][]netip.Prefix{Allow: allow, Deny: deny} {
		t := new(bart.Lite)
		for _, p := range ps {
			if c, ok := Canonical(p); ok {
				t.Insert(c) // not yet published: in-place insert is safe
			}
		}
		l.tables[k].Store(t)
	}
	return l
}

// Allowed reports whether a is on the allow list. It does not allocate.
func (l *Lists) Allowed(a netip.Addr) bool { return l.tables[Allow].Load().Contains(a.Unmap()) }

// Denied reports whether a is on the deny list. It does not allocate.
func (l *Lists) Denied(a netip.Addr) bool { return l.tables[Deny].Load().Contains(a.Unmap()) }

// Add puts p on list k, visible to the next lookup. It reports whether the
// list changed (false: p was already there, or p or k is invalid). p is
// canonicalised first (see Canonical).
func (l *Lists) Add(k Kind, p netip.Prefix) (added bool) {
	return l.change(k, p, true, true)
}

// Remove takes the exact entry p off list k (a CIDR is not split: removing
// 10.0.0.1 from a list holding 10.0.0.0/8 changes nothing). It reports
// whether the list changed.
func (l *Lists) Remove(k Kind, p netip.Prefix) (removed bool) {
	return l.change(k, p, false, true)
}

// Apply adds (add true) or removes p on list k like Add and Remove, without
// telling the Sync: it applies a change another replica made.
func (l *Lists) Apply(k Kind, p netip.Prefix, add bool) (changed bool) {
	return l.change(k, p, add, false)
}

// change adds or removes p on list k with one copy-on-write swap and, when
// the list changed and tell is set, tells the Sync (outside the lock).
func (l *Lists) change(k Kind, p netip.Prefix, add, tell bool) bool {
	c, ok := Canonical(p)
	if !ok || !k.valid() {
		return false
	}
	l.mu.Lock()
	cur := l.tables[k].Load()
	changed := cur.Get(c) != add
	if changed {
		if add {
			l.tables[k].Store(cur.InsertPersist(c))
		} else {
			l.tables[k].Store(cur.DeletePersist(c))
		}
	}
	l.mu.Unlock()
	if changed && tell && l.sync != nil {
		l.sync.ListChanged(k, c, add)
	}
	return changed
}

// Replace makes list k hold exactly ps (canonicalised; invalid entries
// skipped), in one swap, and reports whether it changed. It is how a
// replica converges on the shared lists (cluster resync); the Sync is not
// told.
func (l *Lists) Replace(k Kind, ps []netip.Prefix) (changed bool) {
	if !k.valid() {
		return false
	}
	t := new(bart.Lite)
	for _, p := range ps {
		if c, ok := Canonical(p); ok {
			t.Insert(c) // not yet published
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := l.tables[k].Load()
	if cur.Equal(t) {
		return false
	}
	l.tables[k].Store(t)
	return true
}

// Entries returns the entries of list k in CIDR order: IPv4 before IPv6,
// by address, a supernet before its subnets.
func (l *Lists) Entries(k Kind) []netip.Prefix {
	if !k.valid() {
		return nil
	}
	t := l.tables[k].Load()
	return slices.AppendSeq(make([]netip.Prefix, 0, t.Size()), t.AllSorted())
}

// Len returns the number of entries on list k.
func (l *Lists) Len(k Kind) int {
	if !k.valid() {
		return 0
	}
	return l.tables[k].Load().Size()
}

// Canonical returns the form in which p is stored: host bits masked off,
// and an IPv4-mapped IPv6 prefix (::ffff:1.2.3.4/128) turned into its IPv4
// form (1.2.3.4/32), since client addresses are compared unmapped. ok is
// false for an invalid prefix or an IPv4-mapped one shorter than /96 (it
// would straddle both families).
func Canonical(p netip.Prefix) (c netip.Prefix, ok bool) {
	if !p.IsValid() {
		return netip.Prefix{}, false
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

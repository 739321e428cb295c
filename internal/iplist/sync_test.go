package iplist

import (
	"net/netip"
	"slices"
	"testing"

	"github.com/portcullis/portcullis/internal/testutil"
)

type recordingSync struct{ changes []string }

func (s *recordingSync) ListChanged(k Kind, p netip.Prefix, added bool) {
	op := "-"
	if added {
		op = "+"
	}
	s.changes = append(s.changes, op+k.String()+" "+p.String())
}

func TestSyncHearsLocalChangesOnly(t *testing.T) {
	l := NewLists(nil, nil)
	s := &recordingSync{}
	l.SetSync(s)
	l.Add(Deny, netip.MustParsePrefix("192.0.2.7/24"))             // canonicalised
	l.Add(Deny, netip.MustParsePrefix("192.0.2.0/24"))             // no change: not reported
	l.Apply(Allow, netip.MustParsePrefix("198.51.100.1/32"), true) // from another replica
	l.Remove(Deny, netip.MustParsePrefix("192.0.2.0/24"))
	l.Apply(Allow, netip.MustParsePrefix("198.51.100.1/32"), false)
	want := []string{"+blacklist 192.0.2.0/24", "-blacklist 192.0.2.0/24"}
	if !slices.Equal(s.changes, want) {
		t.Fatalf("sync heard %q, want %q", s.changes, want)
	}
	if l.Len(Allow) != 0 {
		t.Fatal("Apply(remove) did not remove")
	}
}

func TestReplace(t *testing.T) {
	l := NewLists(nil, testutil.Prefixes("192.0.2.1/32", "10.0.0.0/8"))
	s := &recordingSync{}
	l.SetSync(s)
	if l.Replace(Deny, testutil.Prefixes("10.0.0.0/8", "192.0.2.1/32")) {
		t.Fatal("Replace with the same entries reported a change")
	}
	if !l.Replace(Deny, testutil.Prefixes("203.0.113.0/24", "::ffff:198.51.100.1/128")) {
		t.Fatal("Replace reported no change")
	}
	if l.Denied(netip.MustParseAddr("10.1.2.3")) || !l.Denied(netip.MustParseAddr("203.0.113.9")) || !l.Denied(netip.MustParseAddr("198.51.100.1")) {
		t.Fatalf("after Replace: %v", l.Entries(Deny))
	}
	if len(s.changes) != 0 {
		t.Fatalf("Replace told the sync: %v", s.changes)
	}
}

package ddos

import (
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portcullis/portcullis/internal/flood"
)

// recordingSharer records what the guard shares.
type recordingSharer struct {
	mu        sync.Mutex
	counts    map[netip.Addr]int
	unblocked []netip.Addr
}

func (s *recordingSharer) Count(k netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[k]++
}

func (s *recordingSharer) Unblocked(k netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unblocked = append(s.unblocked, k)
}

func TestSharerSeesCountedRequestsAndUnblocks(t *testing.T) {
	sh := &recordingSharer{counts: map[netip.Addr]int{}}
	f := newFixture(t, flood.Config{Threshold: 3, BlockDuration: time.Minute, Share: sh}, "192.0.2.9")
	f.sendN(6, "192.0.2.1")       // 3 pass, the 4th blocks, 2 refused while blocked
	f.sendN(2, "2001:db8:0:1::5") // counted under its /64
	f.sendN(2, "192.0.2.9")       // allow-listed: not counted
	key6 := netip.MustParseAddr("2001:db8:0:1::")
	if got := sh.counts[netip.MustParseAddr("192.0.2.1")]; got != 4 {
		t.Errorf("192.0.2.1 counted %d times, want 4 (refused requests of a blocked client are not counted)", got)
	}
	if sh.counts[key6] != 2 || sh.counts[netip.MustParseAddr("192.0.2.9")] != 0 {
		t.Errorf("counts %v", sh.counts)
	}
	if !f.guard.Unblock(netip.MustParseAddr("192.0.2.1")) {
		t.Fatal("no block to lift")
	}
	if len(sh.unblocked) != 1 || sh.unblocked[0] != netip.MustParseAddr("192.0.2.1") {
		t.Fatalf("unblocks shared: %v", sh.unblocked)
	}
}

func TestBlockAndLiftFromAnotherReplica(t *testing.T) {
	sh := &recordingSharer{counts: map[netip.Addr]int{}}
	f := newFixture(t, flood.Config{Threshold: 100, BlockDuration: time.Minute, Share: sh})
	key := netip.MustParseAddr("198.51.100.4")
	until := start.Add(30 * time.Second)
	if !f.guard.Block(key, until) {
		t.Fatal("Block reported no change")
	}
	if f.guard.Block(key, until.Add(-time.Second)) {
		t.Fatal("an earlier end shortened the block")
	}
	if f.guard.Block(netip.MustParseAddr("198.51.100.5"), start.Add(-time.Second)) {
		t.Fatal("a block already over was applied")
	}
	w := f.send("198.51.100.4")
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") != "30" {
		t.Fatalf("blocked client: %d Retry-After %q", w.Code, w.Header().Get("Retry-After"))
	}
	if got := f.metric(t, "blocked_ips_total"); got != 0 {
		t.Fatalf("blocked_ips_total = %v: a block made elsewhere was counted here too", got)
	}
	if !f.guard.Lift(key) {
		t.Fatal("Lift found no block")
	}
	if f.send("198.51.100.4").Code != http.StatusOK {
		t.Fatal("still refused after Lift")
	}
	if len(sh.unblocked) != 0 {
		t.Fatal("Lift told the Sharer (an echo loop between replicas)")
	}
}

func TestNoteBlockCountsOnceInTheCluster(t *testing.T) {
	f := newFixture(t, flood.Config{Threshold: 2, BlockDuration: time.Minute})
	f.guard.NoteBlock(netip.MustParseAddr("198.51.100.7"), start.Add(time.Minute))
	if got := f.metric(t, "blocked_ips_total"); got != 1 {
		t.Fatalf("blocked_ips_total = %v after a block this replica completed in the shared store, want 1", got)
	}
	f.sendN(3, "198.51.100.8") // blocked by this guard's own count: counted here
	f.guard.NoteBlock(netip.MustParseAddr("198.51.100.8"), start.Add(time.Minute))
	if got := f.metric(t, "blocked_ips_total"); got != 2 {
		t.Fatalf("blocked_ips_total = %v, want 2: a block this guard made and the shared store confirmed counts once", got)
	}
}

package telemetry

import (
	"github.com/portcullis/portcullis/internal/testutil"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBufferedWriterFlushesWithinInterval(t *testing.T) {
	out := &testutil.SyncBuffer{}
	w := NewBufferedWriter(out)
	defer w.Close()
	w.Write([]byte("line 1\n"))
	if out.String() != "" {
		t.Fatal("written through at once: no batching")
	}
	deadline := time.Now().Add(5 * FlushEvery)
	for out.String() != "line 1\n" {
		if time.Now().After(deadline) {
			t.Fatalf("line not flushed within %v: %q", 5*FlushEvery, out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestBufferedWriterCloseFlushesEverything(t *testing.T) {
	out := &testutil.SyncBuffer{}
	w := NewBufferedWriter(out)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 1000 {
				w.Write([]byte(strings.Repeat("x", i+1) + "\n"))
			}
		})
	}
	wg.Wait()
	w.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 8000 {
		t.Fatalf("%d lines after Close, want 8000", len(lines))
	}
	for _, l := range lines {
		if strings.Trim(l, "x") != "" {
			t.Fatalf("interleaved line %q", l)
		}
	}
}

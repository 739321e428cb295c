package cache

import (
	"testing"
	"time"
)

func TestSharedDefaults(t *testing.T) {
	s := NewShared(nil, &Stats{}, Options{})
	if got := s.Settings().BodyWait; got != BodyWait {
		t.Errorf("BodyWait %v, want %v", got, BodyWait)
	}
	if got := s.Settings().MaxRecording; got != MaxRecording {
		t.Errorf("MaxRecording %d, want %d", got, MaxRecording)
	}
	// A storable object larger than the default budget must still fit.
	big := NewShared(nil, &Stats{}, Options{MaxObject: 2 * MaxRecording})
	if got := big.Settings().MaxRecording; got != 2*MaxRecording {
		t.Errorf("MaxRecording %d with MaxObject %d", got, 2*MaxRecording)
	}
	set := NewShared(nil, &Stats{}, Options{BodyWait: time.Second, MaxRecording: 10})
	if set.Settings().BodyWait != time.Second || set.Settings().MaxRecording != 10 {
		t.Errorf("explicit settings not kept: %+v", *set.Settings())
	}
}

func TestRecordingBudget(t *testing.T) {
	s := NewShared(nil, &Stats{}, Options{MaxRecording: 100})
	if !s.Reserve(60) || !s.Reserve(40) {
		t.Fatal("reservations within the budget refused")
	}
	if s.Reserve(1) {
		t.Fatal("a reservation over the budget fit")
	}
	if s.Recording() != 100 {
		t.Fatalf("recording %d after a refused reservation, want 100", s.Recording())
	}
	s.Release(60)
	if !s.Reserve(50) || s.Recording() != 90 {
		t.Fatalf("recording %d, want 90", s.Recording())
	}
}

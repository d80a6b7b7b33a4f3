package deadline

import (
	"testing"
	"time"
)

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func at(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }

func TestScheduleKeepsTheEarliestSetReplaces(t *testing.T) {
	var tm Timers[string]
	tm.Schedule("a", at(10))
	tm.Schedule("a", at(20)) // later: ignored
	tm.Schedule("b", at(5))
	if got := tm.Next(); !got.Equal(at(5)) {
		t.Fatalf("Next = %v", got)
	}
	tm.Set("b", at(30)) // replaces
	if got := tm.Next(); !got.Equal(at(10)) {
		t.Fatalf("Next after Set = %v, want a at 10", got)
	}
	if k, ok := tm.Due(at(9)); ok {
		t.Fatalf("Due(9) = %q", k)
	}
	if k, ok := tm.Due(at(10)); !ok || k != "a" {
		t.Fatalf("Due(10) = %q %v", k, ok)
	}
	if k, ok := tm.Due(at(29)); ok {
		t.Fatalf("b's stale deadline 5 fired: %q", k)
	}
	tm.Cancel("b")
	if k, ok := tm.Due(at(100)); ok || !tm.Next().IsZero() || tm.Live() != 0 {
		t.Fatalf("after Cancel: Due %q %v, Next %v, Live %d", k, ok, tm.Next(), tm.Live())
	}
}

// Re-arming one key many times never grows the heap past its bound.
func TestHeapStaysBounded(t *testing.T) {
	var tm Timers[int]
	for i := range 10_000 {
		tm.Set(i%3, at(i))
		if tm.HeapLen() > 4*tm.Live()+64 {
			t.Fatalf("heap %d for %d keys", tm.HeapLen(), tm.Live())
		}
	}
	n := 0
	for _, ok := tm.Due(at(1 << 20)); ok; _, ok = tm.Due(at(1 << 20)) {
		n++
	}
	if n != 3 {
		t.Fatalf("%d due, want 3 (one per key)", n)
	}
}

func BenchmarkSetDue(b *testing.B) {
	var tm Timers[int]
	for i := range 10_000 {
		tm.Set(i, at(i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		k, _ := tm.Due(at(i))
		tm.Set(k, at(i+10_000))
	}
}

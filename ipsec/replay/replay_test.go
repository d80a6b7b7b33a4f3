package replay_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/dmvpn/dmvpn/ipsec/replay"
)

func mustNew(t testing.TB, size int, esn bool) *replay.Window {
	t.Helper()
	w, err := replay.New(size, esn)
	if err != nil {
		t.Fatalf("New(%d, %v): %v", size, esn, err)
	}
	return w
}

// step is one packet arriving: the full sequence number the sender used
// (its low half is what travels), and what Check and Accept must say.
type step struct {
	seq  uint64
	want error // nil, replay.ErrReplayed or replay.ErrTooOld
	// forged: the ICV fails, so Accept is not called; the next steps show
	// the window did not move.
	forged bool
}

// run feeds the steps to w as an SA does: Check, then (ICV verified) Accept.
func run(t *testing.T, w *replay.Window, steps []step) {
	t.Helper()
	for i, s := range steps {
		lo := uint32(s.seq)
		got, err := w.Check(lo)
		if !errors.Is(err, s.want) || (s.want == nil && err != nil) {
			t.Fatalf("step %d: Check(%#x) for seq %#x = %#x, %v; want %v (top %#x)", i, lo, s.seq, got, err, s.want, w.Top())
		}
		if err != nil {
			continue
		}
		if got != s.seq {
			t.Fatalf("step %d: Check(%#x) inferred %#x, want %#x (top %#x)", i, lo, got, s.seq, w.Top())
		}
		if s.forged {
			continue
		}
		top := w.Top()
		if err := w.Accept(got); err != nil {
			t.Fatalf("step %d: Accept(%#x) after a good Check: %v", i, got, err)
		}
		if want := max(top, got); w.Top() != want {
			t.Fatalf("step %d: Top %#x after Accept(%#x), want %#x", i, w.Top(), got, want)
		}
		if err := w.Accept(got); !errors.Is(err, replay.ErrReplayed) {
			t.Fatalf("step %d: second Accept(%#x) = %v, want ErrReplayed", i, got, err)
		}
	}
}

func seqs(from, to uint64) []step {
	var s []step
	for n := from; n <= to; n++ {
		s = append(s, step{seq: n})
	}
	return s
}

func cat(parts ...[]step) []step {
	var s []step
	for _, p := range parts {
		s = append(s, p...)
	}
	return s
}

const w64 = 64 // the smallest window keeps the tables short

func TestWindowTable(t *testing.T) {
	const hi = 1 << 32
	tests := []struct {
		name  string
		size  int
		esn   bool
		start uint64 // accepted before the steps (0: none)
		steps []step
	}{
		{"in order", w64, false, 0, seqs(1, 500)},
		{"zero is never valid", w64, false, 0, []step{{seq: 0, want: replay.ErrTooOld}, {seq: 1}, {seq: 0, want: replay.ErrTooOld}}},
		{"duplicate", w64, false, 0, []step{{seq: 1}, {seq: 2}, {seq: 2, want: replay.ErrReplayed}, {seq: 1, want: replay.ErrReplayed}, {seq: 3}}},
		{"reorder within the window", w64, false, 0, []step{
			{seq: 10}, {seq: 5}, {seq: 8}, {seq: 1}, {seq: 9}, {seq: 2}, {seq: 10, want: replay.ErrReplayed},
			{seq: 100}, {seq: 37}, {seq: 36, want: replay.ErrTooOld}, {seq: 99}, {seq: 64}, {seq: 37, want: replay.ErrReplayed},
		}},
		{"window edges", w64, false, 0, []step{
			{seq: 200},
			{seq: 200 - 63}, // the oldest number in the window
			{seq: 200 - 64, want: replay.ErrTooOld},
			{seq: 200 - 63, want: replay.ErrReplayed},
			{seq: 201}, // slides by one: 137 leaves the window
			{seq: 137, want: replay.ErrTooOld},
			{seq: 138},
		}},
		{"too old", w64, false, 0, []step{{seq: 1000}, {seq: 937}, {seq: 936, want: replay.ErrTooOld}, {seq: 1, want: replay.ErrTooOld}}},
		{"forged packets leave no trace", w64, false, 0, []step{
			{seq: 5}, {seq: 1 << 20, forged: true}, {seq: 6}, {seq: 4}, {seq: 7, forged: true}, {seq: 7},
		}},
		{"far ahead jumps clear the ring", w64, false, 0, cat(
			seqs(1, 128),
			[]step{{seq: 128 + 2*64}, {seq: 128 + 64 + 1}, {seq: 128 + 64, want: replay.ErrTooOld}},
			[]step{{seq: 1 << 31}, {seq: 1<<31 - 1}, {seq: 1<<31 - 63}, {seq: 1<<31 - 64, want: replay.ErrTooOld}, {seq: 128 + 2*64, want: replay.ErrTooOld}},
			[]step{{seq: math.MaxUint32}, {seq: math.MaxUint32 - 63}, {seq: math.MaxUint32, want: replay.ErrReplayed}},
		)},
		{"jump by the ring, then by one block", w64, false, 0, []step{
			// 64 blocks of 2: block 1, then block 3 (clears both), then
			// block 4 (clears block 2, whose 129 has left the window).
			{seq: 64}, {seq: 63}, {seq: 64 + 128}, {seq: 64 + 128 - 63}, {seq: 64 + 128 + 64}, {seq: 64 + 128 + 1},
			{seq: 64 + 128 + 1, want: replay.ErrReplayed}, {seq: 64 + 128, want: replay.ErrTooOld},
		}},
		{"no ESN: 2^32-1 is the last", w64, false, 0, []step{
			{seq: math.MaxUint32 - 1}, {seq: math.MaxUint32}, {seq: math.MaxUint32, want: replay.ErrReplayed},
			{seq: 0, want: replay.ErrTooOld}, {seq: 1, want: replay.ErrTooOld},
		}},

		// ESN: the sender's 64-bit numbers; only the low half is on the
		// wire. A number below the window cannot be told from one 2^32
		// ahead: it is read as the latter, which only the ICV (covering the
		// high half) refuses — those steps are marked forged.
		{"ESN in order across 2^32", w64, true, 0, seqs(hi-100, hi+100)},
		{"ESN reorder across 2^32", w64, true, hi - 200, []step{
			{seq: hi - 3}, {seq: hi + 2}, {seq: hi - 1}, {seq: hi}, {seq: hi - 2}, {seq: hi + 1},
			{seq: hi - 1, want: replay.ErrReplayed}, {seq: hi + 2, want: replay.ErrReplayed},
			// Top hi+2: the window straddles the boundary (case B); low
			// half 0xffffffc3 is hi-61, the window's bottom.
			{seq: hi - 61},
			// hi-62 is below it: its low half reads as 2^33-62.
			{seq: 2*hi - 62, forged: true},
			{seq: hi - 61, want: replay.ErrReplayed},
		}},
		{"ESN case B, deep in the space", w64, true, 2*hi + 1<<31, []step{
			{seq: 3*hi + 10}, {seq: 3*hi - 20}, {seq: 3*hi + 9}, {seq: 3 * hi},
			{seq: 3*hi - 53}, {seq: 4*hi - 54, forged: true}, {seq: 3*hi - 20, want: replay.ErrReplayed},
		}},
		{"ESN case A: below the window is the next subspace", w64, true, 1 << 31, []step{
			{seq: hi + 1000},
			{seq: 2*hi + 5, forged: true},
			{seq: hi + 937}, {seq: 2*hi + 936, forged: true}, {seq: hi + 999},
		}},
		{"ESN from the start", w64, true, 0, []step{
			{seq: 1}, {seq: 2},
			// Top 2, window bottom 2^32-61 in "subspace -1": low halves
			// from there up would be below 0.
			{seq: 0xffffffff, want: replay.ErrTooOld},
			{seq: 0xffffffc3, want: replay.ErrTooOld},
			{seq: 0xffffffc2}, // below the bottom: read in subspace 0
			// Top 2^32-62: the old 1 and 2 now read as 2^32+1, 2^32+2.
			{seq: hi + 2, forged: true},
		}},
		{"ESN zero only at 0", w64, true, 1 << 31, []step{{seq: hi - 1}, {seq: hi}, {seq: hi, want: replay.ErrReplayed}}},
		{"ESN zero from a fresh window", w64, true, 0, []step{{seq: 0, want: replay.ErrTooOld}, {seq: 1}}},
		{"ESN top of the space", w64, true, math.MaxUint64 - 2, []step{
			{seq: math.MaxUint64 - 1}, {seq: math.MaxUint64},
			// Low half 3 would be 2^64+3: refused rather than wrapped.
			{seq: 3, want: replay.ErrTooOld},
			{seq: math.MaxUint64 - 63}, {seq: math.MaxUint64 - 64, want: replay.ErrTooOld},
		}},
		{"default window", 0, false, 0, cat(seqs(1, 2000), []step{{seq: 2000 - 1023, want: replay.ErrReplayed}, {seq: 2000 - 1024, want: replay.ErrTooOld}})},
		{"big window reorder", 4096, true, 1 << 31, cat(
			[]step{{seq: hi + 5000}},
			seqs(hi+5000-4095, hi+5000-4000),
			[]step{{seq: 2*hi + 5000 - 4096, forged: true}},
		)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := mustNew(t, tt.size, tt.esn)
			if tt.start != 0 {
				if err := w.Accept(tt.start); err != nil {
					t.Fatal(err)
				}
			}
			run(t, w, tt.steps)
		})
	}
}

func TestNewRejects(t *testing.T) {
	for _, size := range []int{-1, 1, 32, 63, 100, 1000, replay.MaxSize * 2, 3 << 10} {
		if _, err := replay.New(size, false); !errors.Is(err, replay.ErrConfig) {
			t.Errorf("New(%d) = %v, want ErrConfig", size, err)
		}
	}
	for _, size := range []int{0, replay.MinSize, 128, 1024, replay.MaxSize} {
		w := mustNew(t, size, true)
		want := size
		if size == 0 {
			want = replay.DefaultSize
		}
		if w.Size() != want || !w.ESN() || w.Top() != 0 {
			t.Errorf("New(%d): Size %d ESN %v Top %d", size, w.Size(), w.ESN(), w.Top())
		}
	}
}

// TestInferMatchesAppendixA checks Infer against the definition: the number
// with that low half among the 2^32 numbers starting at the window's bottom.
func TestInferMatchesAppendixA(t *testing.T) {
	const size = 1024
	tops := []uint64{1, 2, 1000, 1023, 1024, 1025, 1 << 31, 1<<32 - 1, 1 << 32, 1<<32 + 5, 1<<32 + 1023, 7<<32 + 1<<31, math.MaxUint64 - 10}
	lows := []uint32{0, 1, 2, 500, 1022, 1023, 1024, 1 << 31, math.MaxUint32 - 1024, math.MaxUint32 - 1023, math.MaxUint32 - 1022, math.MaxUint32}
	for _, top := range tops {
		w := mustNew(t, size, true)
		if err := w.Accept(top); err != nil {
			t.Fatal(err)
		}
		// The window's bottom, top-size+1; below0: it lies below 0, in
		// "subspace -1", and b is its low half there.
		below0 := top < size-1
		b := top - size + 1 // wraps when below0
		for _, lo := range lows {
			got, ok := w.Infer(lo)
			// The candidate ≥ bottom with that low half.
			var want uint64
			wantOK := true
			if below0 {
				if uint64(lo) >= b&(1<<32-1) {
					wantOK = false // would be below 0
				} else {
					want = uint64(lo)
				}
			} else {
				c := b&^(1<<32-1) | uint64(lo)
				if c < b {
					if b>>32 == math.MaxUint32 {
						wantOK = false
					} else {
						c += 1 << 32
					}
				}
				want = c
			}
			if ok != wantOK || (ok && got != want) {
				t.Errorf("top %#x lo %#x: Infer = %#x, %v; want %#x, %v", top, lo, got, ok, want, wantOK)
			}
		}
	}
}

func TestErrorsDistinct(t *testing.T) {
	if replay.ErrReplayed == replay.ErrTooOld || replay.ErrReplayed.Error() == replay.ErrTooOld.Error() {
		t.Fatal("errors not distinct")
	}
	if s := replay.Error(9).Error(); s == "" {
		t.Fatal("empty message")
	}
}

func TestZeroAllocs(t *testing.T) {
	w := mustNew(t, 1024, true)
	var n uint64 = 1<<32 - 500
	allocs := testing.AllocsPerRun(1000, func() {
		n += 3
		seq, err := w.Check(uint32(n))
		if err == nil {
			_ = w.Accept(seq)
		}
		_, _ = w.Check(uint32(n - 1)) // in the window, not seen
		_, _ = w.Check(uint32(n))     // replayed
		_, _ = w.Check(uint32(n - 5000))
	})
	if allocs != 0 {
		t.Fatalf("Check/Accept allocate %.1f times per run", allocs)
	}
}

func BenchmarkCheckAccept(b *testing.B) {
	for _, c := range []struct {
		name string
		step uint64 // sequence numbers advance by this much
	}{{"in-order", 1}, {"gaps", 7}, {"jumps", 5000}} {
		b.Run(c.name, func(b *testing.B) {
			w := mustNew(b, 1024, true)
			var n uint64
			b.ReportAllocs()
			for b.Loop() {
				n += c.step
				seq, err := w.Check(uint32(n))
				if err != nil {
					b.Fatal(err)
				}
				if err := w.Accept(seq); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("replayed", func(b *testing.B) {
		w := mustNew(b, 1024, false)
		_ = w.Accept(100)
		b.ReportAllocs()
		for b.Loop() {
			if _, err := w.Check(100); err == nil {
				b.Fatal("accepted a replay")
			}
		}
	})
}

func Example() {
	w, _ := replay.New(0, true) // 1,024 packets, ESN
	for _, lo := range []uint32{1, 3, 2, 3} {
		seq, err := w.Check(lo) // before the ICV check
		if err != nil {
			fmt.Println(lo, err)
			continue
		}
		// ... the ICV, computed with seq's high half, verified ...
		_ = w.Accept(seq)
		fmt.Println(lo, "accepted as", seq)
	}
	// Output:
	// 1 accepted as 1
	// 3 accepted as 3
	// 2 accepted as 2
	// 3 replay: sequence number already received
}

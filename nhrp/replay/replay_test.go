package replay

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

var (
	t0   = time.Unix(1_700_000_000, 0)
	ns0  = uint64(t0.UnixNano())
	sigA = netip.MustParseAddr("10.0.0.1")
	sigB = netip.MustParseAddr("10.0.0.2")
)

func mustNew(t testing.TB, cfg Config) *Filter {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestCheck(t *testing.T) {
	type step struct {
		signer netip.Addr
		seq    uint64
		now    time.Time // zero: t0
		want   error
	}
	sec := uint64(time.Second)
	tests := []struct {
		name  string
		cfg   Config
		steps []step
	}{
		{"in order", Config{}, []step{
			{sigA, ns0, time.Time{}, nil},
			{sigA, ns0 + 1, time.Time{}, nil},
			{sigA, ns0 + 2*sec, time.Time{}, nil},
		}},
		{"exact replay", Config{}, []step{
			{sigA, ns0, time.Time{}, nil},
			{sigA, ns0, time.Time{}, ErrReplay},
			{sigA, ns0 + 5, time.Time{}, nil},
			{sigA, ns0 + 5, time.Time{}, ErrReplay},
			{sigA, ns0, time.Time{}, ErrReplay},
		}},
		{"signers are independent", Config{}, []step{
			{sigA, ns0, time.Time{}, nil},
			{sigB, ns0, time.Time{}, nil},
			{sigB, ns0, time.Time{}, ErrReplay},
		}},
		{"reorder within window", Config{Window: 4}, []step{
			{sigA, ns0 + 10, time.Time{}, nil},
			{sigA, ns0 + 5, time.Time{}, nil}, // late, never seen
			{sigA, ns0 + 7, time.Time{}, nil},
			{sigA, ns0 + 5, time.Time{}, ErrReplay},
			{sigA, ns0 + 7, time.Time{}, ErrReplay},
			{sigA, ns0 + 10, time.Time{}, ErrReplay},
			{sigA, ns0 + 1, time.Time{}, nil},  // window {1,5,7,10} now full
			{sigA, ns0 + 11, time.Time{}, nil}, // 1 drops out: floor 1
			{sigA, ns0 + 1, time.Time{}, ErrBelowWindow},
			{sigA, ns0, time.Time{}, ErrBelowWindow},
			{sigA, ns0 + 6, time.Time{}, nil}, // floor 5, window {6,7,10,11}
			{sigA, ns0 + 5, time.Time{}, ErrBelowWindow},
			{sigA, ns0 + 6, time.Time{}, ErrReplay},
			{sigA, ns0 + 3, time.Time{}, ErrBelowWindow},
		}},
		{"reorder below a full window", Config{Window: 2}, []step{
			{sigA, ns0 + 10, time.Time{}, nil},
			{sigA, ns0 + 20, time.Time{}, nil},
			{sigA, ns0 + 30, time.Time{}, nil}, // floor 10, window {20,30}
			{sigA, ns0 + 15, time.Time{}, nil}, // never seen: accepted, becomes the floor
			{sigA, ns0 + 15, time.Time{}, ErrBelowWindow},
			{sigA, ns0 + 12, time.Time{}, ErrBelowWindow},
			{sigA, ns0 + 25, time.Time{}, nil}, // floor 20, window {25,30}
			{sigA, ns0 + 20, time.Time{}, ErrBelowWindow},
			{sigA, ns0 + 30, time.Time{}, ErrReplay},
		}},
		{"window of one", Config{Window: 1}, []step{
			{sigA, ns0 + 10, time.Time{}, nil},
			{sigA, ns0 + 10, time.Time{}, ErrReplay},
			{sigA, ns0 + 9, time.Time{}, nil}, // above floor 0: becomes the floor
			{sigA, ns0 + 9, time.Time{}, ErrBelowWindow},
			{sigA, ns0 + 11, time.Time{}, nil},
			{sigA, ns0 + 10, time.Time{}, ErrBelowWindow},
		}},
		{"skew", Config{MaxSkew: 60 * time.Second}, []step{
			{sigA, ns0 - 60*sec, time.Time{}, nil},
			{sigA, ns0 - 60*sec - 1, time.Time{}, ErrTooOld},
			{sigB, ns0 + 60*sec, time.Time{}, nil},
			{sigB, ns0 + 60*sec + 1, time.Time{}, ErrTooNew},
			{sigB, math.MaxUint64, time.Time{}, ErrTooNew},
			{sigB, math.MaxInt64 + 1, time.Time{}, ErrTooNew},
			{sigB, 0, time.Time{}, ErrTooOld},
			{sigB, 1, time.Time{}, ErrTooOld},
			// Refusals record nothing: the numbers are still fresh
			// when the clock catches up.
			{sigB, ns0 + 61*sec, t0.Add(time.Second), nil},
		}},
		{"too old after the receiver's clock moved on", Config{MaxSkew: time.Second}, []step{
			{sigA, ns0, time.Time{}, nil},
			{sigA, ns0 + 1, t0.Add(2 * time.Second), ErrTooOld},
			{sigA, ns0 + 2*sec, t0.Add(2 * time.Second), nil},
		}},
		{"eviction of the least recently updated", Config{MaxSigners: 2}, []step{
			{sigA, ns0, time.Time{}, nil},
			{sigB, ns0, time.Time{}, nil},
			{sigA, ns0 + 1, time.Time{}, nil}, // B is now the oldest
			{netip.MustParseAddr("10.0.0.3"), ns0, time.Time{}, nil},
			{sigA, ns0 + 1, time.Time{}, ErrReplay},                  // A remembered
			{sigB, ns0, time.Time{}, nil},                            // B forgotten: its replay passes (documented)
			{sigA, ns0 + 1, time.Time{}, nil},                        // A was the oldest then
			{netip.MustParseAddr("10.0.0.3"), ns0, time.Time{}, nil}, // and now 3 was
		}},
		{"a refusal does not refresh a signer", Config{MaxSigners: 2}, []step{
			{sigA, ns0, time.Time{}, nil},
			{sigB, ns0, time.Time{}, nil},
			{sigA, ns0, time.Time{}, ErrReplay}, // A stays the oldest
			{netip.MustParseAddr("10.0.0.3"), ns0, time.Time{}, nil},
			{sigB, ns0, time.Time{}, ErrReplay},
			{sigA, ns0, time.Time{}, nil}, // A was forgotten
		}},
		{"IPv4 and IPv4-mapped IPv6 are different signers", Config{}, []step{
			{sigA, ns0, time.Time{}, nil},
			{netip.AddrFrom16(sigA.As16()), ns0, time.Time{}, nil},
			{netip.AddrFrom16(sigA.As16()), ns0, time.Time{}, ErrReplay},
			{netip.MustParseAddr("fd00::1"), ns0, time.Time{}, nil},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := mustNew(t, tt.cfg)
			for i, s := range tt.steps {
				now := s.now
				if now.IsZero() {
					now = t0
				}
				if err := f.Check(s.signer, s.seq, now); err != s.want {
					t.Fatalf("step %d: Check(%v, t0%+d) = %v, want %v", i, s.signer, int64(s.seq-ns0), err, s.want)
				}
				f.checkInvariants(t)
			}
		})
	}
}

func TestNewValidates(t *testing.T) {
	for _, cfg := range []Config{
		{MaxSkew: -1},
		{MaxSigners: -1},
		{MaxSigners: MaxMaxSigners + 1},
		{Window: -1},
		{Window: MaxWindow + 1},
		{MaxSigners: MaxMaxSigners, Window: MaxWindow},
	} {
		if _, err := New(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("New(%+v) = %v, want ErrConfig", cfg, err)
		}
	}
	f := mustNew(t, Config{})
	if f.maxSkew != int64(DefaultMaxSkew) || f.window != DefaultWindow || cap(f.entries) != DefaultMaxSigners {
		t.Errorf("defaults: skew %v window %d signers %d", time.Duration(f.maxSkew), f.window, cap(f.entries))
	}
}

func TestErrorsDistinct(t *testing.T) {
	seen := map[string]bool{}
	for e := Error(1); int(e) < ErrorCount; e++ {
		if seen[e.Error()] {
			t.Errorf("%d: duplicate message %q", e, e.Error())
		}
		seen[e.Error()] = true
	}
}

// TestModel drives a small filter with random signers, reordering, replays
// and evictions, and compares it with a naive model: a number is never
// accepted twice (while its signer is remembered), every in-order number is
// accepted, and the table never exceeds its bound.
func TestModel(t *testing.T) {
	const signers, maxSigners, window = 40, 16, 8
	f := mustNew(t, Config{MaxSigners: maxSigners, Window: window, MaxSkew: time.Hour})
	rng := rand.New(rand.NewPCG(1, 2))
	type state struct {
		accepted map[uint64]bool
		highest  uint64
	}
	model := map[netip.Addr]*state{}
	var lru []netip.Addr // least recently updated first
	sent := map[netip.Addr][]uint64{}
	for step := 0; step < 200_000; step++ {
		a := netip.AddrFrom4([4]byte{10, 0, 1, byte(rng.IntN(signers))})
		var seq uint64
		switch r := rng.IntN(10); {
		case r < 6 || len(sent[a]) == 0: // a new, in-order number
			seq = ns0 + uint64(step)*1000 + uint64(rng.IntN(1000))
			sent[a] = append(sent[a], seq)
		case r < 8: // a replay of a recent one
			s := sent[a]
			seq = s[len(s)-1-rng.IntN(min(len(s), 2*window))]
		default: // a late one, never sent before
			s := sent[a]
			seq = s[len(s)-1] - 1 - uint64(rng.IntN(20_000))
		}
		err := f.Check(a, seq, t0)
		st := model[a]
		switch err {
		case nil:
			if st != nil && st.accepted[seq] {
				t.Fatalf("step %d: %v seq %d accepted twice", step, a, seq)
			}
			if st == nil {
				st = &state{accepted: map[uint64]bool{}}
				model[a] = st
				if len(lru) == maxSigners {
					delete(model, lru[0])
					lru = lru[1:]
				}
			}
			st.accepted[seq] = true
			st.highest = max(st.highest, seq)
			for i, x := range lru {
				if x == a {
					lru = append(lru[:i], lru[i+1:]...)
					break
				}
			}
			lru = append(lru, a)
		case ErrReplay:
			if st == nil || !st.accepted[seq] {
				t.Fatalf("step %d: %v seq %d called a replay, never accepted", step, a, seq)
			}
		case ErrBelowWindow:
			if st == nil || seq >= st.highest {
				t.Fatalf("step %d: %v seq %d below window, highest %v", step, a, seq, st)
			}
		default:
			t.Fatalf("step %d: %v", step, err)
		}
		if st != nil && seq > st.highest && err != nil {
			t.Fatalf("step %d: in-order %v seq %d refused: %v", step, a, seq, err)
		}
		if f.Len() > maxSigners || f.Len() != len(model) {
			t.Fatalf("step %d: filter holds %d signers, model %d", step, f.Len(), len(model))
		}
		if step%997 == 0 {
			f.checkInvariants(t)
			for x := range model {
				if f.lookup(x, f.hash(x)) < 0 {
					t.Fatalf("step %d: %v forgotten too early", step, x)
				}
			}
		}
	}
}

// checkInvariants checks the hash index, the LRU list and the windows.
func (f *Filter) checkInvariants(t *testing.T) {
	t.Helper()
	used := 0
	for s, v := range f.slots {
		if v == 0 {
			continue
		}
		used++
		e := &f.entries[v-1]
		// Every slot from the entry's home to s is occupied.
		for h := e.hash & f.mask; h != uint64(s); h = (h + 1) & f.mask {
			if f.slots[h] == 0 {
				t.Fatalf("slot %d (%v) unreachable from its home %d", s, e.addr, e.hash&f.mask)
			}
		}
		if f.lookup(e.addr, e.hash) != v-1 {
			t.Fatalf("lookup(%v) does not find entry %d", e.addr, v-1)
		}
	}
	if used != len(f.entries) {
		t.Fatalf("%d slots used, %d entries", used, len(f.entries))
	}
	n := 0
	prev := int32(-1)
	for i := f.head; i >= 0; i = f.entries[i].next {
		if f.entries[i].prev != prev {
			t.Fatalf("LRU list broken at %d", i)
		}
		prev = i
		n++
		if n > len(f.entries) {
			t.Fatal("LRU list loops")
		}
	}
	if prev != f.tail || n != len(f.entries) {
		t.Fatalf("LRU list has %d entries ending at %d, want %d ending at %d", n, prev, len(f.entries), f.tail)
	}
	for i := range f.entries {
		e := &f.entries[i]
		w := f.seqs[i*f.window : i*f.window+int(e.n)]
		if e.n < 1 || int(e.n) > f.window {
			t.Fatalf("entry %d holds %d numbers", i, e.n)
		}
		for j := range w {
			if w[j] <= e.floor || (j > 0 && w[j] <= w[j-1]) {
				t.Fatalf("entry %d window %v floor %d not sorted above the floor", i, w, e.floor)
			}
		}
	}
}

func TestCheckAllocs(t *testing.T) {
	f := mustNew(t, Config{MaxSigners: 64, Window: 16})
	addrs := make([]netip.Addr, 256)
	for i := range addrs {
		addrs[i] = netip.AddrFrom16([16]byte{0xfd, 15: byte(i)})
	}
	seq := ns0
	i := 0
	allocs := testing.AllocsPerRun(10_000, func() {
		seq++
		i++
		a := addrs[i%len(addrs)] // more signers than room: evictions too
		_ = f.Check(a, seq, t0)
		_ = f.Check(a, seq, t0)   // replay
		_ = f.Check(a, seq-3, t0) // reordered
	})
	if allocs != 0 {
		t.Errorf("Check allocates %v times per run", allocs)
	}
}

func TestSequencer(t *testing.T) {
	var s Sequencer
	a := s.Next(t0)
	b := s.Next(t0)                       // same clock reading
	c := s.Next(t0.Add(-time.Second))     // clock stepped back
	d := s.Next(t0.Add(time.Millisecond)) // clock moved on
	e := s.Next(time.Unix(0, 0).Add(-1))  // before 1970
	if a != ns0 || b != a+1 || c != b+1 || d != ns0+uint64(time.Millisecond) || e != d+1 {
		t.Errorf("Next: %d %d %d %d %d", a-ns0, b-ns0, c-ns0, d-ns0, e-ns0)
	}
}

func BenchmarkCheck(b *testing.B) {
	for _, n := range []int{1, 1000} {
		b.Run(fmt.Sprintf("signers=%d", n), func(b *testing.B) {
			f := mustNew(b, Config{MaxSigners: n})
			addrs := make([]netip.Addr, n)
			for i := range addrs {
				addrs[i] = netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
			}
			seq := ns0
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				seq++
				if err := f.Check(addrs[i%n], seq, t0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("reordered", func(b *testing.B) {
		f := mustNew(b, Config{})
		seq := ns0
		b.ReportAllocs()
		for b.Loop() {
			seq += 4
			_ = f.Check(sigA, seq, t0)
			_ = f.Check(sigA, seq-2, t0)
		}
	})
}

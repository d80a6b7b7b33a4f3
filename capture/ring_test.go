package capture

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"
	"testing"
	"time"
)

func pkt(seq, size int) []byte {
	b := make([]byte, size)
	for i := range b {
		b[i] = byte(seq + i)
	}
	if size >= 4 {
		binary.BigEndian.PutUint32(b, uint32(seq))
	}
	return b
}

// A ring holds at most its slots, and at most its arena; what does not fit
// is counted as dropped, and Put returns at once.
func TestRingBoundedAndCountsDrops(t *testing.T) {
	r := NewRing(8, 0) // 8 slots, the smallest arena (128 KiB)
	m := Meta{Point: Inner}
	for i := range 8 {
		if !r.Put(&m, pkt(i, 100), MaxSnapLen) {
			t.Fatalf("put %d refused in an empty ring", i)
		}
	}
	for i := range 5 {
		if r.Put(&m, pkt(100+i, 100), MaxSnapLen) {
			t.Fatalf("put into a full ring accepted")
		}
	}
	if r.Copied(Inner) != 8 || r.Dropped(Inner) != 5 || r.Dropped(Outer) != 0 {
		t.Fatalf("copied %d dropped %d/%d", r.Copied(Inner), r.Dropped(Inner), r.Dropped(Outer))
	}
	for i := range 8 {
		got, data, ok := r.TryNext()
		if !ok || !bytes.Equal(data, pkt(i, 100)) || got.Len != 100 {
			t.Fatalf("record %d: ok %v len %d", i, ok, len(data))
		}
		r.Release()
	}
	if _, _, ok := r.TryNext(); ok {
		t.Fatal("empty ring returned a record")
	}

	// The arena: two 64 KiB packets fill 128 KiB; the third is dropped.
	r = NewRing(1024, 128<<10)
	big := pkt(1, 65535)
	o := Meta{Point: Outer}
	if !r.Put(&o, big, MaxSnapLen) || !r.Put(&o, big, MaxSnapLen) {
		t.Fatal("two 64 KiB packets do not fit 128 KiB")
	}
	if r.Put(&o, big, MaxSnapLen) || r.Dropped(Outer) != 1 {
		t.Fatalf("third 64 KiB packet: dropped %d", r.Dropped(Outer))
	}
	// The snap length bounds the copy, not the recorded length.
	r = NewRing(4, 0)
	r.Put(&m, big, 96)
	if got, data, _ := r.TryNext(); len(data) != 96 || got.Len != 65535 || !bytes.Equal(data, big[:96]) {
		t.Fatalf("snapped copy: %d bytes, len %d", len(data), got.Len)
	}
}

// Records of every size come back intact and in order through many laps
// of the arena (records that do not fit before its end start over at 0).
func TestRingWrapsAround(t *testing.T) {
	r := NewRing(16, 128<<10)
	m := Meta{Point: Outer}
	next := 0
	for i := range 5000 {
		size := 1 + (i*7919)%20000
		for !r.Put(&m, pkt(i, size), MaxSnapLen) {
			// full: consume one
			_, data, ok := r.TryNext()
			if !ok {
				t.Fatalf("ring refuses %d bytes but holds nothing", size)
			}
			want := pkt(next, 1+(next*7919)%20000)
			if !bytes.Equal(data, want) {
				t.Fatalf("record %d corrupted", next)
			}
			r.Release()
			next++
		}
	}
	for {
		_, data, ok := r.TryNext()
		if !ok {
			break
		}
		if !bytes.Equal(data, pkt(next, 1+(next*7919)%20000)) {
			t.Fatalf("record %d corrupted", next)
		}
		r.Release()
		next++
	}
	if next != 5000 {
		t.Fatalf("read %d of 5000 records", next)
	}
}

// Producers on several goroutines never wait for a slow (here: stalled)
// consumer, and every packet is either delivered intact or counted.
func TestRingConcurrentProducersNeverBlock(t *testing.T) {
	r := NewRing(64, 256<<10)
	const producers, each = 4, 20000
	var wg sync.WaitGroup
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := Meta{Point: Point(p % 2)}
			b := make([]byte, 1500)
			for i := range each {
				binary.BigEndian.PutUint32(b, uint32(p<<24|i))
				binary.BigEndian.PutUint32(b[1496:], uint32(p<<24|i))
				r.Put(&m, b[:100+i%1400], MaxSnapLen)
			}
		}()
	}
	// The consumer is stalled until every producer is done: they must
	// finish on their own.
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("producers blocked on a stalled consumer")
	}
	got := 0
	for {
		_, data, ok := r.TryNext()
		if !ok {
			break
		}
		if len(data) < 100 {
			t.Fatalf("record of %d bytes", len(data))
		}
		got++
		r.Release()
	}
	total := r.Copied(Inner) + r.Copied(Outer) + r.Dropped(Inner) + r.Dropped(Outer)
	if total != producers*each || uint64(got) != r.Copied(Inner)+r.Copied(Outer) || got > 64 {
		t.Fatalf("offered %d, accounted %d, delivered %d (copied %d)", producers*each, total, got, r.Copied(Inner)+r.Copied(Outer))
	}

	// With a consumer draining concurrently, everything delivered is
	// intact and accounted for.
	r = NewRing(64, 256<<10)
	stop := make(chan struct{})
	var delivered int
	cons := make(chan error, 1)
	go func() {
		seen := map[uint32]int{}
		for {
			_, data, ok := r.Next(stop)
			if !ok {
				break
			}
			id := binary.BigEndian.Uint32(data)
			p, i := id>>24, int(id&0xffffff)
			if len(data) != 100+i%1400 {
				cons <- fmt.Errorf("record %x: %d bytes, want %d", id, len(data), 100+i%1400)
				return
			}
			if i < seen[p] {
				cons <- fmt.Errorf("producer %d: record %d after %d", p, i, seen[p])
				return
			}
			seen[p] = i
			delivered++
			r.Release()
		}
		// drain
		for {
			if _, _, ok := r.TryNext(); !ok {
				break
			}
			delivered++
			r.Release()
		}
		cons <- nil
	}()
	for p := range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m := Meta{Point: Outer}
			b := make([]byte, 1500)
			for i := range each {
				binary.BigEndian.PutUint32(b, uint32(p<<24|i))
				r.Put(&m, b[:100+i%1400], MaxSnapLen)
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-cons; err != nil {
		t.Fatal(err)
	}
	if uint64(delivered) != r.Copied(Outer) || r.Copied(Outer)+r.Dropped(Outer) != producers*each {
		t.Fatalf("delivered %d, copied %d, dropped %d of %d", delivered, r.Copied(Outer), r.Dropped(Outer), producers*each)
	}
	t.Logf("concurrent: %d of %d delivered, %d dropped", delivered, producers*each, r.Dropped(Outer))
}

// Next wakes up for a packet put after it started waiting, and returns
// when done is closed.
func TestRingNextWakes(t *testing.T) {
	r := NewRing(8, 0)
	got := make(chan []byte, 1)
	go func() {
		_, data, ok := r.Next(nil)
		if ok {
			got <- bytes.Clone(data)
			r.Release()
		}
		close(got)
	}()
	// Whether the consumer is already asleep or not, the packet reaches it.
	m := Meta{}
	r.Put(&m, []byte("hello"), MaxSnapLen)
	select {
	case b := <-got:
		if string(b) != "hello" {
			t.Fatalf("got %q", b)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Next did not wake up")
	}
	done := make(chan struct{})
	close(done)
	if _, _, ok := r.Next(done); ok {
		t.Fatal("Next returned a record from an empty ring")
	}
}

func TestTapPutAllocatesNothing(t *testing.T) {
	r := NewRing(DefaultSlots, DefaultBytes)
	tap := NewTap(PointInner|PointOuter, 0, r)
	b := make([]byte, 1400)
	n := 0
	allocs := testing.AllocsPerRun(1000, func() {
		tap.Inner(Out, 1, b)
		tap.Outer(In, 1, true, local, peer, b)
		n++
		for range 2 {
			if _, _, ok := r.TryNext(); ok {
				r.Release()
			}
		}
	})
	if allocs != 0 {
		t.Fatalf("%v allocations per packet", allocs)
	}
}

// A control tap takes only NHRP from the outer side; an inner tap nothing
// from it.
func TestTapPoints(t *testing.T) {
	r := NewRing(16, 0)
	nhrp := greBytes(0x2001, []byte{0, 1, 2, 3})
	data := greBytes(0x0800, ipv4(t, "10.1.1.10", "10.1.2.10", 1))
	NewTap(PointControl, 0, r).Outer(Out, 0, false, local, peer, data)
	NewTap(PointControl, 0, r).Outer(Out, 0, false, local, peer, nhrp)
	NewTap(PointControl, 0, r).Inner(Out, 0, data)
	NewTap(PointInner, 0, r).Outer(Out, 0, false, local, peer, nhrp)
	if r.Copied(Outer) != 1 || r.Copied(Inner) != 0 {
		t.Fatalf("copied outer %d inner %d, want 1, 0", r.Copied(Outer), r.Copied(Inner))
	}
}

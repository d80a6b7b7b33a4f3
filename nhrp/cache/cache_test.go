package cache

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
)

func TestCacheForwardExpireMulticast(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New()
	a := netip.MustParseAddr
	c.Put(Entry{Protocol: a("10.0.0.1"), NBMA: netip.MustParseAddrPort("192.0.2.1:0"), Transport: nbma.TransportGRE, Type: Static, NHS: true, Multicast: true})
	c.Put(Entry{Protocol: a("10.0.0.11"), NBMA: netip.MustParseAddrPort("198.51.100.1:4754"), Transport: nbma.TransportUDP, Type: Dynamic, Multicast: true, Expires: t0.Add(30 * time.Second)})
	c.Put(Entry{Protocol: a("10.0.0.12"), Type: Incomplete})
	c.Put(Entry{Protocol: a("10.0.0.13"), NBMA: netip.MustParseAddrPort("198.51.100.129:9000"), Type: Negative, Expires: t0.Add(5 * time.Second)})

	r := c.Reader()
	if ep, tr, ok := r.Forward(a("10.0.0.11")); !ok || ep.Port() != 4754 || tr != nbma.TransportUDP {
		t.Fatalf("forward dynamic: %v %v %v", ep, tr, ok)
	}
	for _, no := range []string{"10.0.0.12", "10.0.0.13", "10.0.0.99"} {
		if _, _, ok := r.Forward(a(no)); ok {
			t.Errorf("forwarded to %s", no)
		}
	}
	r.Release()
	if e, _ := c.Get(a("10.0.0.11")); !e.Used.Load() {
		t.Error("forwarding did not mark the entry used")
	}
	if m := c.Multicast(); len(m) != 2 {
		t.Fatalf("multicast peers %d", len(m))
	}
	if got := c.NextExpiry(); !got.Equal(t0.Add(5 * time.Second)) {
		t.Fatalf("next expiry %v", got)
	}
	if gone := c.Expire(t0.Add(29 * time.Second)); len(gone) != 1 || gone[0].Protocol != a("10.0.0.13") {
		t.Fatalf("expired %+v", gone)
	}
	if gone := c.Expire(t0.Add(30 * time.Second)); len(gone) != 1 {
		t.Fatalf("expired %+v", gone)
	}
	if m := c.Multicast(); len(m) != 1 || m[0].NBMA != netip.MustParseAddrPort("192.0.2.1:0") {
		t.Fatalf("multicast after expiry %+v", m)
	}
	if c.Len() != 2 {
		t.Fatalf("left %d", c.Len())
	}
	nat := Entry{Type: Dynamic, NAT: true}
	if nat.Attributes() != "DN" {
		t.Fatalf("attributes %q", nat.Attributes())
	}
}

func addrN(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
}

func nbmaN(i int) netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, byte(i >> 16), byte(i >> 8), byte(i)}), 0)
}

func TestLimitsEvictOldestUnusedLearned(t *testing.T) {
	c := NewWithLimits(Limits{MaxEntries: 4, MaxPerNBMA: 2})
	if err := c.Put(Entry{Protocol: addrN(1), NBMA: nbmaN(1), Type: Dynamic, Expires: t0(60)}); err != nil {
		t.Fatal(err)
	}
	for i := 2; i <= 4; i++ {
		if err := c.Put(Entry{Protocol: addrN(i), NBMA: nbmaN(i), Type: Resolved, Expires: t0(60)}); err != nil {
			t.Fatal(err)
		}
	}
	// 2 is the oldest learned entry, but it was used: 3 goes first.
	r := c.Reader()
	r.Forward(addrN(2))
	r.Release()
	if err := c.Put(Entry{Protocol: addrN(5), NBMA: nbmaN(5), Type: Resolved, Expires: t0(60)}); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Get(addrN(3)); ok {
		t.Fatal("evicted the wrong entry: 3 is still there")
	}
	for _, i := range []int{1, 2, 4, 5} {
		if _, ok := c.Get(addrN(i)); !ok {
			t.Fatalf("entry %d evicted", i)
		}
	}
	if c.Len() != 4 || c.Stats().Evicted != 1 {
		t.Fatalf("len %d stats %+v", c.Len(), c.Stats())
	}
	// Only registrations left to lose: a new one is refused, none evicted.
	c2 := NewWithLimits(Limits{MaxEntries: 2})
	_ = c2.Put(Entry{Protocol: addrN(1), NBMA: nbmaN(1), Type: Dynamic})
	_ = c2.Put(Entry{Protocol: addrN(2), NBMA: nbmaN(2), Type: Static})
	if err := c2.Put(Entry{Protocol: addrN(3), NBMA: nbmaN(3), Type: Dynamic}); err != ErrFull {
		t.Fatalf("put into a full cache of registrations: %v", err)
	}
	// Per NBMA address, whatever the port.
	ep := netip.MustParseAddrPort("203.0.113.66:4754")
	_ = c.Put(Entry{Protocol: addrN(10), NBMA: ep, Type: Resolved})
	_ = c.Put(Entry{Protocol: addrN(11), NBMA: netip.AddrPortFrom(ep.Addr(), 9), Type: Resolved})
	if err := c.Put(Entry{Protocol: addrN(12), NBMA: ep, Type: Resolved}); err != ErrNBMALimit {
		t.Fatalf("third entry at one NBMA address: %v", err)
	}
	if n := c.CountNBMA(ep.Addr()); n != 2 {
		t.Fatalf("count %d", n)
	}
	c.Delete(addrN(10))
	if n := c.CountNBMA(ep.Addr()); n != 1 {
		t.Fatalf("count after delete %d", n)
	}
}

func t0(sec int) time.Time {
	return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second)
}

// TestIndexesStayConsistent drives random operations and checks every
// index against the table after each one.
func TestIndexesStayConsistent(t *testing.T) {
	c := NewWithLimits(Limits{MaxEntries: 50, MaxPerNBMA: 5})
	seed := uint32(1)
	rnd := func(n int) int { seed = seed*1664525 + 1013904223; return int(seed>>8) % n }
	types := []Type{Static, Dynamic, Resolved, Negative, Incomplete}
	for step := 0; step < 20000; step++ {
		a := addrN(rnd(80))
		switch rnd(5) {
		case 0, 1:
			e := Entry{Protocol: a, NBMA: nbmaN(rnd(20)), Type: types[rnd(len(types))], Multicast: rnd(2) == 0}
			if rnd(3) > 0 {
				e.Expires = t0(rnd(100))
			}
			_ = c.Put(e)
		case 2:
			c.Delete(a)
		case 3:
			c.Update(a, func(e *Entry) { e.Expires = t0(rnd(100)); e.Multicast = !e.Multicast; e.NBMA = nbmaN(rnd(20)) })
		case 4:
			c.Expire(t0(rnd(100)))
		}
		checkIndexes(t, c)
	}
}

func checkIndexes(t *testing.T, c *Cache) {
	t.Helper()
	c.mu.RLock()
	defer c.mu.RUnlock()
	if len(c.entries) > c.lim.MaxEntries {
		t.Fatalf("%d entries > %d", len(c.entries), c.lim.MaxEntries)
	}
	per := map[netip.Addr]int{}
	mc, exp, ring := 0, 0, 0
	for _, it := range c.entries {
		if it.Type != Static && it.NBMA.Addr().IsValid() {
			per[it.NBMA.Addr()]++
		}
		if it.forwards() && it.Multicast {
			mc++
			if c.mcastOf[it.mcastIdx] != it || c.multicast[it.mcastIdx].NBMA != it.NBMA {
				t.Fatal("multicast index")
			}
		}
		if !it.Expires.IsZero() {
			exp++
			if c.expiry[it.heapIdx] != it {
				t.Fatal("heap index")
			}
		}
		if it.inRing {
			ring++
		}
	}
	for a, n := range per {
		if c.perNBMA[a] != n {
			t.Fatalf("perNBMA[%v] %d, want %d", a, c.perNBMA[a], n)
		}
	}
	if len(c.perNBMA) != len(per) || mc != len(c.multicast) || exp != len(c.expiry) {
		t.Fatalf("index sizes: per %d/%d multicast %d/%d expiry %d/%d", len(c.perNBMA), len(per), len(c.multicast), mc, len(c.expiry), exp)
	}
	for i := 1; i < len(c.expiry); i++ {
		if c.expiry[i].Expires.Before(c.expiry[(i-1)/2].Expires) {
			t.Fatal("heap order")
		}
	}
	n := 0
	if c.hand != nil {
		for it := c.hand; ; it = it.ring {
			n++
			if it.ring.prev != it || n > len(c.entries) {
				t.Fatal("ring links")
			}
			if it.ring == c.hand {
				break
			}
		}
	}
	if n != ring {
		t.Fatalf("ring %d, marked %d", n, ring)
	}
}

// BenchmarkRefresh is one registration refresh (replace an entry, move its
// expiry) in caches of 100 to 100,000 entries: the cost must not grow with
// the size.
func BenchmarkRefresh(b *testing.B) {
	for _, size := range []int{100, 10_000, 100_000} {
		b.Run(fmt.Sprint(size), func(b *testing.B) {
			c := NewWithLimits(Limits{MaxEntries: size + 1})
			for i := 0; i < size; i++ {
				_ = c.Put(Entry{Protocol: addrN(i), NBMA: nbmaN(i), Type: Dynamic, Multicast: true, Expires: t0(i % 600)})
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				k := i % size
				_ = c.Put(Entry{Protocol: addrN(k), NBMA: nbmaN(k), Type: Dynamic, Multicast: true, Expires: t0(600 + i%600)})
			}
		})
	}
}

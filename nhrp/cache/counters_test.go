package cache

import (
	"net/netip"
	"testing"
	"unsafe"

	"github.com/dmvpn/dmvpn/nbma"
)

// Put allocates an entry's counters once; a replacement at the same
// endpoint (a registration refresh) keeps them, a move starts new ones;
// Update keeps them; the data path's Reader methods count into them.
func TestPeerCountersReuse(t *testing.T) {
	a, ap := netip.MustParseAddr, netip.MustParseAddrPort
	c := New()
	ep := ap("198.51.100.1:4754")
	dyn := Entry{Protocol: a("10.0.0.11"), NBMA: ep, Transport: nbma.TransportUDP, Type: Dynamic, Multicast: true}
	if err := c.Put(dyn); err != nil {
		t.Fatal(err)
	}
	e, _ := c.Get(a("10.0.0.11"))
	pc := e.Counters
	if pc == nil {
		t.Fatal("Put gave the entry no counters")
	}
	r := c.Reader()
	_, _, got, ok := r.ForwardCounted(a("10.0.0.11"))
	r.Touch(ep, 1, 100)
	r.Touch(ep, 2, 50)
	r.Touch(ap("198.51.100.2:4754"), 3, 70) // nobody's
	r.Release()
	if !ok || got != pc {
		t.Fatalf("ForwardCounted: %p, %v; want the entry's %p", got, ok, pc)
	}
	got.Tx(1000)
	if rp, rb, tp, tb := pc.Load(); rp != 2 || rb != 150 || tp != 1 || tb != 1000 {
		t.Fatalf("counters %d/%d rx, %d/%d tx", rp, rb, tp, tb)
	}
	if m := c.Multicast(); len(m) != 1 || m[0].Counters != pc {
		t.Fatalf("multicast peer %+v, want the entry's counters", m)
	}

	// A refresh at the same endpoint keeps counting.
	if err := c.Put(dyn); err != nil {
		t.Fatal(err)
	}
	if e, _ := c.Get(a("10.0.0.11")); e.Counters != pc || pc.RxPackets.Load() != 2 {
		t.Fatalf("refresh: counters %p (was %p), %d packets", e.Counters, pc, pc.RxPackets.Load())
	}
	// Update keeps them, even if f clears the field.
	c.Update(a("10.0.0.11"), func(e *Entry) { e.Up = true; e.Counters = nil })
	if e, _ := c.Get(a("10.0.0.11")); e.Counters != pc {
		t.Fatal("Update lost the counters")
	}
	// A move to another endpoint starts from zero.
	moved := dyn
	moved.NBMA = ap("198.51.100.7:4754")
	if err := c.Put(moved); err != nil {
		t.Fatal(err)
	}
	e, _ = c.Get(a("10.0.0.11"))
	if e.Counters == pc || e.Counters == nil {
		t.Fatalf("moved: counters %p, old %p", e.Counters, pc)
	}
	if rp, _, tp, _ := e.Counters.Load(); rp != 0 || tp != 0 {
		t.Fatalf("moved entry's counters start at %d rx, %d tx", rp, tp)
	}

	// rx and tx are on different cache lines.
	var x PeerCounters
	if d := uintptr(unsafe.Pointer(&x.TxPackets)) - uintptr(unsafe.Pointer(&x.RxPackets)); d < 64 {
		t.Errorf("TxPackets is %d bytes from RxPackets", d)
	}
}

// TopPeers returns the busiest forwarding entries, at most n, and how many
// there are.
func TestTopPeers(t *testing.T) {
	a := netip.MustParseAddr
	c := New()
	for i := 1; i <= 10; i++ {
		ep := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}), 4754)
		if err := c.Put(Entry{Protocol: addrN(i), NBMA: ep, Transport: nbma.TransportUDP, Type: Dynamic}); err != nil {
			t.Fatal(err)
		}
		e, _ := c.Get(addrN(i))
		for range i % 5 { // 1 2 3 4 0 1 2 3 4 0
			e.Counters.Tx(10)
		}
		e.Counters.Rx(i)
	}
	c.Put(Entry{Protocol: a("10.9.9.9"), Type: Incomplete}) // not a peer
	top, n := c.TopPeers(3)
	if n != 10 || len(top) != 3 {
		t.Fatalf("%d peers, top %v", n, top)
	}
	// 5 packets: .4 and .9; 4: .3 and .8 (the lower address first).
	for i, want := range []int{4, 9, 3} {
		if top[i].Protocol != addrN(want) {
			t.Errorf("top[%d] = %v (%d packets), want %v", i, top[i].Protocol, top[i].RxPackets+top[i].TxPackets, addrN(want))
		}
	}
	if s := top[0]; s.RxPackets != 1 || s.RxBytes != 4 || s.TxPackets != 4 || s.TxBytes != 40 || s.NBMA.Addr() != a("198.51.100.4") {
		t.Errorf("top[0] %+v", s)
	}
	if all, n := c.TopPeers(100); len(all) != 10 || n != 10 {
		t.Errorf("TopPeers(100): %d of %d", len(all), n)
	}
	if none, n := c.TopPeers(0); none != nil || n != 0 {
		t.Errorf("TopPeers(0): %v, %d", none, n)
	}
}

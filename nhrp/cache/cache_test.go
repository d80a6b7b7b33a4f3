package cache

import (
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/underlay"
)

func TestCacheForwardExpireMulticast(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	c := New()
	a := netip.MustParseAddr
	c.Put(Entry{Protocol: a("10.0.0.1"), NBMA: netip.MustParseAddrPort("192.0.2.1:0"), Transport: underlay.TransportGRE, Type: Static, NHS: true, Multicast: true})
	c.Put(Entry{Protocol: a("10.0.0.11"), NBMA: netip.MustParseAddrPort("198.51.100.1:4754"), Transport: underlay.TransportUDP, Type: Dynamic, Multicast: true, Expires: t0.Add(30 * time.Second)})
	c.Put(Entry{Protocol: a("10.0.0.12"), Type: Incomplete})
	c.Put(Entry{Protocol: a("10.0.0.13"), NBMA: netip.MustParseAddrPort("198.51.100.129:9000"), Type: Negative, Expires: t0.Add(5 * time.Second)})

	r := c.Reader()
	if ep, tr, ok := r.Forward(a("10.0.0.11")); !ok || ep.Port() != 4754 || tr != underlay.TransportUDP {
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
	if m := c.Multicast(); len(m) != 1 || !m[0].NHS {
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

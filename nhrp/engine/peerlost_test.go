package engine

import (
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/nhrp"
)

// When a peer's path dies under NHRP (its IPsec SA), the hub forgets the
// registration at once and the spoke re-registers at once, and nothing
// else is touched.
func TestPeerLost(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	sp2 := w.add(ap("198.51.100.2:4754"), spokeConfig("10.0.0.12/24"))
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	sp2.eng.Start(t0)
	w.pump(t0)
	if hub.cache.Len() != 2 {
		t.Fatalf("hub has %d entries", hub.cache.Len())
	}

	t1 := t0.Add(5 * time.Second)
	if n := hub.eng.PeerLost(t1, ap("198.51.100.1:4754"), "sa-down"); n != 1 {
		t.Fatalf("hub PeerLost removed %d", n)
	}
	if _, ok := hub.cache.Get(ad("10.0.0.11")); ok {
		t.Fatal("the lost spoke's registration is still there")
	}
	if _, ok := hub.cache.Get(ad("10.0.0.12")); !ok {
		t.Fatal("the other spoke's registration went too")
	}

	before := w.sent(nhrp.TypeRegistrationRequest)
	if n := sp.eng.PeerLost(t1, ap("192.0.2.1:4754"), "sa-down"); n != 0 {
		t.Fatalf("spoke PeerLost removed %d mappings (the NHS's must stay)", n)
	}
	if st := sp.eng.NHSStatus()[0]; st.State != StateDown || st.LastError != "sa-down" {
		t.Fatalf("NHS status %+v", st)
	}
	if d := sp.eng.NextDeadline(); !d.Equal(t1) {
		t.Fatalf("next deadline %v, want now (%v): re-register at once", d, t1)
	}
	sp.eng.Tick(t1)
	w.pump(t1)
	if w.sent(nhrp.TypeRegistrationRequest) != before+1 {
		t.Fatal("no new registration")
	}
	if st := sp.eng.NHSStatus()[0]; st.State != StateUp {
		t.Fatalf("NHS status after re-registering %+v", st)
	}
	if _, ok := hub.cache.Get(ad("10.0.0.11")); !ok {
		t.Fatal("the hub did not learn the spoke again")
	}
}

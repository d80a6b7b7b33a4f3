package dataplane

import (
	"net/netip"
	"testing"

	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

func peerCounters(t *testing.T, p *Plane, addr string) (rxp, rxb, txp, txb uint64) {
	t.Helper()
	e, ok := p.cache.Get(ad(addr))
	if !ok {
		t.Fatalf("no entry for %s", addr)
	}
	return e.Counters.Load()
}

// N packets of a known size to a peer show in that peer's counters, and
// in nobody else's; bytes are the GRE packets' (8-byte header with a key).
func TestPeerCountersOverlay(t *testing.T) {
	const n, size, batches = 10, 700, 3
	pkts := make([][]byte, n)
	for i := range pkts {
		pkts[i] = ipv4Packet("10.1.0.10", "10.1.2.10", size) // via 10.0.0.12
	}
	dev := &fakeTun{pkts: pkts, batches: batches}
	conn := &fakeConn{t: nbma.TransportUDP}
	p := hubPlane(dev, conn)
	if err := p.RunOverlay(); err != nil {
		t.Fatal(err)
	}
	if rxp, rxb, txp, txb := peerCounters(t, p, "10.0.0.12"); rxp != 0 || rxb != 0 || txp != n*batches || txb != n*batches*(size+8) {
		t.Errorf("10.0.0.12: %d/%d rx, %d/%d tx; want 0/0, %d/%d", rxp, rxb, txp, txb, n*batches, n*batches*(size+8))
	}
	if rxp, _, txp, _ := peerCounters(t, p, "10.0.0.11"); rxp != 0 || txp != 0 {
		t.Errorf("10.0.0.11 counted %d rx, %d tx", rxp, txp)
	}
}

// Relayed packets count as received from the sender and sent to the
// next hop; everything that arrives from a peer counts as received from
// it, even what is then dropped (a wrong key).
func TestPeerCountersRelay(t *testing.T) {
	const size = 300
	frame := greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", size), 42)
	conn := &fakeConn{t: nbma.TransportUDP, from: netip.MustParseAddrPort("198.51.100.1:4754"), batches: 4, in: [][]byte{
		frame, frame, greFrame(ipv4Packet("10.1.1.10", "10.1.0.10", 100), 42), greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 100), 43),
	}}
	p := hubPlane(&fakeTun{}, conn)
	if err := p.RunUnderlay(conn); err != nil {
		t.Fatal(err)
	}
	wantRx := uint64(4 * (2*len(frame) + 2*(100+8)))
	if rxp, rxb, txp, txb := peerCounters(t, p, "10.0.0.11"); rxp != 16 || rxb != wantRx || txp != 0 || txb != 0 {
		t.Errorf("10.0.0.11: %d/%d rx, %d/%d tx; want 16/%d, 0/0", rxp, rxb, txp, txb, wantRx)
	}
	if rxp, _, txp, txb := peerCounters(t, p, "10.0.0.12"); rxp != 0 || txp != 8 || txb != uint64(8*(size+8)) {
		t.Errorf("10.0.0.12: %d rx, %d/%d tx; want 0, 8/%d", rxp, txp, txb, 8*(size+8))
	}
}

// Multicast copies count per peer.
func TestPeerCountersMulticast(t *testing.T) {
	p := hubPlane(&fakeTun{pkts: [][]byte{ipv4Packet("10.0.0.1", "224.0.0.5", 100)}, batches: 2}, &fakeConn{t: nbma.TransportUDP})
	for _, a := range []string{"10.0.0.11", "10.0.0.12"} {
		p.cache.Update(ad(a), func(e *cache.Entry) { e.Multicast = true })
	}
	if err := p.RunOverlay(); err != nil {
		t.Fatal(err)
	}
	for _, a := range []string{"10.0.0.11", "10.0.0.12"} {
		if _, _, txp, txb := peerCounters(t, p, a); txp != 2 || txb != 2*108 {
			t.Errorf("%s: %d/%d tx, want 2/216", a, txp, txb)
		}
	}
}

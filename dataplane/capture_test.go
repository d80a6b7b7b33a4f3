package dataplane

import (
	"bytes"
	"errors"
	"net/netip"
	"sync"
	"testing"

	"github.com/dmvpn/dmvpn/capture"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/nbma"
)

type record struct {
	m    capture.Meta
	data []byte
}

// drain takes every record out of r.
func drain(r *capture.Ring) []record {
	var v []record
	for {
		m, data, ok := r.TryNext()
		if !ok {
			return v
		}
		v = append(v, record{*m, bytes.Clone(data)})
		r.Release()
	}
}

func attach(t *testing.T, p *Plane, points capture.Points) *capture.Ring {
	t.Helper()
	r := capture.NewRing(capture.DefaultSlots, capture.DefaultBytes)
	remove, err := p.AddTap(capture.NewTap(points, 0, r))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(remove)
	return r
}

// What the overlay reader reads from the TUN is captured inner (out), and
// what it hands the socket outer (out), byte for byte.
func TestTapOverlayToUnderlay(t *testing.T) {
	pkts := [][]byte{ipv4Packet("10.1.0.10", "10.1.2.10", 100), ipv4Packet("10.1.0.10", "10.1.1.10", 1400), ipv4Packet("10.1.0.10", "10.9.9.9", 60)}
	dev := &fakeTun{pkts: pkts, batches: 1}
	conn := &fakeConn{t: nbma.TransportUDP}
	p := hubPlane(dev, conn)
	r := attach(t, p, capture.PointInner|capture.PointOuter)
	if err := p.RunOverlay(); err != nil {
		t.Fatal(err)
	}
	recs := drain(r)
	if len(recs) != 3+2 { // three read, two sent (10.9.9.9 has no route)
		t.Fatalf("%d records", len(recs))
	}
	for i, p := range pkts {
		if rec := recs[i]; rec.m.Point != capture.Inner || rec.m.Dir != capture.Out || !bytes.Equal(rec.data, p) || rec.m.Len != len(p) {
			t.Errorf("record %d: %+v", i, rec.m)
		}
	}
	if len(conn.last) != 2 {
		t.Fatalf("sent %d", len(conn.last))
	}
	for i, d := range conn.last {
		rec := recs[3+i]
		if rec.m.Point != capture.Outer || rec.m.Dir != capture.Out || !rec.m.UDP || rec.m.Peer != d.Peer || !bytes.Equal(rec.data, d.Payload()) {
			t.Errorf("outer record %d: %+v, sent to %v", i, rec.m, d.Peer)
		}
		if h, inner, err := gre.Decode(rec.data); err != nil || h.Key != 42 || !bytes.Equal(inner, pkts[i]) {
			t.Errorf("outer record %d: GRE %+v %v", i, h, err)
		}
	}
	if s := p.Stats(); s.OverlayRx != 3 || s.NoRoute != 1 {
		t.Errorf("stats %+v", s)
	}
}

// The underlay reader: every datagram received is captured outer (in) as
// it arrived, the one delivered to the TUN inner (in), the relayed one
// outer (out) as sent.
func TestTapUnderlay(t *testing.T) {
	deliver := ipv4Packet("10.1.1.10", "10.1.0.10", 100)
	in := [][]byte{
		greFrame(deliver, 42), // to the hub's LAN: TUN
		greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 100), 42), // relayed
		greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 100), 43), // wrong key
	}
	from := netip.MustParseAddrPort("198.51.100.1:4754")
	dev := &fakeTun{}
	conn := &fakeConn{t: nbma.TransportUDP, from: from, batches: 1, in: in}
	p := hubPlane(dev, conn)
	r := attach(t, p, capture.PointInner|capture.PointOuter)
	if err := p.RunUnderlay(conn); err != nil {
		t.Fatal(err)
	}
	recs := drain(r)
	if len(recs) != 3+1+1 {
		t.Fatalf("%d records: %+v", len(recs), recs)
	}
	for i, b := range in {
		if rec := recs[i]; rec.m.Point != capture.Outer || rec.m.Dir != capture.In || rec.m.Peer != from || !bytes.Equal(rec.data, b) {
			t.Errorf("record %d: %+v", i, rec.m)
		}
	}
	if rec := recs[3]; rec.m.Point != capture.Inner || rec.m.Dir != capture.In || !bytes.Equal(rec.data, deliver) {
		t.Errorf("delivered: %+v", rec.m)
	}
	if rec := recs[4]; rec.m.Point != capture.Outer || rec.m.Dir != capture.Out || rec.m.Peer != conn.last[0].Peer || !bytes.Equal(rec.data, conn.last[0].Payload()) {
		t.Errorf("relayed: %+v", rec.m)
	}
	if _, inner, _ := gre.Decode(recs[4].data); inner[8] != 63 {
		t.Errorf("relayed packet captured with TTL %d, want 63 (as sent)", inner[8])
	}
	if dev.written.Load() != 1 || p.Stats().Hairpinned != 1 {
		t.Errorf("written %d, stats %+v", dev.written.Load(), p.Stats())
	}
}

// A control tap sees NHRP, sent and received, and no data.
func TestTapControl(t *testing.T) {
	from := netip.MustParseAddrPort("198.51.100.1:4754")
	nhrpIn := func() []byte {
		buf := make([]byte, 64+20)
		h := gre.Header{KeyPresent: true, Key: 42, Protocol: gre.ProtoNHRP}
		start, _ := gre.Encapsulate(buf, 64, &h)
		return buf[start:]
	}()
	conn := &fakeConn{t: nbma.TransportUDP, from: from, batches: 1, in: [][]byte{
		nhrpIn, greFrame(ipv4Packet("10.1.1.10", "10.1.0.10", 100), 42),
	}}
	p := hubPlane(&fakeTun{}, conn)
	r := attach(t, p, capture.PointControl)
	p.SendNHRP(from, nbma.TransportUDP, make([]byte, 40))
	if err := p.RunUnderlay(conn); err != nil {
		t.Fatal(err)
	}
	recs := drain(r)
	if len(recs) != 2 || recs[0].m.Dir != capture.Out || !capture.IsNHRP(recs[0].data) || len(recs[0].data) != 48 ||
		recs[1].m.Dir != capture.In || !bytes.Equal(recs[1].data, nhrpIn) {
		t.Fatalf("records %+v", recs)
	}
}

func TestAddTapBounded(t *testing.T) {
	p := hubPlane(&fakeTun{}, &fakeConn{t: nbma.TransportUDP})
	var removes []func()
	for range MaxTaps {
		rm, err := p.AddTap(capture.NewTap(capture.PointInner, 0, capture.NewRing(4, 0)))
		if err != nil {
			t.Fatal(err)
		}
		removes = append(removes, rm)
	}
	if _, err := p.AddTap(capture.NewTap(capture.PointInner, 0, capture.NewRing(4, 0))); !errors.Is(err, ErrTooManyTaps) {
		t.Fatalf("tap %d: %v", MaxTaps+1, err)
	}
	removes[0]()
	removes[0]() // twice: harmless
	if _, err := p.AddTap(capture.NewTap(capture.PointInner, 0, capture.NewRing(4, 0))); err != nil {
		t.Fatalf("after a removal: %v", err)
	}
	for _, rm := range removes[1:] {
		rm()
	}
	if l := p.taps.Load(); l == nil || len(*l) != 1 {
		t.Fatalf("taps %v", l)
	}
}

// With a capture running (and a consumer draining it), forwarding still
// allocates nothing per packet or batch.
func TestForwardingAllocationsWithTap(t *testing.T) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = ipv4Packet("10.1.0.10", "10.1.2.10", 1400)
	}
	dev := &fakeTun{pkts: pkts}
	conn := &fakeConn{t: nbma.TransportUDP}
	p := hubPlane(dev, conn)
	in := make([][]byte, 64)
	for i := range in {
		in[i] = greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 1400), 42)
	}
	c2 := &fakeConn{t: nbma.TransportUDP, from: netip.MustParseAddrPort("198.51.100.1:4754"), in: in}
	p2 := hubPlane(&fakeTun{}, c2)

	r := capture.NewRing(capture.DefaultSlots, capture.DefaultBytes)
	tap := capture.NewTap(capture.PointInner|capture.PointOuter, 0, r)
	for _, pl := range []*Plane{p, p2} {
		rm, err := pl.AddTap(tap)
		if err != nil {
			t.Fatal(err)
		}
		defer rm()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			if _, _, ok := r.Next(stop); !ok {
				return
			}
			r.Release()
		}
	}()
	run := func(batches int) float64 {
		return testing.AllocsPerRun(3, func() { dev.batches = batches; _ = p.RunOverlay() })
	}
	if few, many := run(1), run(200); many > few+1 {
		t.Errorf("overlay path with a tap allocates per batch: %v allocs for 1 batch, %v for 200", few, many)
	}
	run2 := func(batches int) float64 {
		return testing.AllocsPerRun(3, func() { c2.batches = batches; _ = p2.RunUnderlay(c2) })
	}
	if few, many := run2(1), run2(200); many > few+1 {
		t.Errorf("underlay path with a tap allocates per batch: %v allocs for 1 batch, %v for 200", few, many)
	}
	close(stop)
	wg.Wait()
	if r.Copied(capture.Inner) == 0 || r.Copied(capture.Outer) == 0 {
		t.Fatalf("the tap copied nothing: inner %d outer %d", r.Copied(capture.Inner), r.Copied(capture.Outer))
	}
	t.Logf("copied inner %d outer %d, dropped %d/%d", r.Copied(capture.Inner), r.Copied(capture.Outer), r.Dropped(capture.Inner), r.Dropped(capture.Outer))
}

// BenchmarkOverlayToUnderlayTapped is BenchmarkOverlayToUnderlay with an
// inner and outer capture running, drained by a consumer.
func BenchmarkOverlayToUnderlayTapped(b *testing.B) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = ipv4Packet("10.1.0.10", "10.1.2.10", 1400)
	}
	dev := &fakeTun{pkts: pkts}
	conn := &fakeConn{t: nbma.TransportUDP}
	p := hubPlane(dev, conn)
	r := capture.NewRing(capture.DefaultSlots, capture.DefaultBytes)
	rm, err := p.AddTap(capture.NewTap(capture.PointInner|capture.PointOuter, 0, r))
	if err != nil {
		b.Fatal(err)
	}
	defer rm()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			if _, _, ok := r.Next(stop); !ok {
				return
			}
			r.Release()
		}
	}()
	dev.batches = 1
	_ = p.RunOverlay()
	b.ReportAllocs()
	b.SetBytes(1400 * 64)
	dev.batches = b.N
	b.ResetTimer()
	if err := p.RunOverlay(); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	close(stop)
	<-done
	b.ReportMetric(float64(r.Dropped(capture.Inner)+r.Dropped(capture.Outer))/float64(b.N*128), "dropped/pkt")
}

package dataplane

import (
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"testing"

	"golang.zx2c4.com/wireguard/tun"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp/cache"
	"github.com/dmvpn/dmvpn/underlay"
)

var (
	ad  = netip.MustParseAddr
	pfx = netip.MustParsePrefix
)

func ipv4Packet(src, dst string, size int) []byte {
	pkt := make([]byte, size)
	inet.PutIPv4Header(pkt, ad(src), ad(dst), inet.ProtoUDP, size-20, 7)
	return pkt
}

func TestInnerDstMulticastTTL(t *testing.T) {
	d, proto, ok := innerDst(ipv4Packet("10.1.1.10", "10.1.2.10", 60))
	if !ok || d != ad("10.1.2.10") || proto != gre.ProtoIPv4 {
		t.Fatalf("v4: %v %x %v", d, proto, ok)
	}
	v6 := make([]byte, 40)
	v6[0] = 0x60
	copy(v6[24:], ad("fd00::12").AsSlice())
	if d, proto, ok := innerDst(v6); !ok || d != ad("fd00::12") || proto != gre.ProtoIPv6 {
		t.Fatalf("v6: %v %x %v", d, proto, ok)
	}
	for _, bad := range [][]byte{nil, {0x45}, make([]byte, 39), {0x10, 0, 0}} {
		if _, _, ok := innerDst(bad); ok {
			t.Fatalf("accepted %x", bad)
		}
	}
	subnet := pfx("10.0.0.0/24")
	for dst, want := range map[string]bool{"224.0.0.5": true, "10.0.0.255": true, "10.0.0.12": false, "10.1.0.255": false, "ff02::5": true} {
		if got := isMulticast(ad(dst), subnet); got != want {
			t.Errorf("isMulticast(%s) = %v", dst, got)
		}
	}
	pkt := ipv4Packet("10.1.1.10", "10.1.2.10", 60)
	for ttl := 64; ttl > 1; ttl-- {
		if !decTTL(pkt) {
			t.Fatalf("dropped at ttl %d", ttl)
		}
		if inet.Checksum(pkt[:20]) != 0 {
			t.Fatalf("checksum wrong at ttl %d: %x", pkt[8], pkt[:20])
		}
	}
	if decTTL(pkt) {
		t.Fatal("forwarded a packet with TTL 1")
	}
}

// fakeTun feeds the same batch of packets to Read a fixed number of times
// and counts what is written.
type fakeTun struct {
	pkts    [][]byte
	batches int
	written atomic.Int64
}

func (f *fakeTun) File() *os.File { return nil }
func (f *fakeTun) Read(bufs [][]byte, sizes []int, offset int) (int, error) {
	if f.batches == 0 {
		return 0, os.ErrClosed
	}
	f.batches--
	for i, p := range f.pkts {
		sizes[i] = copy(bufs[i][offset:], p)
	}
	return len(f.pkts), nil
}
func (f *fakeTun) Write(bufs [][]byte, offset int) (int, error) {
	f.written.Add(int64(len(bufs)))
	return len(bufs), nil
}
func (f *fakeTun) MTU() (int, error)        { return 1400, nil }
func (f *fakeTun) Name() (string, error)    { return "fake", nil }
func (f *fakeTun) Events() <-chan tun.Event { return nil }
func (f *fakeTun) Close() error             { return nil }
func (f *fakeTun) BatchSize() int           { return 64 }

// fakeConn delivers the same GRE batch a fixed number of times and records
// what is sent.
type fakeConn struct {
	t       nbma.Transport
	in      [][]byte
	from    netip.AddrPort
	batches int
	sent    atomic.Int64
	last    []underlay.Datagram
}

func (c *fakeConn) ReadBatch(ds []underlay.Datagram) (int, error) {
	if c.batches == 0 {
		return 0, net.ErrClosed
	}
	c.batches--
	for i, p := range c.in {
		ds[i].Len = copy(ds[i].Buf[ds[i].Off:], p)
		ds[i].Peer = c.from
	}
	return len(c.in), nil
}
func (c *fakeConn) WriteBatch(ds []underlay.Datagram) (int, error) {
	c.sent.Add(int64(len(ds)))
	c.last = append(c.last[:0], ds...)
	return len(ds), nil
}
func (c *fakeConn) BatchSize() int            { return 64 }
func (c *fakeConn) Transport() nbma.Transport { return c.t }
func (c *fakeConn) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (c *fakeConn) Close() error              { return nil }

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// hubPlane is a hub at 10.0.0.1 with spokes .11 and .12 registered.
func hubPlane(dev tun.Device, conn underlay.Conn) *Plane {
	f := fib.New()
	f.Add(fib.Route{Prefix: pfx("10.0.0.0/24"), Source: fib.SourceConnected})
	f.Add(fib.Route{Prefix: pfx("10.1.1.0/24"), NextHop: ad("10.0.0.11"), Source: fib.SourceStatic})
	f.Add(fib.Route{Prefix: pfx("10.1.2.0/24"), NextHop: ad("10.0.0.12"), Source: fib.SourceStatic})
	c := cache.New()
	c.Put(cache.Entry{Protocol: ad("10.0.0.11"), NBMA: netip.MustParseAddrPort("198.51.100.1:4754"), Transport: nbma.TransportUDP, Type: cache.Dynamic})
	c.Put(cache.Entry{Protocol: ad("10.0.0.12"), NBMA: netip.MustParseAddrPort("198.51.100.65:4754"), Transport: nbma.TransportUDP, Type: cache.Dynamic})
	cfg := Config{Key: 42, KeyPresent: true, Local: ad("10.0.0.1"), Subnet: pfx("10.0.0.0/24"), Host: localroute.NewStatic(pfx("10.1.0.0/24"))}
	return New(cfg, dev, []underlay.Conn{conn}, f, c, nil, quiet())
}

func greFrame(inner []byte, key uint32) []byte {
	buf := make([]byte, 64+len(inner))
	copy(buf[64:], inner)
	h := gre.Header{KeyPresent: true, Key: key, Protocol: gre.ProtoIPv4}
	start, _ := gre.Encapsulate(buf, 64, &h)
	return buf[start:]
}

func TestUnderlayDeliverRelayAndKeyCheck(t *testing.T) {
	dev := &fakeTun{}
	conn := &fakeConn{t: nbma.TransportUDP, from: netip.MustParseAddrPort("198.51.100.1:4754"), batches: 1, in: [][]byte{
		greFrame(ipv4Packet("10.1.1.10", "10.1.0.10", 100), 42), // to the hub's LAN: TUN
		greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 100), 42), // spoke to spoke: relayed
		greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 100), 43), // wrong key: dropped
		greFrame(ipv4Packet("10.1.1.10", "10.1.1.20", 100), 42), // back to the sender: loop, dropped
	}}
	p := hubPlane(dev, conn)
	if err := p.RunUnderlay(conn); err != nil {
		t.Fatal(err)
	}
	s := p.Stats()
	if dev.written.Load() != 1 || s.Hairpinned != 1 || s.KeyMismatch != 1 || s.Loop != 1 {
		t.Fatalf("tun writes %d, stats %+v", dev.written.Load(), s)
	}
	d := conn.last[0]
	if d.Peer != netip.MustParseAddrPort("198.51.100.65:4754") {
		t.Fatalf("relayed to %v", d.Peer)
	}
	h, inner, err := gre.Decode(d.Payload())
	if err != nil || h.Key != 42 || h.Protocol != gre.ProtoIPv4 || inner[8] != 63 || inet.Checksum(inner[:20]) != 0 {
		t.Fatalf("relayed packet: %+v ttl %d err %v", h, inner[8], err)
	}
}

func BenchmarkOverlayToUnderlay(b *testing.B) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = ipv4Packet("10.1.0.10", "10.1.2.10", 1400)
	}
	dev := &fakeTun{pkts: pkts}
	conn := &fakeConn{t: nbma.TransportUDP}
	p := hubPlane(dev, conn)
	dev.batches = 1
	_ = p.RunOverlay() // warm up: allocate the goroutine's buffers
	b.ReportAllocs()
	b.SetBytes(1400 * 64)
	dev.batches = b.N
	b.ResetTimer()
	// Allocations are per batch of 64 packets; RunOverlay's own setup
	// (buffers) is amortized over b.N batches.
	if err := p.RunOverlay(); err != nil {
		b.Fatal(err)
	}
	if conn.sent.Load() < int64(64*b.N) {
		b.Fatalf("sent %d", conn.sent.Load())
	}
}

func BenchmarkUnderlayRelay(b *testing.B) {
	in := make([][]byte, 64)
	for i := range in {
		in[i] = greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 1400), 42)
	}
	conn := &fakeConn{t: nbma.TransportUDP, from: netip.MustParseAddrPort("198.51.100.1:4754"), in: in}
	p := hubPlane(&fakeTun{}, conn)
	b.ReportAllocs()
	b.SetBytes(1400 * 64)
	conn.batches = b.N
	b.ResetTimer()
	if err := p.RunUnderlay(conn); err != nil {
		b.Fatal(err)
	}
	if p.Stats().Hairpinned != uint64(64*b.N) {
		b.Fatalf("relayed %d", p.Stats().Hairpinned)
	}
}

// TestForwardingAllocations pins the hot paths at zero allocations per
// packet: a whole RunOverlay/RunUnderlay over many batches allocates only
// its fixed setup.
func TestForwardingAllocations(t *testing.T) {
	pkts := make([][]byte, 64)
	for i := range pkts {
		pkts[i] = ipv4Packet("10.1.0.10", "10.1.2.10", 1400)
	}
	dev := &fakeTun{pkts: pkts}
	conn := &fakeConn{t: nbma.TransportUDP}
	p := hubPlane(dev, conn)
	run := func(batches int) float64 {
		return testing.AllocsPerRun(3, func() { dev.batches = batches; _ = p.RunOverlay() })
	}
	if few, many := run(1), run(200); many > few+1 {
		t.Fatalf("overlay path allocates per batch: %v allocs for 1 batch, %v for 200", few, many)
	}
	in := make([][]byte, 64)
	for i := range in {
		in[i] = greFrame(ipv4Packet("10.1.1.10", "10.1.2.10", 1400), 42)
	}
	c2 := &fakeConn{t: nbma.TransportUDP, from: netip.MustParseAddrPort("198.51.100.1:4754"), in: in}
	p2 := hubPlane(&fakeTun{}, c2)
	run2 := func(batches int) float64 {
		return testing.AllocsPerRun(3, func() { c2.batches = batches; _ = p2.RunUnderlay(c2) })
	}
	if few, many := run2(1), run2(200); many > few+1 {
		t.Fatalf("underlay path allocates per batch: %v allocs for 1 batch, %v for 200", few, many)
	}
}

// TestMulticastToManyPeers: a hub with 1,000 registered spokes sends each
// overlay multicast packet to all of them from one encapsulation (every
// datagram points at the same bytes), in batches no larger than the
// socket's, and allocates nothing per peer or per packet.
func TestMulticastToManyPeers(t *testing.T) {
	const peers = 1000
	f := fib.New()
	f.Add(fib.Route{Prefix: pfx("10.0.0.0/16"), Source: fib.SourceConnected})
	c := cache.New()
	for i := 0; i < peers; i++ {
		c.Put(cache.Entry{Protocol: netip.AddrFrom4([4]byte{10, 0, byte(1 + i>>8), byte(i)}),
			NBMA:      netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, byte(i >> 8), byte(i)}), 4754),
			Transport: nbma.TransportUDP, Type: cache.Dynamic, Multicast: true})
	}
	pkts := [][]byte{ipv4Packet("10.0.0.1", "224.0.0.5", 100), ipv4Packet("10.0.0.1", "224.0.0.5", 120)}
	dev := &fakeTun{pkts: pkts}
	conn := &batchConn{fakeConn: fakeConn{t: nbma.TransportUDP}}
	p := New(Config{Key: 42, KeyPresent: true, Local: ad("10.0.0.1"), Subnet: pfx("10.0.0.0/16")}, dev, []underlay.Conn{conn}, f, c, nil, quiet())
	dev.batches = 1
	if err := p.RunOverlay(); err != nil {
		t.Fatal(err)
	}
	if got := conn.sent.Load(); got != 2*peers {
		t.Fatalf("%d datagrams, want %d", got, 2*peers)
	}
	if conn.largest > 2*conn.BatchSize() {
		t.Fatalf("a batch of %d datagrams", conn.largest)
	}
	if conn.distinctBufs != 2 {
		t.Fatalf("%d distinct buffers for 2 packets: copied per peer", conn.distinctBufs)
	}
	if s := p.Stats(); s.Multicast != 2*peers {
		t.Fatalf("stats %+v", s)
	}
	run := func(batches int) float64 {
		return testing.AllocsPerRun(3, func() { dev.batches = batches; _ = p.RunOverlay() })
	}
	if few, many := run(1), run(50); many > few+1 {
		t.Fatalf("multicast allocates per batch: %v allocs for 1 batch, %v for 50", few, many)
	}
}

// batchConn records batch sizes and how many distinct buffers were sent.
type batchConn struct {
	fakeConn
	largest      int
	bufs         map[*byte]bool
	distinctBufs int
}

func (c *batchConn) WriteBatch(ds []underlay.Datagram) (int, error) {
	c.largest = max(c.largest, len(ds))
	if c.bufs == nil {
		c.bufs = map[*byte]bool{}
	}
	for _, d := range ds {
		if k := &d.Buf[0]; !c.bufs[k] {
			c.bufs[k] = true
			c.distinctBufs++
		}
	}
	c.sent.Add(int64(len(ds)))
	return len(ds), nil
}

package engine

// Control-plane benchmarks: the cost of one event must not depend on how
// many peers the engine knows. Each iteration is what the node does per
// packet: HandlePacket, then NextDeadline.
//
//	go test ./nhrp/engine -run '^$' -bench . -benchmem

import (
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

type nopSender struct{ n int }

func (s *nopSender) SendNHRP(netip.AddrPort, nbma.Transport, []byte) { s.n++ }

// benchSpoke is spoke i of a big cloud: overlay 10.x.y.z/8, NBMA 198.x.y.z.
func benchSpoke(i int) (netip.Addr, netip.AddrPort) {
	i += 2
	return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}),
		netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, byte(i >> 16), byte(i >> 8), byte(i)}), 0)
}

func benchRegistration(b testing.TB, i int, id uint32) []byte {
	addr, ep := benchSpoke(i)
	p := &nhrp.Packet{Type: nhrp.TypeRegistrationRequest, HopCount: 255, SrcNBMA: ep.Addr(), SrcProto: addr,
		DstProto: ad("10.0.0.1"), RequestID: id, Flags: nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT,
		CIEs: []nhrp.CIE{{PrefixLength: 32, MTU: 1400, HoldingTime: 600}}}
	nat := nhrp.NewNATAddress(nhrp.CIE{PrefixLength: 32, NBMA: ad("192.0.2.1"), Protocol: ad("10.0.0.1")})
	p.Extensions = nhrp.StandardRequestExtensions(nil, nil, &nat)
	pkt, err := p.AppendEncode(nil)
	if err != nil {
		b.Fatal(err)
	}
	return pkt
}

func benchHub(b testing.TB, n int) (*Engine, *cache.Cache) {
	c := cache.NewWithLimits(cache.Limits{MaxEntries: n + 16})
	e, err := New(Config{Address: pfx("10.0.0.1/8"), NBMA: ad("192.0.2.1"), MTU: 1400, Holdtime: 600 * time.Second,
		Server: true, Seed: [32]byte{7}}, c, &nopSender{}, quiet())
	if err != nil {
		b.Fatal(err)
	}
	e.Start(t0)
	for i := 0; i < n; i++ {
		_, ep := benchSpoke(i)
		e.HandlePacket(t0, ep, nbma.TransportGRE, benchRegistration(b, i, uint32(i+1)))
	}
	if c.Len() != n {
		b.Fatalf("%d registered, want %d", c.Len(), n)
	}
	return e, c
}

var sizes = []int{100, 10_000, 100_000}

// BenchmarkRegistrationRefresh: one spoke refreshing its registration at a
// hub holding n registrations.
func BenchmarkRegistrationRefresh(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e, _ := benchHub(b, n)
			const k = 1024
			pkts := make([][]byte, k)
			for j := range pkts {
				pkts[j] = benchRegistration(b, j*(n/k+1)%n, uint32(j+7))
			}
			now := t0.Add(time.Second)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				j := i % k
				_, ep := benchSpoke(j * (n/k + 1) % n)
				e.HandlePacket(now, ep, nbma.TransportGRE, pkts[j])
				e.NextDeadline()
			}
		})
	}
}

// BenchmarkResolutionForward: a Resolution Request from one registered
// spoke for another, forwarded by a hub holding n registrations.
func BenchmarkResolutionForward(b *testing.B) {
	for _, n := range sizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			e, _ := benchHub(b, n)
			const k = 1024
			type req struct {
				from netip.AddrPort
				pkt  []byte
			}
			reqs := make([]req, k)
			for j := range reqs {
				src, from := benchSpoke(j * (n/k + 1) % n)
				dst, _ := benchSpoke((j*(n/k+1) + n/2 + 1) % n)
				p := &nhrp.Packet{Type: nhrp.TypeResolutionRequest, HopCount: 255, SrcNBMA: from.Addr(), SrcProto: src,
					DstProto: dst, RequestID: uint32(j + 1), Flags: nhrp.FlagResolutionQ,
					CIEs: []nhrp.CIE{{PrefixLength: 32, MTU: 1400, HoldingTime: 600}}}
				p.Extensions = nhrp.StandardRequestExtensions(nil, nil, nil)
				pkt, err := p.AppendEncode(nil)
				if err != nil {
					b.Fatal(err)
				}
				reqs[j] = req{from, pkt}
			}
			s := e.send.(*nopSender)
			s.n = 0
			now := t0.Add(time.Second)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r := reqs[i%k]
				e.HandlePacket(now, r.from, nbma.TransportGRE, r.pkt)
				e.NextDeadline()
			}
			b.StopTimer()
			if s.n == 0 {
				b.Fatal("nothing forwarded")
			}
		})
	}
}

// BenchmarkRegistrationBurst: 10,000 spokes register with a fresh hub, as
// after a hub restart. It reports registrations per second (one core, no
// crypto) and the memory each registered spoke costs.
func BenchmarkRegistrationBurst(b *testing.B) {
	const spokes = 10_000
	pkts := make([][]byte, spokes)
	for i := range pkts {
		pkts[i] = benchRegistration(b, i, uint32(i+1))
	}
	var perSpoke float64
	b.ReportAllocs()
	for b.Loop() {
		runtime.GC()
		var m0, m1 runtime.MemStats
		runtime.ReadMemStats(&m0)
		c := cache.NewWithLimits(cache.Limits{MaxEntries: spokes + 16})
		e, err := New(Config{Address: pfx("10.0.0.1/8"), NBMA: ad("192.0.2.1"), MTU: 1400, Holdtime: 600 * time.Second,
			Server: true, Seed: [32]byte{7}}, c, &nopSender{}, quiet())
		if err != nil {
			b.Fatal(err)
		}
		e.Start(t0)
		for i, p := range pkts {
			_, ep := benchSpoke(i)
			e.HandlePacket(t0, ep, nbma.TransportGRE, p)
			e.NextDeadline()
		}
		b.StopTimer()
		runtime.GC()
		runtime.ReadMemStats(&m1)
		if c.Len() != spokes {
			b.Fatalf("%d registered", c.Len())
		}
		perSpoke = float64(m1.HeapAlloc-m0.HeapAlloc) / spokes
		runtime.KeepAlive(e)
		b.StartTimer()
	}
	b.ReportMetric(float64(spokes)*float64(b.N)/b.Elapsed().Seconds(), "registrations/s")
	b.ReportMetric(perSpoke, "B/spoke")
}

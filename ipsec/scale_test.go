package ipsec_test

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ipsec"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// peerAddr is the n-th of many peers (10.0.0.0/8 NBMA space).
func peerAddr(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, byte(n >> 16), byte(n >> 8), byte(n)})
}

// BenchmarkScale: the per-event costs of the SA database do not grow with
// the number of peers — installing and retiring one peer's SA pair (an
// IKE event) and sealing a packet for a peer (a lookup per datagram) at
// 100, 10,000 and 100,000 installed SA pairs.
func BenchmarkScale(b *testing.B) {
	for _, peers := range []int{100, 10_000, 100_000} {
		clk := clock.NewFake(time.Unix(1e9, 0))
		out := &chanConn{t: nbma.TransportGRE, noKeep: true}
		l := ipsec.New(ipsec.Config{Local: addrA, Raw: out, Now: clk.Now})
		for i := range peers {
			c, _ := childPair(esp.GCM128, addrA, peerAddr(i), uint32(0x10000000+i), uint32(0x20000000+i), false, false)
			if err := l.Install(c, ipsec.Now); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(fmt.Sprintf("install+remove/peers=%d", peers), func(b *testing.B) {
			spi := uint32(0x30000000)
			for i := 0; b.Loop(); i++ {
				spi++
				c, _ := childPair(esp.GCM128, addrA, peerAddr(peers+i%1000), spi, spi+0x1000000, false, false)
				if err := l.Install(c, ipsec.Now); err != nil {
					b.Fatal(err)
				}
				l.Remove(spi)
				if i%1000 == 999 {
					clk.Advance(ipsec.DefaultLinger)
					l.Expire(clk.Now())
				}
			}
		})
		b.Run(fmt.Sprintf("seal/peers=%d", peers), func(b *testing.B) {
			f := l.Face(nbma.TransportGRE)
			d := greDatagram(netip.AddrPortFrom(peerAddr(peers/2), 0), string(make([]byte, 1400)))
			off, n := d.Off, d.Len
			ds := []underlay.Datagram{d}
			b.SetBytes(int64(n))
			for b.Loop() {
				ds[0].Off, ds[0].Len = off, n
				f.WriteBatch(ds)
			}
		})
	}
}

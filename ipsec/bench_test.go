package ipsec_test

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/ipsec"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
)

// The ESP layer's per-packet cost, as the data plane pays it: GRE datagrams
// of benchPacket octets (a full-MTU tunnel packet) in batches of
// benchBatch, one peer, over a socket that only counts (sink) or only
// replays what was sealed beforehand (feed). One op is one packet: ns/op,
// B/op and allocs/op are per packet; MB/s is GRE payload throughput on one
// core (Gb/s = MB/s × 8 / 1000). Compare with esp's BenchmarkSeal and
// BenchmarkOpen (the cipher alone) to see what the layer adds.
const (
	benchPacket = 1400
	benchBatch  = 64
	// benchRing is how many sealed packets the read benchmark replays
	// before it installs the inbound SA afresh (a new replay window).
	benchRing = 4096
)

var benchLayerTransforms = []esp.Transform{esp.GCM128, esp.CBC128SHA1}

// benchGRE writes a benchPacket-octet GRE datagram (key 7, IPv4: an 8-octet
// header) into buf, its payload at the data plane's headroom (64), and
// returns its offset.
func benchGRE(b *testing.B, buf []byte) int {
	h := gre.Header{KeyPresent: true, Key: 7, Protocol: gre.ProtoIPv4}
	start, err := gre.Encapsulate(buf[:64-h.Len()+benchPacket], 64, &h)
	if err != nil || start != 64-h.Len() {
		b.Fatalf("gre.Encapsulate = %d, %v", start, err)
	}
	return start
}

// BenchmarkFaceWriteBatch: seal in place and hand to the socket.
func BenchmarkFaceWriteBatch(b *testing.B) {
	for _, tr := range benchLayerTransforms {
		for _, udp := range []bool{false, true} {
			name := strings.ReplaceAll(tr.String(), "/", "+") + "/raw"
			if udp {
				name = strings.ReplaceAll(tr.String(), "/", "+") + "/udp"
			}
			b.Run(name, func(b *testing.B) {
				clk := clock.NewFake(time.Unix(1e9, 0))
				sink := &chanConn{t: nbma.TransportGRE, noKeep: true}
				cfg := ipsec.Config{Local: addrA, Raw: sink, Now: clk.Now}
				if udp {
					sink.t = nbma.TransportUDP
					cfg = ipsec.Config{Local: addrA, UDP: sink, Now: clk.Now}
				}
				l := ipsec.New(cfg)
				defer l.Close()
				ab, _ := childPair(tr, addrA, addrB, 0x1001, 0x2002, udp, false)
				if err := l.Install(ab, ipsec.Now); err != nil {
					b.Fatal(err)
				}
				f := l.Face(sink.t)
				ds := make([]underlay.Datagram, benchBatch)
				offs := make([]int, benchBatch)
				for i := range ds {
					ds[i] = underlay.Datagram{Buf: make([]byte, 64+benchPacket+esp.MaxTrailerLen+64), Peer: ab.Key()}
					offs[i] = benchGRE(b, ds[i].Buf)
				}
				glen := benchPacket
				// One batch before the clock starts: the layer's pooled
				// scratch is allocated on first use, once per writer.
				for i := range ds {
					ds[i].Off, ds[i].Len = offs[i], glen
				}
				if n, err := f.WriteBatch(ds); n != len(ds) || err != nil {
					b.Fatalf("WriteBatch = %d, %v", n, err)
				}
				sink.count = 0
				before := l.Stats().Sealed
				b.SetBytes(benchPacket)
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; {
					k := min(benchBatch, b.N-done)
					for i := range ds[:k] {
						// The data plane writes a new GRE packet each
						// time; sealing the old ciphertext again costs
						// the same and copies nothing.
						ds[i].Off, ds[i].Len = offs[i], glen
					}
					if n, err := f.WriteBatch(ds[:k]); n != k || err != nil {
						b.Fatalf("WriteBatch = %d, %v", n, err)
					}
					done += k
				}
				b.StopTimer()
				if st := l.Stats(); st.Sealed-before != uint64(b.N) || sink.count != b.N {
					b.Fatalf("sealed %d, socket got %d, want %d", st.Sealed, sink.count, b.N)
				}
			})
		}
	}
}

// feedConn is an underlay.Conn whose ReadBatch returns the next packets of
// a ring sealed beforehand, as one recvmmsg would.
type feedConn struct {
	t    nbma.Transport
	from netip.AddrPort
	ring [][]byte
	next int
}

func (c *feedConn) ReadBatch(ds []underlay.Datagram) (int, error) {
	if c.next == len(c.ring) {
		return 0, net.ErrClosed
	}
	k := min(len(ds), len(c.ring)-c.next)
	for i := range ds[:k] {
		ds[i].Len = copy(ds[i].Buf[ds[i].Off:], c.ring[c.next])
		ds[i].Peer = c.from
		c.next++
	}
	return k, nil
}

func (c *feedConn) WriteBatch(ds []underlay.Datagram) (int, error) { return len(ds), nil }
func (c *feedConn) BatchSize() int                                 { return benchBatch }
func (c *feedConn) Transport() nbma.Transport                      { return c.t }
func (c *feedConn) LocalAddr() netip.AddrPort                      { return netip.AddrPort{} }
func (c *feedConn) Close() error                                   { return nil }

// BenchmarkFaceReadBatch: read, find the SA by SPI, check the source,
// replay window and ICV, decrypt in place and put the GRE packet where the
// data plane wants it. The ring of packets is sealed once (timer stopped);
// each lap through it installs the inbound SA afresh, since a packet opens
// only once.
func BenchmarkFaceReadBatch(b *testing.B) {
	for _, tr := range benchLayerTransforms {
		for _, udp := range []bool{false, true} {
			name := strings.ReplaceAll(tr.String(), "/", "+") + "/raw"
			if udp {
				name = strings.ReplaceAll(tr.String(), "/", "+") + "/udp"
			}
			b.Run(name, func(b *testing.B) {
				clk := clock.NewFake(time.Unix(1e9, 0))
				// B seals toward A; A's Face reads.
				ab, ba := childPair(tr, addrA, addrB, 0x1001, 0x2002, udp, false)
				out := &chanConn{t: nbma.TransportGRE}
				bcfg := ipsec.Config{Local: addrB, Raw: out, Now: clk.Now}
				feed := &feedConn{t: nbma.TransportGRE, from: netip.AddrPortFrom(addrB, 0)}
				acfg := ipsec.Config{Local: addrA, Raw: feed, Now: clk.Now}
				if udp {
					out.t, feed.t = nbma.TransportUDP, nbma.TransportUDP
					feed.from = netip.AddrPortFrom(addrB, esp.UDPPort)
					bcfg = ipsec.Config{Local: addrB, UDP: out, Now: clk.Now}
					acfg = ipsec.Config{Local: addrA, UDP: feed, Now: clk.Now}
				}
				lb := ipsec.New(bcfg)
				defer lb.Close()
				if err := lb.Install(ba, ipsec.Now); err != nil {
					b.Fatal(err)
				}
				buf := make([]byte, 64+benchPacket+esp.MaxTrailerLen+64)
				off := benchGRE(b, buf)
				d := []underlay.Datagram{{Buf: buf, Peer: ba.Key()}}
				for range benchRing {
					d[0].Off, d[0].Len = off, benchPacket
					if _, err := lb.Face(out.t).WriteBatch(d); err != nil {
						b.Fatal(err)
					}
				}
				feed.ring = out.sent
				if len(feed.ring) != benchRing {
					b.Fatalf("sealed %d packets, want %d", len(feed.ring), benchRing)
				}

				la := ipsec.New(acfg)
				defer la.Close()
				fresh := func() {
					la.Remove(ab.In.SPI)
					clk.Advance(ipsec.DefaultLinger + time.Second)
					la.Expire(clk.Now())
					if err := la.Install(ab, ipsec.Now); err != nil {
						b.Fatal(err)
					}
					feed.next = 0
				}
				if err := la.Install(ab, ipsec.Now); err != nil {
					b.Fatal(err)
				}
				f := la.Face(feed.t)
				ds := make([]underlay.Datagram, benchBatch)
				for i := range ds {
					ds[i].Buf = make([]byte, 64+benchPacket+esp.MaxTrailerLen+64)
				}
				const want = 64 - 8 // where the data plane reads GRE (key present)
				// One batch before the clock starts: the Face's scratch
				// is allocated on its first read.
				for i := range ds {
					ds[i].Off = want
				}
				if n, err := f.ReadBatch(ds); n != len(ds) || err != nil {
					b.Fatalf("ReadBatch = %d, %v", n, err)
				}
				b.SetBytes(benchPacket)
				b.ReportAllocs()
				b.ResetTimer()
				for done := 0; done < b.N; {
					if feed.next == len(feed.ring) {
						b.StopTimer()
						fresh()
						b.StartTimer()
					}
					k := min(benchBatch, b.N-done, len(feed.ring)-feed.next)
					for i := range ds[:k] {
						ds[i].Off = want
					}
					n, err := f.ReadBatch(ds[:k])
					if n != k || err != nil {
						b.Fatalf("ReadBatch = %d, %v; want %d (stats %+v)", n, err, k, la.Stats())
					}
					if ds[0].Off != want || ds[0].Len != benchPacket {
						b.Fatalf("opened at %d+%d, want %d+%d", ds[0].Off, ds[0].Len, want, benchPacket)
					}
					done += k
				}
				b.StopTimer()
				if st := la.Stats(); st.Opened < uint64(b.N) || st.AuthFailed != 0 || st.Replayed != 0 {
					b.Fatalf("stats %+v after %d packets", st, b.N)
				}
			})
		}
	}
}

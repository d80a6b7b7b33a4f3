//go:build linux

package underlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dmvpn/dmvpn/nbma"
)

// Large GRE packets (an NHRP Registration or Resolution Request padded with
// CIEs or extensions to 8-64 KB) must reach the data plane whole over both
// transports, up to the IPv4 maximum, and a size that cannot be taken must be
// refused the same way on both and counted.
//
// Measured in private namespaces on Linux 6.18, with lo's MTU at 65536 (one
// unfragmented datagram) and at 1500 (the sender's kernel fragments, the
// receiver's reassembles before delivery to the raw socket and to the UDP
// socket alike), with UDP GRO on and off: every size up to the IPv4 maximum
// arrives whole on both transports. The limits are the IPv4 total length,
// enforced by the sending kernel with EMSGSIZE: 65,535 - 20 - 8 = 65,507 bytes
// of GRE packet in UDP, 65,535 - 20 = 65,515 bytes in raw IP.

const (
	maxUDPGRE = 65535 - 20 - 8 // largest GRE packet in GRE-in-UDP over IPv4
	maxRawGRE = 65535 - 20     // largest GRE packet in raw IPv4
)

// bigBufLen and bigHeadroom shape the read buffers like dataplane.RunUnderlay
// does: 64 bytes of headroom plus 65,535, read at 64 minus a keyed GRE header
// (8), minus the outer IPv4 header (20) for raw GRE.
const bigBufLen = 64 + 65535

func bigReadOff(tr nbma.Transport) int {
	if tr == nbma.TransportGRE {
		return 64 - 8 - 20
	}
	return 64 - 8
}

// bigPair opens, in a private namespace with lo at mtu, a receiving Conn of
// transport tr on 127.0.0.1 and a plain kernel socket of the same kind on
// 127.0.0.2 to send from. gro selects UDP GRO on the receiver (UDP only).
func bigPair(t *testing.T, tr nbma.Transport, gro bool, mtu uint32) (rx testConn, send func([]byte) error, from netip.AddrPort) {
	t.Helper()
	var (
		g  *IPConn
		u  *UDPConn
		pg net.PacketConn
		pu *net.UDPConn
	)
	t.Cleanup(func() {
		for _, c := range []interface{ Close() error }{pg, pu} {
			if c != nil && c != (*net.UDPConn)(nil) {
				c.Close()
			}
		}
		if g != nil {
			g.Close()
		}
		if u != nil {
			u.Close()
		}
	})
	inNetns(t, func() error {
		if err := linkMTU("lo", mtu); err != nil {
			return err
		}
		var err error
		if tr == nbma.TransportGRE {
			if g, err = listenGRE(lo1); err != nil {
				return err
			}
			pg, err = net.ListenPacket("ip4:47", lo2.String())
			return err
		}
		if u, err = listenUDP(netip.AddrPortFrom(lo1, 0)); err != nil {
			return err
		}
		pu, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo2, 0)))
		return err
	})
	if tr == nbma.TransportGRE {
		to := &net.IPAddr{IP: lo1.AsSlice()}
		return g, func(p []byte) error { _, err := pg.WriteTo(p, to); return err }, netip.AddrPortFrom(lo2, 0)
	}
	if gro {
		if _, on := u.Offloads(); !on {
			t.Skip("kernel without UDP GRO")
		}
	} else {
		setOffloads(t, u, false, false)
	}
	to := u.LocalAddr()
	return u, func(p []byte) error { _, err := pu.WriteToUDPAddrPort(p, to); return err }, pu.LocalAddr().(*net.UDPAddr).AddrPort()
}

// readOne reads exactly one datagram into dataplane-shaped buffers.
func readOne(t *testing.T, c testConn, ds []Datagram, off int) Datagram {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	for i := range ds {
		ds[i].Off, ds[i].Len, ds[i].Peer = off, 0, netip.AddrPort{}
	}
	n, err := c.ReadBatch(ds)
	if err != nil || n != 1 {
		t.Fatalf("ReadBatch = %d, %v; want 1 datagram (stats %+v)", n, err, c.Stats())
	}
	return ds[0]
}

func bigCases() []struct {
	name string
	tr   nbma.Transport
	gro  bool
} {
	return []struct {
		name string
		tr   nbma.Transport
		gro  bool
	}{
		{"gre", nbma.TransportGRE, false},
		{"udp gro", nbma.TransportUDP, true},
		{"udp no gro", nbma.TransportUDP, false},
	}
}

// TestBigDatagrams sends GRE packets of 1 KB to the IPv4 maximum from a plain
// kernel socket, unfragmented (lo MTU 65536) and fragmented (MTU 1500): each
// must come out of ReadBatch whole, with the right Len, Peer and Off, on
// both transports; one byte more is refused by the sending kernel on both.
func TestBigDatagrams(t *testing.T) {
	for _, mtu := range []uint32{65536, 1500} {
		for _, tc := range bigCases() {
			t.Run(fmt.Sprintf("%s mtu %d", tc.name, mtu), func(t *testing.T) {
				c, send, from := bigPair(t, tc.tr, tc.gro, mtu)
				limit := maxUDPGRE
				if tc.tr == nbma.TransportGRE {
					limit = maxRawGRE
				}
				off := bigReadOff(tc.tr)
				wantOff := off
				if tc.tr == nbma.TransportGRE {
					wantOff += 20
				}
				ds := make([]Datagram, c.BatchSize())
				for i := range ds {
					ds[i].Buf = make([]byte, bigBufLen)
				}
				sizes := []int{1000, 1500, 4096, 8000, 8192, 8193, 9000, 16384, 32768, 60000, maxUDPGRE, limit}
				for i, size := range sizes {
					want := greFrame(i, size-8)
					if err := send(want); err != nil {
						t.Fatalf("send %d bytes: %v", size, err)
					}
					d := readOne(t, c, ds, off)
					if d.Len != size || d.Peer != from || d.Off != wantOff || !bytes.Equal(d.Payload(), want) {
						t.Fatalf("%d bytes sent: got Len %d Off %d Peer %v (want Off %d Peer %v), payload equal %v",
							size, d.Len, d.Off, d.Peer, wantOff, from, bytes.Equal(d.Payload(), want))
					}
				}
				if err := send(greFrame(0, limit+1-8)); !errors.Is(err, unix.EMSGSIZE) {
					t.Errorf("sending %d bytes: %v, want EMSGSIZE", limit+1, err)
				}
				if s := c.Stats(); s.Received != uint64(len(sizes)) || s.Dropped != 0 {
					t.Errorf("stats %+v, want %d received, 0 dropped", s, len(sizes))
				}
			})
		}
	}
}

// TestBigDatagramsOwnWriter: the same through WriteBatch on both ends (a
// node answering a big request), in one batch: a run of equal sizes (with
// UDP GSO one super-datagram where the MTU allows it), single large ones and
// the largest, all back whole and in order; one byte over the largest is a
// counted send error on both transports.
func TestBigDatagramsOwnWriter(t *testing.T) {
	for _, mtu := range []uint32{65536, 1500} {
		for _, tc := range bigCases() {
			t.Run(fmt.Sprintf("%s mtu %d", tc.name, mtu), func(t *testing.T) {
				var a, b testConn
				if tc.tr == nbma.TransportGRE {
					var ga, gb *IPConn
					t.Cleanup(func() { closeAll([]*IPConn{ga, gb}) })
					inNetns(t, func() error {
						if err := linkMTU("lo", mtu); err != nil {
							return err
						}
						var err error
						if ga, err = listenGRE(lo2); err != nil {
							return err
						}
						gb, err = listenGRE(lo1)
						return err
					})
					a, b = ga, gb
				} else {
					var ua, ub *UDPConn
					t.Cleanup(func() { closeAll([]*UDPConn{ua, ub}) })
					inNetns(t, func() error {
						if err := linkMTU("lo", mtu); err != nil {
							return err
						}
						var err error
						if ua, err = listenUDP(netip.AddrPortFrom(lo2, 0)); err != nil {
							return err
						}
						ub, err = listenUDP(netip.AddrPortFrom(lo1, 0))
						return err
					})
					if tc.gro {
						if _, on := ub.Offloads(); !on {
							t.Skip("kernel without UDP GRO")
						}
					} else {
						setOffloads(t, ub, true, false)
					}
					a, b = ua, ub
				}
				limit := maxUDPGRE
				if tc.tr == nbma.TransportGRE {
					limit = maxRawGRE
				}
				sizes := []int{16000, 16000, 16000, 16000, 8200, 60000, limit, limit + 1, 9000}
				out := make([]Datagram, len(sizes))
				for i, size := range sizes {
					out[i] = Datagram{Buf: make([]byte, 64+size), Off: 64}
					out[i].Len = copy(out[i].Buf[64:], greFrame(i, size-8))
					out[i].Peer = b.LocalAddr()
				}
				n, err := a.WriteBatch(out)
				if n != len(sizes)-1 || !errors.Is(err, unix.EMSGSIZE) {
					t.Fatalf("WriteBatch = %d, %v; want %d sent and EMSGSIZE for %d bytes", n, err, len(sizes)-1, limit+1)
				}
				if s := a.Stats(); s.SendErrors != 1 || s.Sent != uint64(len(sizes)-1) {
					t.Errorf("sender stats %+v, want 1 send error", s)
				}
				off := bigReadOff(tc.tr)
				ds := make([]Datagram, b.BatchSize())
				for i := range ds {
					ds[i].Buf = make([]byte, bigBufLen)
				}
				for i, size := range sizes {
					if size > limit {
						continue
					}
					d := readOne(t, b, ds[:1], off)
					want := greFrame(i, size-8)
					if d.Len != size || d.Peer.Addr() != lo2 || !bytes.Equal(d.Payload(), want) {
						t.Fatalf("datagram %d (%d bytes): got Len %d from %v", i, size, d.Len, d.Peer)
					}
				}
				if s := b.Stats(); s.Received != uint64(len(sizes)-1) || s.Dropped != 0 {
					t.Errorf("receiver stats %+v", s)
				}
			})
		}
	}
}

// TestBigDatagramTooBigForBuffer: a datagram larger than the room the
// caller's buffer leaves after Off is refused the same way on both
// transports (dropped and counted in Dropped, the next datagram still
// delivered), and one that fits exactly is delivered. Raw GRE needs 20 more
// bytes of room: the kernel hands it the IPv4 header too.
func TestBigDatagramTooBigForBuffer(t *testing.T) {
	const size = 20000
	for _, tc := range bigCases() {
		t.Run(tc.name, func(t *testing.T) {
			c, send, from := bigPair(t, tc.tr, tc.gro, 1500)
			room := size
			if tc.tr == nbma.TransportGRE {
				room += 20
			}
			ds := make([]Datagram, 4)
			for i := range ds {
				ds[i].Buf = make([]byte, testHeadroom+room-1) // one byte short
			}
			big, small := greFrame(1, size-8), greFrame(2, 100)
			if err := send(big); err != nil {
				t.Fatal(err)
			}
			if err := send(small); err != nil {
				t.Fatal(err)
			}
			d := readOne(t, c, ds, testHeadroom)
			if !bytes.Equal(d.Payload(), small) || d.Peer != from {
				t.Fatalf("got %d bytes from %v, want the %d-byte datagram after the refused one", d.Len, d.Peer, len(small))
			}
			if s := c.Stats(); s.Dropped != 1 || s.Received != 1 {
				t.Fatalf("stats %+v, want 1 dropped, 1 received", s)
			}
			for i := range ds {
				ds[i].Buf = make([]byte, testHeadroom+room) // exactly enough
			}
			if err := send(big); err != nil {
				t.Fatal(err)
			}
			if d := readOne(t, c, ds, testHeadroom); !bytes.Equal(d.Payload(), big) || d.Peer != from {
				t.Fatalf("exact fit: got %d bytes from %v", d.Len, d.Peer)
			}
			if s := c.Stats(); s.Dropped != 1 || s.Received != 2 {
				t.Fatalf("stats %+v, want 1 dropped, 2 received", s)
			}
		})
	}
}

//go:build linux

package underlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/nbma"
)

// The sockets know an IP protocol or a UDP port, a minimum length and a
// label, nothing of what they carry. These tests open them for something
// other than GRE: ESP-shaped datagrams (RFC 4303: a 4-byte SPI, a 4-byte
// sequence number, then the rest) on IP protocol 50 and in UDP.

// testESP labels the ESP sockets of these tests; package nbma has no ESP
// transport yet, and the socket must not care.
const testESP nbma.Transport = 200

var espSpec = Spec{Transport: testESP, MinLen: 8}

// espFrame is an ESP-shaped datagram of n bytes (n >= 8): SPI 0x1000+i,
// sequence number i, then a recognisable body.
func espFrame(i, n int) []byte {
	b := make([]byte, n)
	copy(b, []byte{0, 0, 0x10, byte(i), 0, 0, 0, byte(i)})
	for j := 8; j < n; j++ {
		b[j] = byte(i*7 + j)
	}
	return b
}

// TestRawESPBesideGRE opens raw sockets for protocols 50 and 47 on the same
// address: each sees only its own protocol (delivery is by protocol number,
// whatever the payload), the ESP socket drops what is shorter than its
// 8-byte minimum and takes exactly 8, and the GRE socket hands on any
// 4 bytes, GRE or not: it checks lengths, not headers.
func TestRawESPBesideGRE(t *testing.T) {
	var espRx, espTx, greRx, greTx *IPConn
	t.Cleanup(func() { closeAll([]*IPConn{espRx, espTx, greRx, greTx}) })
	inNetns(t, func() error {
		var err error
		if espRx, err = ListenIP(lo1, 50, espSpec); err != nil {
			return err
		}
		if espTx, err = ListenIP(lo2, 50, espSpec); err != nil {
			return err
		}
		if greRx, err = listenGRE(lo1); err != nil {
			return err
		}
		greTx, err = listenGRE(lo2)
		return err
	})
	if espRx.Transport() != testESP || espRx.LocalAddr() != netip.AddrPortFrom(lo1, 0) {
		t.Fatalf("ESP socket: Transport %v LocalAddr %v", espRx.Transport(), espRx.LocalAddr())
	}
	to := netip.AddrPortFrom(lo1, 0)
	esp := [][]byte{espFrame(1, 8), espFrame(2, 7), espFrame(3, 100), espFrame(4, 1)}
	notGRE := []byte{0xff, 0xff, 0xff, 0xff} // version 7: gre.Decode refuses it
	greIn := [][]byte{greFrame(1, 20), notGRE, greFrame(2, 0)}
	for _, tx := range []struct {
		c  *IPConn
		ps [][]byte
	}{{espTx, esp}, {greTx, greIn}} {
		ds := newDatagrams(len(tx.ps), 256)
		for i, p := range tx.ps {
			setPayload(&ds[i], p, to)
		}
		if n, err := tx.c.WriteBatch(ds); n != len(ds) || err != nil {
			t.Fatalf("WriteBatch = %d, %v", n, err)
		}
	}
	from := netip.AddrPortFrom(lo2, 0)
	check := func(name string, got []received, want [][]byte) {
		t.Helper()
		for i, r := range got {
			if r.peer != from || !bytes.Equal(r.payload, want[i]) {
				t.Errorf("%s datagram %d: from %v, %x; want from %v, %x", name, i, r.peer, r.payload, from, want[i])
			}
		}
	}
	check("ESP", readN(t, espRx, 2), [][]byte{esp[0], esp[2]})
	check("GRE", readN(t, greRx, 3), greIn)
	expectNothing(t, espRx, 100*time.Millisecond)
	expectNothing(t, greRx, 50*time.Millisecond)
	if s := espRx.Stats(); s.Received != 2 || s.Dropped != 2 {
		t.Errorf("ESP receiver stats %+v, want 2 received, 2 dropped (7 bytes and 1 byte)", s)
	}
	if s := greRx.Stats(); s.Received != 3 || s.Dropped != 0 {
		t.Errorf("GRE receiver stats %+v, want 3 received, none dropped", s)
	}
	if _, _, err := gre.Decode(notGRE); err == nil {
		t.Fatal("the non-GRE payload decodes as GRE; the test proves nothing")
	}
}

// TestUDPMinLen: a UDP socket hands on exactly the datagrams of at least its
// minimum, with UDP GRO and without (two receive paths), and counts the
// rest as dropped.
func TestUDPMinLen(t *testing.T) {
	lens := []int{7, 8, 1, 0, 20}
	for _, tc := range []struct {
		minLen int
		gro    bool
	}{{8, true}, {8, false}, {1, true}, {1, false}, {0, false}} {
		t.Run(fmt.Sprintf("min %d gro %v", tc.minLen, tc.gro), func(t *testing.T) {
			var rx *UDPConn
			var tx *net.UDPConn
			t.Cleanup(func() {
				if rx != nil {
					rx.Close()
				}
				if tx != nil {
					tx.Close()
				}
			})
			inNetns(t, func() error {
				var err error
				if rx, err = ListenUDP(netip.AddrPortFrom(lo1, 0), Spec{Transport: testESP, MinLen: tc.minLen}); err != nil {
					return err
				}
				tx, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo2, 0)))
				return err
			})
			if tc.gro {
				if _, on := rx.Offloads(); !on {
					t.Skip("kernel without UDP GRO")
				}
			} else {
				setOffloads(t, rx, false, false)
			}
			var want [][]byte
			for i, l := range lens {
				p := bytes.Repeat([]byte{byte(i + 1)}, l)
				if _, err := tx.WriteToUDPAddrPort(p, rx.LocalAddr()); err != nil {
					t.Fatal(err)
				}
				if l >= tc.minLen {
					want = append(want, p)
				}
			}
			got := readN(t, rx, len(want))
			from := tx.LocalAddr().(*net.UDPAddr).AddrPort()
			for i, r := range got {
				if r.peer != from || !bytes.Equal(r.payload, want[i]) {
					t.Errorf("datagram %d: from %v, %x; want from %v, %x", i, r.peer, r.payload, from, want[i])
				}
			}
			expectNothing(t, rx, 50*time.Millisecond)
			if s := rx.Stats(); s.Received != uint64(len(want)) || s.Dropped != uint64(len(lens)-len(want)) {
				t.Errorf("stats %+v, want %d received, %d dropped", s, len(want), len(lens)-len(want))
			}
		})
	}
}

// TestListenRefusesBadSpec: what a socket cannot be opened for is refused
// before any socket exists (so no root needed), with the texts the node's
// log has always shown for GRE.
func TestListenRefusesBadSpec(t *testing.T) {
	tests := []struct {
		name string
		open func() error
		want string
	}{
		{"protocol 0", func() error { _, err := ListenIP(lo1, 0, greSpec); return err }, "IP protocol 0 out of range"},
		{"protocol 255", func() error { _, err := ListenIP(lo1, 255, greSpec); return err }, "IP protocol 255 out of range"},
		{"protocol 256", func() error { _, err := ListenIP(lo1, 256, greSpec); return err }, "IP protocol 256 out of range"},
		{"protocol -1", func() error { _, err := ListenIP(lo1, -1, greSpec); return err }, "IP protocol -1 out of range"},
		{"IPv6 local", func() error { _, err := ListenIP(netip.IPv6Loopback(), 47, greSpec); return err },
			"underlay: raw GRE needs an IPv4 local address, not ::1"},
		{"raw, no label", func() error { _, err := ListenIP(lo1, 50, Spec{MinLen: 8}); return err }, "Spec.Transport is zero"},
		{"UDP, no label", func() error { _, err := ListenUDP(netip.AddrPortFrom(lo1, 0), Spec{}); return err }, "Spec.Transport is zero"},
		{"negative minimum", func() error { _, err := ListenIP(lo1, 50, Spec{Transport: testESP, MinLen: -1}); return err },
			"minimum payload length -1 out of range"},
		{"minimum beyond an IPv4 datagram", func() error {
			_, err := ListenUDP(netip.AddrPortFrom(lo1, 0), Spec{Transport: nbma.TransportUDP, MinLen: 65536})
			return err
		}, "underlay: GRE-in-UDP socket: minimum payload length 65536 out of range"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.open()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
		})
	}
	if _, err := ListenUDP(netip.AddrPortFrom(lo1, 0), Spec{}); !errors.Is(err, errNoTransport) {
		t.Fatalf("no label: %v, want errNoTransport", err)
	}
}

// TestListenErrorTexts pins the texts of a socket the kernel refuses: the
// node logs them, and they read as they did when the sockets were GRE's.
func TestListenErrorTexts(t *testing.T) {
	var held *net.UDPConn
	var busy netip.AddrPort
	var udpErr, rawErr error
	t.Cleanup(func() {
		if held != nil {
			held.Close()
		}
	})
	inNetns(t, func() error {
		var err error
		if held, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(lo1, 0))); err != nil {
			return err
		}
		busy = held.LocalAddr().(*net.UDPAddr).AddrPort()
		if c, err := ListenUDP(busy, udpSpec); err == nil {
			c.Close()
		} else {
			udpErr = err
		}
		// 192.0.2.1 is no address of the namespace: bind fails.
		if c, err := ListenIP(netip.MustParseAddr("192.0.2.1"), 47, greSpec); err == nil {
			c.Close()
		} else {
			rawErr = err
		}
		return nil
	})
	if want := fmt.Sprintf("underlay: GRE-in-UDP socket on %v: ", busy); udpErr == nil || !strings.HasPrefix(udpErr.Error(), want) {
		t.Errorf("port in use: %v, want %q...", udpErr, want)
	}
	if want := "underlay: raw GRE socket on 192.0.2.1: "; rawErr == nil || !strings.HasPrefix(rawErr.Error(), want) {
		t.Errorf("foreign address: %v, want %q...", rawErr, want)
	}
}

package underlay

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/dmvpn/dmvpn/gre"
)

// ipv4Packet builds an IPv4 datagram carrying payload, with opts appended
// to the header (a multiple of 4 bytes).
func ipv4Packet(src, dst netip.Addr, proto byte, opts, payload []byte) []byte {
	hl := 20 + len(opts)
	p := make([]byte, hl+len(payload))
	p[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(p[2:4], uint16(len(p)))
	p[8] = 64
	p[9] = proto
	s, d := src.As4(), dst.As4()
	copy(p[12:16], s[:])
	copy(p[16:20], d[:])
	copy(p[20:], opts)
	copy(p[hl:], payload)
	return p
}

// TestParseIPv4GRE checks the header parser as a GRE socket uses it:
// protocol 47, payloads of at least the smallest GRE header.
func TestParseIPv4GRE(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.1")
	dst := netip.MustParseAddr("198.51.100.1")
	other := netip.MustParseAddr("198.51.100.2")
	greMin := []byte{0, 0, 0x08, 0x00}
	greKey := []byte{0x20, 0, 0x08, 0x00, 0, 0, 0, 42, 0x45}
	mod := func(p []byte, f func([]byte)) []byte { f(p); return p }

	tests := []struct {
		name    string
		pkt     []byte
		local   netip.Addr
		ok      bool
		off, n  int
		wantSrc netip.Addr
	}{
		{"plain", ipv4Packet(src, dst, 47, nil, greKey), dst, true, 20, len(greKey), src},
		{"minimal GRE header", ipv4Packet(src, dst, 47, nil, greMin), dst, true, 20, 4, src},
		{"unbound accepts any destination", ipv4Packet(src, other, 47, nil, greKey), netip.Addr{}, true, 20, len(greKey), src},
		{"0.0.0.0 accepts any destination", ipv4Packet(src, other, 47, nil, greKey), netip.IPv4Unspecified(), true, 20, len(greKey), src},
		{"options skipped", ipv4Packet(src, dst, 47, []byte{1, 1, 1, 0}, greKey), dst, true, 24, len(greKey), src},
		{"trailing bytes beyond total length ignored", mod(append(ipv4Packet(src, dst, 47, nil, greKey), 0, 0, 0), func([]byte) {}), dst, true, 20, len(greKey), src},
		{"other destination", ipv4Packet(src, other, 47, nil, greKey), dst, false, 0, 0, netip.Addr{}},
		{"not GRE", ipv4Packet(src, dst, 17, nil, greKey), dst, false, 0, 0, netip.Addr{}},
		{"GRE too short", ipv4Packet(src, dst, 47, nil, greMin[:3]), dst, false, 0, 0, netip.Addr{}},
		{"empty GRE", ipv4Packet(src, dst, 47, nil, nil), dst, false, 0, 0, netip.Addr{}},
		{"shorter than a header", ipv4Packet(src, dst, 47, nil, greKey)[:19], dst, false, 0, 0, netip.Addr{}},
		{"IPv6", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { p[0] = 0x65 }), dst, false, 0, 0, netip.Addr{}},
		{"IHL below 5", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { p[0] = 0x44 }), dst, false, 0, 0, netip.Addr{}},
		{"IHL beyond packet", mod(ipv4Packet(src, dst, 47, nil, greMin), func(p []byte) { p[0] = 0x4f }), dst, false, 0, 0, netip.Addr{}},
		{"total length beyond data", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { binary.BigEndian.PutUint16(p[2:], 200) }), dst, false, 0, 0, netip.Addr{}},
		{"total length below header", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { binary.BigEndian.PutUint16(p[2:], 10) }), dst, false, 0, 0, netip.Addr{}},
		{"more fragments", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { p[6] = 0x20 }), dst, false, 0, 0, netip.Addr{}},
		{"fragment offset", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { p[7] = 1 }), dst, false, 0, 0, netip.Addr{}},
		{"DF is fine", mod(ipv4Packet(src, dst, 47, nil, greKey), func(p []byte) { p[6] = 0x40 }), dst, true, 20, len(greKey), src},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			off, n, s, ok := parseIPv4(tc.pkt, tc.local, 47, gre.MinLen)
			if ok != tc.ok || off != tc.off || n != tc.n || s != tc.wantSrc {
				t.Fatalf("parseIPv4 = (%d, %d, %v, %v), want (%d, %d, %v, %v)", off, n, s, ok, tc.off, tc.n, tc.wantSrc, tc.ok)
			}
		})
	}
}

// TestParseIPv4ProtoAndMin checks that the protocol and the minimum payload
// length are the caller's: an ESP parser (protocol 50, 8 bytes: SPI and
// sequence number) takes ESP and refuses GRE, and the other way round, and
// each minimum is honoured to the byte.
func TestParseIPv4ProtoAndMin(t *testing.T) {
	src := netip.MustParseAddr("192.0.2.1")
	dst := netip.MustParseAddr("198.51.100.1")
	esp := []byte{0, 0, 0x10, 0x01, 0, 0, 0, 1, 0xaa, 0xbb} // SPI 0x1001, seq 1, 2 bytes
	greMin := []byte{0, 0, 0x08, 0x00}
	tests := []struct {
		name   string
		pkt    []byte
		proto  uint8
		minLen int
		ok     bool
		n      int
	}{
		{"ESP on an ESP parser", ipv4Packet(src, dst, 50, nil, esp), 50, 8, true, len(esp)},
		{"ESP of exactly the minimum", ipv4Packet(src, dst, 50, nil, esp[:8]), 50, 8, true, 8},
		{"ESP one byte short", ipv4Packet(src, dst, 50, nil, esp[:7]), 50, 8, false, 0},
		{"GRE on an ESP parser", ipv4Packet(src, dst, 47, nil, append(greMin, 1, 2, 3, 4)), 50, 8, false, 0},
		{"ESP on a GRE parser", ipv4Packet(src, dst, 50, nil, esp), 47, gre.MinLen, false, 0},
		{"GRE of exactly the minimum", ipv4Packet(src, dst, 47, nil, greMin), 47, gre.MinLen, true, 4},
		{"the same 4 bytes under an 8-byte minimum", ipv4Packet(src, dst, 47, nil, greMin), 47, 8, false, 0},
		{"minimum 0 takes an empty payload", ipv4Packet(src, dst, 50, nil, nil), 50, 0, true, 0},
		{"minimum 1 refuses it", ipv4Packet(src, dst, 50, nil, nil), 50, 1, false, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			off, n, s, ok := parseIPv4(tc.pkt, dst, tc.proto, tc.minLen)
			want := struct {
				off, n int
				src    netip.Addr
			}{}
			if tc.ok {
				want.off, want.n, want.src = 20, tc.n, src
			}
			if ok != tc.ok || off != want.off || n != want.n || s != want.src {
				t.Fatalf("parseIPv4(proto %d, min %d) = (%d, %d, %v, %v), want (%d, %d, %v, %v)",
					tc.proto, tc.minLen, off, n, s, ok, want.off, want.n, want.src, tc.ok)
			}
		})
	}
}

func FuzzParseIPv4(f *testing.F) {
	src := netip.MustParseAddr("192.0.2.1")
	dst := netip.MustParseAddr("198.51.100.1")
	f.Add(ipv4Packet(src, dst, 47, nil, []byte{0x20, 0, 8, 0, 0, 0, 0, 1}), uint8(47), uint16(gre.MinLen))
	f.Add(ipv4Packet(src, dst, 47, []byte{1, 1, 1, 0}, []byte{0, 0, 8, 0}), uint8(47), uint16(gre.MinLen))
	f.Add(ipv4Packet(src, dst, 50, nil, []byte{0, 0, 0, 1, 0, 0, 0, 1}), uint8(50), uint16(8))
	f.Fuzz(func(t *testing.T, p []byte, proto uint8, minLen uint16) {
		off, n, _, ok := parseIPv4(p, dst, proto, int(minLen))
		if ok && (off < 20 || n < int(minLen) || off+n > len(p) || p[9] != proto) {
			t.Fatalf("accepted bad packet: off=%d n=%d len=%d proto %d (want %d) min %d", off, n, len(p), p[9], proto, minLen)
		}
	})
}

package capture

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
)

var (
	local = netip.MustParseAddrPort("192.0.2.1:4754")
	peer  = netip.MustParseAddrPort("198.51.100.1:4754")
)

// ipv4 is an IPv4 packet of protocol proto; TCP and UDP get ports 1234 ->
// 80, ICMP an echo request.
func ipv4(t testing.TB, src, dst string, proto uint8) []byte {
	t.Helper()
	b := make([]byte, 20+16)
	inet.PutIPv4Header(b, netip.MustParseAddr(src), netip.MustParseAddr(dst), proto, 16, 1)
	switch proto {
	case inet.ProtoTCP, inet.ProtoUDP:
		binary.BigEndian.PutUint16(b[20:], 1234)
		binary.BigEndian.PutUint16(b[22:], 80)
	case inet.ProtoICMP:
		b[20] = 8
	}
	return b
}

func ipv6(src, dst string, proto uint8) []byte {
	b := make([]byte, 40+8)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], 8)
	b[6], b[7] = proto, 64
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	binary.BigEndian.PutUint16(b[40:], 5353)
	binary.BigEndian.PutUint16(b[42:], 53)
	return b
}

// greBytes is a GRE packet (key 42) carrying payload as protocol proto.
func greBytes(proto uint16, payload []byte) []byte {
	buf := make([]byte, 64+len(payload))
	copy(buf[64:], payload)
	h := gre.Header{KeyPresent: true, Key: 42, Protocol: proto}
	start, _ := gre.Encapsulate(buf, 64, &h)
	return buf[start:]
}

func TestFilter(t *testing.T) {
	icmp := ipv4(t, "10.1.1.10", "10.1.2.10", inet.ProtoICMP)
	tcp := ipv4(t, "10.1.1.10", "10.1.2.10", inet.ProtoTCP)
	udp6 := ipv6("fd00::1", "fd00::2", inet.ProtoUDP)
	type pk struct {
		name string
		m    Meta
		data []byte
	}
	in := func(name string, dir Dir, data []byte) pk { return pk{name, Meta{Point: Inner, Dir: dir}, data} }
	out := func(name string, dir Dir, udp bool, data []byte) pk {
		return pk{name, Meta{Point: Outer, Dir: dir, UDP: udp, Local: local, Peer: peer}, data}
	}
	rawPeer := netip.AddrPortFrom(peer.Addr(), 0)
	pkts := []pk{
		in("icmp-out", Out, icmp),
		in("tcp-in", In, tcp),
		in("udp6", Out, udp6),
		out("gre-icmp", In, false, greBytes(gre.ProtoIPv4, icmp)),
		out("udp-nhrp", Out, true, greBytes(gre.ProtoNHRP, []byte{0, 1, 2, 3, 4, 5, 6, 7})),
		{"raw-nhrp", Meta{Point: Outer, Dir: Out, Local: netip.AddrPortFrom(local.Addr(), 0), Peer: rawPeer}, greBytes(gre.ProtoNHRP, []byte{0, 1})},
	}
	for _, c := range []struct {
		filter string
		want   string // the packets that match, by name
	}{
		{"", "icmp-out tcp-in udp6 gre-icmp udp-nhrp raw-nhrp"},
		{"icmp", "icmp-out gre-icmp"},
		{"proto icmp", "icmp-out gre-icmp"},
		{"proto 6", "tcp-in"},
		{"tcp and port 80", "tcp-in"},
		{"dst port 80", "tcp-in"},
		{"src port 80", ""},
		{"port 4754", "udp-nhrp"},
		{"udp", "udp6 udp-nhrp"},
		{"gre", "gre-icmp udp-nhrp raw-nhrp"},
		{"nhrp", "udp-nhrp raw-nhrp"},
		{"not nhrp", "icmp-out tcp-in udp6 gre-icmp"},
		{"!nhrp && !gre", "icmp-out tcp-in udp6"},
		{"host 10.1.2.10", "icmp-out tcp-in gre-icmp"},
		{"10.1.2.10", "icmp-out tcp-in gre-icmp"},
		{"src 10.1.2.10", ""},
		{"dst host 10.1.2.10 and inbound", "tcp-in gre-icmp"},
		{"host 198.51.100.1", "gre-icmp udp-nhrp raw-nhrp"},
		{"src host 198.51.100.1", "gre-icmp"},
		{"net 10.1.0.0/16 and not tcp", "icmp-out gre-icmp"},
		{"src net 198.51.100.0/24 or ip6", "udp6 gre-icmp"},
		{"ip6", "udp6"},
		{"ip and not gre", "icmp-out tcp-in"},
		{"outbound", "icmp-out udp6 udp-nhrp raw-nhrp"},
		{"(icmp or tcp) and in", "tcp-in gre-icmp"},
		{"icmp or tcp and in", "icmp-out tcp-in gre-icmp"},
		{"fd00::2", "udp6"},
		{"net fd00::/64 and dst port 53", "udp6"},
	} {
		f, err := ParseFilter(c.filter)
		if err != nil {
			t.Errorf("%q: %v", c.filter, err)
			continue
		}
		var got []string
		for _, p := range pkts {
			if f.Match(&p.m, p.data) {
				got = append(got, p.name)
			}
		}
		if g := strings.Join(got, " "); g != c.want {
			t.Errorf("%q matches %q, want %q", c.filter, g, c.want)
		}
	}
	var nilFilter *Filter
	if !nilFilter.Match(&pkts[0].m, pkts[0].data) || nilFilter.String() != "" {
		t.Error("a nil filter must match everything")
	}
	// Garbage never matches an address and never panics.
	for _, f := range []string{"host 10.0.0.1", "port 1", "icmp", "nhrp", "not ip"} {
		flt, _ := ParseFilter(f)
		for _, b := range [][]byte{nil, {0x45}, {0x60, 0}, make([]byte, 19), {0x4f, 0, 0, 20}} {
			flt.Match(&Meta{Point: Inner}, b)
			flt.Match(&Meta{Point: Outer}, b)
		}
	}
}

func TestFilterErrors(t *testing.T) {
	for _, c := range []struct{ filter, err string }{
		{"host", "unexpected end"},
		{"host 10.0.0.0/8", "want an address"},
		{"net 10.0.0.1x", "not an IP address"},
		{"port 70000", "want a number"},
		{"proto bogus", "want icmp"},
		{"tcp and", "unexpected end"},
		{"and tcp", `unexpected "and"`},
		{"(tcp", "missing )"},
		{"tcp)", `unexpected ")"`},
		{"frobnicate", `unknown word "frobnicate"`},
		{"host 10.0.0.1 10.0.0.2", `unexpected "10.0.0.2"`},
		{"; rm -rf /", "unknown word"},
	} {
		_, err := ParseFilter(c.filter)
		if err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("%q: error %v, want %q", c.filter, err, c.err)
		}
	}
	f, err := ParseFilter("  icmp   and(host 10.0.0.1 )")
	if err != nil || f.String() != "icmp and ( host 10.0.0.1 )" {
		t.Errorf("normalized %q, %v", f.String(), err)
	}
}

func FuzzFilter(f *testing.F) {
	f.Add("icmp and host 10.0.0.1", []byte{0x45, 0, 0, 20})
	f.Add("not (port 53 or nhrp)", []byte{0x60})
	f.Fuzz(func(t *testing.T, text string, data []byte) {
		flt, err := ParseFilter(text)
		if err != nil {
			return
		}
		flt.Match(&Meta{Point: Inner}, data)
		flt.Match(&Meta{Point: Outer, UDP: true, Local: local, Peer: peer}, data)
	})
}

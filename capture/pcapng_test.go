package capture

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/internal/inet"
	"github.com/dmvpn/dmvpn/internal/testenv"
	"github.com/dmvpn/dmvpn/nhrp"
)

// registration is a real NHRP Registration Request, as a spoke sends it.
func registration(t testing.TB) []byte {
	t.Helper()
	auth, err := nhrp.NewCiscoAuthentication([]byte("s3cret"))
	if err != nil {
		t.Fatal(err)
	}
	p := &nhrp.Packet{
		HopCount: 255, Type: nhrp.TypeRegistrationRequest, Flags: nhrp.FlagRegistrationU | nhrp.FlagCiscoNAT,
		RequestID: 7, SrcNBMA: peer.Addr(), SrcProto: netip.MustParseAddr("10.0.0.11"), DstProto: netip.MustParseAddr("10.0.0.1"),
		CIEs:       []nhrp.CIE{{PrefixLength: 32, MTU: 1400, HoldingTime: 600}},
		Extensions: nhrp.StandardRequestExtensions(nil, &auth, nil),
	}
	b, err := p.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// sample is one of each kind of record: inner out and in, outer raw GRE
// (data, in), GRE-in-UDP (NHRP, out), and GRE-in-UDP over IPv6.
func sample(t testing.TB) []struct {
	m    Meta
	data []byte
} {
	icmp := ipv4(t, "10.1.1.10", "10.1.2.10", inet.ProtoICMP)
	binary.BigEndian.PutUint16(icmp[22:], inet.Checksum(icmp[20:]))
	rawLocal, rawPeer := netip.AddrPortFrom(local.Addr(), 0), netip.AddrPortFrom(peer.Addr(), 0)
	v6l, v6p := netip.MustParseAddrPort("[2001:db8::1]:4754"), netip.MustParseAddrPort("[2001:db8::2]:4754")
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC).UnixNano()
	return []struct {
		m    Meta
		data []byte
	}{
		{Meta{Time: now, Point: Inner, Dir: Out, Len: len(icmp)}, icmp},
		{Meta{Time: now + 1000, Point: Inner, Dir: In, Len: len(icmp)}, icmp},
		{Meta{Time: now + 2000, Point: Outer, Dir: In, Local: rawLocal, Peer: rawPeer}, greBytes(gre.ProtoIPv4, icmp)},
		{Meta{Time: now + 3000, Point: Outer, Dir: Out, UDP: true, Local: local, Peer: peer}, greBytes(gre.ProtoNHRP, registration(t))},
		{Meta{Time: now + 4000, Point: Outer, Dir: Out, UDP: true, Local: v6l, Peer: v6p}, greBytes(gre.ProtoIPv4, icmp)},
	}
}

func writeSample(t testing.TB, w io.Writer) {
	t.Helper()
	wr, err := NewWriter(w, WriterOptions{Points: PointInner | PointOuter, Device: "dmvpn0", Node: "hub", Filter: "not tcp"})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sample(t) {
		s.m.Len = len(s.data)
		if err := wr.Write(&s.m, s.data); err != nil {
			t.Fatal(err)
		}
	}
	var st [numPoints]Stats
	st[Inner] = Stats{Received: 2}
	st[Outer] = Stats{Received: 10, Dropped: 7}
	if err := wr.Close(st); err != nil {
		t.Fatal(err)
	}
}

// The file reads back with pcapgo: two RAW interfaces, every packet's
// direction, inner packets as they were, outer ones behind the IP (UDP)
// header made from their NBMA endpoints, and the drops in the statistics.
func TestWriterReadBack(t *testing.T) {
	var buf bytes.Buffer
	writeSample(t, &buf)
	r, err := pcapgo.NewNgReader(&buf, pcapgo.DefaultNgReaderOptions)
	if err != nil {
		t.Fatal(err)
	}
	want := sample(t)
	for i := range want {
		data, ci, opts, err := r.ReadPacketDataWithOptions()
		if err != nil {
			t.Fatalf("packet %d: %v", i, err)
		}
		w := want[i]
		if ci.Timestamp.UnixNano() != w.m.Time {
			t.Errorf("packet %d: time %v", i, ci.Timestamp)
		}
		wantDir := pcapgo.NgEpbFlagDirectionOutbound
		if w.m.Dir == In {
			wantDir = pcapgo.NgEpbFlagDirectionInbound
		}
		if opts.Flags == nil || opts.Flags.Direction != wantDir {
			t.Errorf("packet %d: flags %+v, want direction %v", i, opts.Flags, wantDir)
		}
		if wantIf := int(w.m.Point); ci.InterfaceIndex != wantIf {
			t.Errorf("packet %d: interface %d, want %d", i, ci.InterfaceIndex, wantIf)
		}
		if ci.CaptureLength != ci.Length || ci.Length != len(data) {
			t.Errorf("packet %d: lengths %+v", i, ci)
		}
		p := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default)
		if data[0]>>4 == 6 {
			p = gopacket.NewPacket(data, layers.LayerTypeIPv6, gopacket.Default)
		}
		if el := p.ErrorLayer(); el != nil {
			t.Errorf("packet %d: %v", i, el.Error())
		}
		if w.m.Point == Inner {
			if !bytes.Equal(data, w.data) {
				t.Errorf("packet %d: inner packet changed", i)
			}
			continue
		}
		src, dst := endpoints(&w.m)
		var gotSrc, gotDst netip.Addr
		var payload []byte
		if ip4, ok := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4); ok {
			gotSrc, _ = netip.AddrFromSlice(ip4.SrcIP)
			gotDst, _ = netip.AddrFromSlice(ip4.DstIP)
			if int(ip4.Length) != len(data) || inet.Checksum(data[:20]) != 0 {
				t.Errorf("packet %d: IPv4 length %d of %d, checksum %x", i, ip4.Length, len(data), inet.Checksum(data[:20]))
			}
			payload = ip4.Payload
		} else if ip6, ok := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6); ok {
			gotSrc, _ = netip.AddrFromSlice(ip6.SrcIP)
			gotDst, _ = netip.AddrFromSlice(ip6.DstIP)
			payload = ip6.Payload
		}
		if gotSrc.Unmap() != src.Addr() || gotDst.Unmap() != dst.Addr() {
			t.Errorf("packet %d: %v -> %v, want %v -> %v", i, gotSrc, gotDst, src, dst)
		}
		if w.m.UDP {
			u, ok := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !ok || uint16(u.SrcPort) != src.Port() || uint16(u.DstPort) != dst.Port() || int(u.Length) != len(payload) {
				t.Fatalf("packet %d: UDP %+v", i, u)
			}
			if src.Addr().Is6() {
				acc := inet.Sum(0, data[8:40]) + uint32(len(payload)) + inet.ProtoUDP
				if s := inet.Fold(inet.Sum(acc, payload)); s != 0xffff {
					t.Errorf("packet %d: IPv6 UDP checksum wrong (sum %x)", i, s)
				}
			}
			payload = payload[8:]
		} else if g, ok := p.Layer(layers.LayerTypeGRE).(*layers.GRE); !ok || g.Key != 42 {
			t.Errorf("packet %d: GRE %+v", i, g)
		}
		if !bytes.Equal(payload, w.data) {
			t.Errorf("packet %d: GRE packet changed", i)
		}
	}
	if _, _, err := r.ReadPacketData(); !errors.Is(err, io.EOF) {
		t.Errorf("after the packets: %v", err)
	}
	if r.NInterfaces() != 2 {
		t.Fatalf("%d interfaces", r.NInterfaces())
	}
	in, _ := r.Interface(0)
	out, _ := r.Interface(1)
	if in.Name != "dmvpn0" || out.Name != "dmvpn0-nbma" || in.LinkType != layers.LinkTypeRaw || out.LinkType != layers.LinkTypeRaw || in.Filter != "not tcp" {
		t.Errorf("interfaces %+v, %+v", in, out)
	}
	if out.Statistics.PacketsDropped != 7 || out.Statistics.PacketsReceived != 10 || in.Statistics.PacketsDropped != 0 {
		t.Errorf("statistics: inner %+v, outer %+v", in.Statistics, out.Statistics)
	}
	if r.SectionInfo().Application != "dmvpn capture" || r.SectionInfo().Comment != "dmvpn node hub" {
		t.Errorf("section %+v", r.SectionInfo())
	}
}

// tshark reads the file: every frame decodes, 0 Malformed, no expert
// warning; GRE (raw and in UDP) shows its key and the inner IPv4 or NHRP.
func TestWriterTshark(t *testing.T) {
	tshark := testenv.RequireTool(t, "tshark")
	path := filepath.Join(t.TempDir(), "sample.pcapng")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	writeSample(t, f)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, tshark, "-n", "-r", path, "-T", "fields", "-E", "separator=|",
		"-e", "frame.interface_name", "-e", "frame.packet_flags_direction", "-e", "frame.protocols",
		"-e", "gre.key", "-e", "nhrp.hdr.op.type", "-e", "nhrp.hdr.chksum.status",
		"-e", "_ws.malformed", "-e", "_ws.expert.severity")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v: %s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	// interface | direction (1 in, 2 out) | protocols | GRE key | NHRP
	// type | NHRP checksum status (1: good) | Malformed | expert severity
	want := []string{
		"dmvpn0|0x00000002|raw:ip:icmp:data|||||",
		"dmvpn0|0x00000001|raw:ip:icmp:data|||||",
		"dmvpn0-nbma|0x00000001|raw:ip:gre:ip:icmp:data|0x0000002a||||",
		"dmvpn0-nbma|0x00000002|raw:ip:udp:gre:nhrp|0x0000002a|3|1||",
		"dmvpn0-nbma|0x00000002|raw:ipv6:udp:gre:ip:icmp:data|0x0000002a||||",
	}
	if len(lines) != len(want) {
		t.Fatalf("tshark shows %d frames, want %d:\n%s", len(lines), len(want), out)
	}
	for i, l := range lines {
		if l != want[i] {
			t.Errorf("frame %d: %q, want %q", i+1, l, want[i])
		}
	}
}

package engine

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
)

// frrCapture is FRR nhrpd 8.4's registration with a dynamic NHS, captured
// in the project's FRR lab (../shared/lab/vm/captures; kept outside the
// repo like the other real captures, so a bare clone skips this test).
const frrCapture = "../../../shared/lab/vm/captures/frr84_nhrpd_spoke_regreq_to_silent_hub.pcap"

// TestFRRDynamicNHSRegistrationCapture feeds the NHRP packets of the FRR
// capture to a hub: FRR puts its own address in the destination field and
// learns the hub's address from the reply's, so the reply must carry the
// hub's own address (finding 9a of the hardening review).
func TestFRRDynamicNHSRegistrationCapture(t *testing.T) {
	path := filepath.FromSlash(frrCapture)
	f, err := os.Open(path)
	if err != nil {
		t.Skipf("skipped: FRR capture %s not available (a bare clone has no ../shared): %v", path, err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:0"), Config{Address: pfx("10.255.0.1/24"), Server: true})
	n := 0
	for {
		data, _, err := r.ReadPacketData()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		pkt := gopacket.NewPacket(data, r.LinkType(), gopacket.Default)
		ip4, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		g, _ := pkt.Layer(layers.LayerTypeGRE).(*layers.GRE)
		if ip4 == nil || g == nil || g.Protocol != 0x2001 {
			continue
		}
		var req nhrp.Packet
		if err := req.Decode(g.Payload); err != nil || req.Type != nhrp.TypeRegistrationRequest {
			t.Fatalf("frame is not a registration request: %v %v", req.Type, err)
		}
		if req.DstProto != req.SrcProto || req.HopCount != 1 {
			t.Fatalf("not the FRR dynamic-NHS form: dst %v src %v hops %d", req.DstProto, req.SrcProto, req.HopCount)
		}
		from, _ := netip.AddrFromSlice(ip4.SrcIP.To4())
		w.log = nil
		hub.eng.HandlePacket(t0.Add(time.Duration(n)*time.Second), netip.AddrPortFrom(from, 0), nbma.TransportGRE, g.Payload)
		if len(w.queue) != 1 {
			t.Fatalf("frame %d: %d answers", n, len(w.queue))
		}
		var rep nhrp.Packet
		if err := rep.Decode(w.queue[0].pkt); err != nil {
			t.Fatal(err)
		}
		w.queue = nil
		if rep.Type != nhrp.TypeRegistrationReply || rep.RequestID != req.RequestID || rep.CIEs[0].Code != nhrp.CodeSuccess {
			t.Fatalf("reply %v id %d code %v", rep.Type, rep.RequestID, rep.CIEs[0].Code)
		}
		if rep.DstProto != ad("10.255.0.1") {
			t.Fatalf("reply destination %v: FRR would never learn the hub's address 10.255.0.1", rep.DstProto)
		}
		n++
	}
	if n == 0 {
		t.Fatal("no NHRP registration in the capture")
	}
	if e, ok := hub.cache.Get(ad("10.255.0.2")); !ok || e.NBMA.Addr() != ad("192.0.2.2") {
		t.Fatalf("FRR spoke not registered: %+v %v", e, ok)
	}
	t.Logf("%d FRR registrations answered with the hub's own address", n)
}

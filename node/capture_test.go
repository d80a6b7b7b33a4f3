package node

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/dmvpn/dmvpn/capture"
)

// A capture on a spoke's overlay and one on the hub's underlay see a ping
// between two spokes: the echo leaving spoke1's TUN, and at the hub the GRE
// packet arriving from spoke1 and the one relayed to spoke2.
func TestCaptureOnNodes(t *testing.T) {
	tn := newTestNet(t)
	hub := tn.start(hubYAML, "10.1.0.0/24")
	s1 := tn.start(spokeYAML(1, "198.51.100.1", "gre", 42, "lab"), "10.1.1.0/24")
	s2 := tn.start(spokeYAML(2, "198.51.100.65", "gre", 42, "lab"), "10.1.2.0/24")
	eventually(t, "registered", func() bool { return registered(s1) && registered(s2) })

	icmp, err := capture.ParseFilter("icmp")
	if err != nil {
		t.Fatal(err)
	}
	type run struct {
		out  bytes.Buffer
		res  capture.Result
		err  error
		done chan struct{}
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := func(n *testNode, points capture.Points) *run {
		s, err := n.n.StartCapture(capture.Options{Points: points, Filter: icmp})
		if err != nil {
			t.Fatal(err)
		}
		r := &run{done: make(chan struct{})}
		go func() {
			defer close(r.done)
			r.res, r.err = s.Run(ctx, &r.out, nil)
		}()
		return r
	}
	inner := start(s1, capture.PointInner)
	outer := start(hub, capture.PointOuter)
	ping(t, s1, s2, "10.1.1.10", "10.1.2.10")
	cancel()
	for _, r := range []*run{inner, outer} {
		<-r.done
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	if inner.res.Captured != 1 || outer.res.Captured != 2 {
		t.Fatalf("inner %v; outer %v", inner.res, outer.res)
	}
	check := func(name string, b []byte, wantIf string, wantLayers ...gopacket.LayerType) {
		r, err := pcapgo.NewNgReader(bytes.NewReader(b), pcapgo.DefaultNgReaderOptions)
		if err != nil {
			t.Fatal(err)
		}
		for {
			data, ci, err := r.ReadPacketData()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			intf, _ := r.Interface(ci.InterfaceIndex)
			if intf.Name != wantIf {
				t.Errorf("%s: interface %q, want %q", name, intf.Name, wantIf)
			}
			p := gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default)
			var got []gopacket.LayerType
			for _, l := range p.Layers() {
				got = append(got, l.LayerType())
			}
			if len(got) < len(wantLayers) {
				t.Errorf("%s: layers %v, want %v", name, got, wantLayers)
				continue
			}
			for i, w := range wantLayers {
				if got[i] != w {
					t.Errorf("%s: layers %v, want %v", name, got, wantLayers)
					break
				}
			}
		}
	}
	check("spoke1 inner", inner.out.Bytes(), "dmvpn0", layers.LayerTypeIPv4, layers.LayerTypeICMPv4)
	check("hub outer", outer.out.Bytes(), "dmvpn0-nbma", layers.LayerTypeIPv4, layers.LayerTypeGRE, layers.LayerTypeIPv4, layers.LayerTypeICMPv4)
}

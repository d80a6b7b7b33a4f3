package engine

import (
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/localroute"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// phase3 builds hub + two spokes on the wire with the routes phase 3 uses.
func phase3(t *testing.T) (w *wire, hub, s1, s2 *node) {
	w = newWire(t)
	hcfg := hubConfig()
	hcfg.Redirect = true
	hcfg.Routes = fib.New()
	hcfg.Routes.Add(fib.Route{Prefix: pfx("10.1.2.0/24"), NextHop: ad("10.0.0.12"), Source: fib.SourceStatic})
	hcfg.Routes.Add(fib.Route{Prefix: pfx("10.1.1.0/24"), NextHop: ad("10.0.0.11"), Source: fib.SourceStatic})
	hub = w.add(ap("192.0.2.1:4754"), hcfg)
	spoke := func(addr, lan string, nbmaAddr string) *node {
		c := spokeConfig(addr)
		c.Shortcut = true
		c.Transport = nbma.TransportUDP
		c.Routes = fib.New()
		c.Routes.Add(fib.Route{Prefix: pfx("10.0.0.0/24"), Source: fib.SourceConnected})
		c.Routes.Add(fib.Route{Prefix: pfx("10.1.0.0/16"), NextHop: ad("10.0.0.1"), Source: fib.SourceStatic})
		c.Host = localroute.NewStatic(pfx(lan))
		return w.add(ap(nbmaAddr), c)
	}
	s1 = spoke("10.0.0.11/24", "10.1.1.0/24", "198.51.100.1:4754")
	s2 = spoke("10.0.0.12/24", "10.1.2.0/24", "198.51.100.65:4754")
	for _, n := range []*node{hub, s1, s2} {
		n.eng.Start(t0)
	}
	w.pump(t0)
	return w, hub, s1, s2
}

func TestRedirectResolveShortcut(t *testing.T) {
	w, hub, s1, s2 := phase3(t)
	pkt := make([]byte, 28)
	pkt[0] = 0x45
	copy(pkt[12:], ad("10.1.1.10").AsSlice())
	copy(pkt[16:], ad("10.1.2.10").AsSlice())
	hub.eng.Redirect(t0, s1.nbma, nbma.TransportUDP, pkt)
	w.pump(t0)
	r, ok := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10"))
	if !ok || r.Source != fib.SourceNHRP || r.Prefix != pfx("10.1.2.0/24") || r.NextHop != ad("10.0.0.12") {
		t.Fatalf("spoke1 route %+v %v", r, ok)
	}
	if e, _ := s1.cache.Get(ad("10.0.0.12")); e.Type != cache.Resolved || e.NBMA != s2.nbma || !e.Direct {
		t.Fatalf("spoke1 mapping %+v", e)
	}
	if e, _ := s2.cache.Get(ad("10.0.0.11")); e.Type != cache.Resolved || e.NBMA != s1.nbma {
		t.Fatalf("owner's mapping of the requester %+v", e)
	}
	// Rate limit: 4 indications per (source, destination), then quiet.
	for i := 0; i < 10; i++ {
		hub.eng.Redirect(t0, s1.nbma, nbma.TransportUDP, pkt)
	}
	if got := hub.eng.Stats().RedirectsSent; got != 4 {
		t.Fatalf("%d redirects sent, want 4 (rate limit)", got)
	}
	hub.eng.Redirect(t0.Add(2*time.Second), s1.nbma, nbma.TransportUDP, pkt)
	if got := hub.eng.Stats().RedirectsSent; got != 5 {
		t.Fatalf("%d redirects sent after tokens refilled, want 5", got)
	}

	// The owner leaves: its purge removes the shortcut at the requester,
	// and the hub purges those it told about it.
	w.queue = nil
	s2.eng.Shutdown(t0.Add(3 * time.Second))
	w.pump(t0.Add(3 * time.Second))
	if r, _ := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); r.Source == fib.SourceNHRP {
		t.Fatalf("shortcut survived the owner's purge: %+v", r)
	}
	if _, ok := s1.cache.Get(ad("10.0.0.12")); ok {
		t.Fatal("mapping survived the purge")
	}
}

func TestResolutionLoopAndHopCount(t *testing.T) {
	w, hub, _, _ := phase3(t)
	req := nhrp.Packet{HopCount: 255, Type: nhrp.TypeResolutionRequest, RequestID: 77, SrcNBMA: ad("198.51.100.1"),
		SrcProto: ad("10.0.0.11"), DstProto: ad("10.1.2.10"), CIEs: []nhrp.CIE{{HoldingTime: 60}}}
	auth, _ := nhrp.NewCiscoAuthentication([]byte("lab"))
	// The request already went through this hub: loop.
	req.Extensions = []nhrp.Extension{nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS, nhrp.SelfCIE(ad("192.0.2.1"), ad("10.0.0.1"), 1400, 60)), auth, nhrp.NewEnd()}
	b, _ := req.AppendEncode(nil)
	w.queue = nil
	hub.eng.HandlePacket(t0, ap("198.51.100.1:4754"), nbma.TransportUDP, b)
	var ei nhrp.Packet
	if len(w.queue) != 1 || ei.Decode(w.queue[0].pkt) != nil || ei.Type != nhrp.TypeErrorIndication || ei.Code != uint16(nhrp.ErrLoopDetected) {
		t.Fatalf("loop: got %d packets, %v code %d", len(w.queue), ei.Type, ei.Code)
	}
	// Hop count 1 cannot be forwarded.
	req.Extensions = []nhrp.Extension{auth, nhrp.NewEnd()}
	req.HopCount = 1
	b, _ = req.AppendEncode(nil)
	w.queue = nil
	hub.eng.HandlePacket(t0.Add(2*time.Second), ap("198.51.100.1:4754"), nbma.TransportUDP, b)
	if len(w.queue) != 1 || ei.Decode(w.queue[0].pkt) != nil || ei.Code != uint16(nhrp.ErrHopCountExceeded) {
		t.Fatalf("hop count: %d packets, code %d", len(w.queue), ei.Code)
	}
	// Nobody owns it: a negative reply (CIE code 12).
	req.HopCount = 255
	req.DstProto = ad("10.9.9.9")
	b, _ = req.AppendEncode(nil)
	w.queue = nil
	hub.eng.HandlePacket(t0.Add(4*time.Second), ap("198.51.100.1:4754"), nbma.TransportUDP, b)
	var rep nhrp.Packet
	if len(w.queue) != 1 || rep.Decode(w.queue[0].pkt) != nil || rep.Type != nhrp.TypeResolutionReply || rep.CIEs[0].Code != nhrp.CodeNoBindingExists {
		t.Fatalf("negative reply: %+v", rep)
	}
}

func TestErrorIndicationFailsPendingResolutionAtOnce(t *testing.T) {
	w, hub, s1, _ := phase3(t)
	hub.eng.cfg.Authentication = []byte("other")
	a, _ := nhrp.NewCiscoAuthentication([]byte("other"))
	hub.eng.auth = &a
	w.queue = nil
	s1.eng.Resolve(t0, ad("10.1.2.10"))
	w.pump(t0)
	if _, pending := s1.eng.pending[ad("10.1.2.10")]; pending {
		t.Fatal("resolution still pending after the NHS's Error Indication")
	}
	if e, ok := s1.cache.Get(ad("10.1.2.10")); !ok || e.Type != cache.Negative {
		t.Fatalf("no negative entry: %+v", e)
	}
	// And it is not retried while negative.
	before := w.sent(nhrp.TypeResolutionRequest)
	s1.eng.Resolve(t0.Add(time.Second), ad("10.1.2.10"))
	if w.sent(nhrp.TypeResolutionRequest) != before || len(w.queue) != 0 {
		t.Fatal("re-resolved a negative entry")
	}
}

func TestDeadShortcutFallsBack(t *testing.T) {
	w, hub, s1, s2 := phase3(t)
	// Replies reach spoke1 only through the hub (as if spoke2's direct
	// packets were filtered), so the shortcut is not known to work.
	w.drop = func(f frame) bool { return f.from == s2.nbma && f.to == s1.nbma }
	pkt := make([]byte, 28)
	pkt[0] = 0x45
	copy(pkt[12:], ad("10.1.1.10").AsSlice())
	copy(pkt[16:], ad("10.1.2.10").AsSlice())
	hub.eng.Redirect(t0, s1.nbma, nbma.TransportUDP, pkt)
	w.pump(t0)
	// The owner's direct answer was lost; the request times out and the
	// destination is remembered as negative: traffic stays on the hub.
	now := t0
	for i := 0; i < 16; i++ { // retries at 1, 3, 7 s; gives up at 15 s
		now = now.Add(time.Second)
		s1.eng.Tick(now)
		w.pump(now)
	}
	if r, _ := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); r.Source == fib.SourceNHRP {
		t.Fatalf("a shortcut was installed though no answer arrived: %+v", r)
	}
	if e, ok := s1.cache.Get(ad("10.1.2.10")); !ok || e.Type != cache.Negative {
		t.Fatalf("no negative entry after the failed resolution: %+v %v", e, ok)
	}

	// A shortcut whose peer never answers directly while in use is
	// dropped after the probe time.
	w.drop = nil
	s1.eng.ClearShortcuts()
	s1.eng.mu.Lock()
	s1.eng.installPeer(now, ad("10.0.0.12"), s2.nbma, nbma.TransportUDP, s2.nbma.Addr(), false, false, time.Minute, ad("10.1.2.10"))
	s1.eng.addShortcutRoute(pfx("10.1.2.0/24"), ad("10.0.0.12"))
	s1.eng.mu.Unlock()
	e, _ := s1.cache.Get(ad("10.0.0.12"))
	e.Used.Store(true)
	s1.eng.Tick(now.Add(probeTimeout))
	if r, _ := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); r.Source == fib.SourceNHRP {
		t.Fatalf("dead shortcut kept: %+v", r)
	}
}

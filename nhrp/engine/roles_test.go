package engine

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/fib"
	"github.com/dmvpn/dmvpn/internal/ratelimit"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

// The attacker of these tests knows the tunnel's secret ("lab") and can put
// any source address on its packets, as from a namespace on the lab's
// internet router.
var attacker = ap("203.0.113.66:4754")

// forge encodes p as the attacker would: with the cloud's secret.
func forge(t testing.TB, p *nhrp.Packet) []byte {
	t.Helper()
	if p.HopCount == 0 {
		p.HopCount = 255
	}
	auth, err := nhrp.NewCiscoAuthentication([]byte("lab"))
	if err != nil {
		t.Fatal(err)
	}
	p.Extensions = append(p.Extensions, auth, nhrp.NewEnd())
	b, err := p.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// inject queues a forged packet as coming from from.
func (w *wire) inject(from, to netip.AddrPort, pkt []byte) {
	w.queue = append(w.queue, frame{from: from, to: to, pkt: pkt})
}

func regRequest(src, dst netip.Addr, nbma netip.Addr, hold uint16, cies int) *nhrp.Packet {
	p := &nhrp.Packet{Type: nhrp.TypeRegistrationRequest, SrcNBMA: nbma, SrcProto: src, DstProto: dst,
		RequestID: 77, Flags: nhrp.FlagRegistrationU}
	for i := 0; i < cies; i++ {
		p.CIEs = append(p.CIEs, nhrp.CIE{PrefixLength: 32, MTU: 1400, HoldingTime: hold})
	}
	return p
}

func dropped(n *node, r DropReason) uint64 { return n.eng.Stats().Dropped[r] }

func TestRegistrationWithoutCIEsDroppedEverywhere(t *testing.T) {
	w, hub, s1, _ := phase3(t)
	for _, to := range []*node{hub, s1} {
		w.inject(attacker, to.nbma, forge(t, regRequest(ad("10.0.0.99"), ad("10.0.0.1"), attacker.Addr(), 60, 0)))
	}
	w.pump(t0)
	if dropped(hub, DropNoCIE) != 1 || dropped(s1, DropNotServer) != 1 {
		t.Fatalf("hub %+v spoke %+v", hub.eng.Stats().Dropped, s1.eng.Stats().Dropped)
	}
	if _, ok := hub.cache.Get(ad("10.0.0.99")); ok {
		t.Fatal("registered without a CIE")
	}
}

func TestSpokeIsNoNHS(t *testing.T) {
	w, _, s1, s2 := phase3(t)
	// Claim spoke2's address at spoke1, for as long as the field allows.
	w.inject(attacker, s1.nbma, forge(t, regRequest(ad("10.0.0.12"), ad("10.0.0.11"), attacker.Addr(), 65535, 1)))
	w.pump(t0)
	if e, ok := s1.cache.Get(ad("10.0.0.12")); ok {
		t.Fatalf("spoke1 took a registration: %+v", e)
	}
	if dropped(s1, DropNotServer) != 1 || w.sentTo(attacker) != 0 {
		t.Fatalf("dropped %+v, answered %d", s1.eng.Stats().Dropped, w.sentTo(attacker))
	}
	// The real shortcut still comes up.
	redirect(t, w, s1)
	if e, _ := s1.cache.Get(ad("10.0.0.12")); e.Type != cache.Resolved || e.NBMA != s2.nbma {
		t.Fatalf("shortcut %+v", e)
	}
}

func (w *wire) sentTo(to netip.AddrPort) int {
	n := 0
	for _, f := range w.log {
		if f.to == to {
			n++
		}
	}
	return n
}

// redirect makes the hub redirect spoke1's traffic for 10.1.2.10.
func redirect(t *testing.T, w *wire, s1 *node) {
	t.Helper()
	hub := w.nodes[ad("192.0.2.1")]
	hub.eng.Redirect(t0, s1.nbma, nbma.TransportUDP, ipPacket("10.1.1.10", "10.1.2.10"))
	w.pump(t0)
}

func ipPacket(src, dst string) []byte {
	pkt := make([]byte, 28)
	pkt[0] = 0x45
	copy(pkt[12:], ad(src).AsSlice())
	copy(pkt[16:], ad(dst).AsSlice())
	return pkt
}

func TestTrafficIndicationOnlyFromNHS(t *testing.T) {
	w, hub, s1, _ := phase3(t)
	ti := func() []byte {
		return forge(t, &nhrp.Packet{Type: nhrp.TypeTrafficIndication, HopCount: 1, SrcNBMA: attacker.Addr(),
			SrcProto: ad("10.0.0.1"), DstProto: ad("10.1.1.10"), Payload: ipPacket("10.1.1.10", "10.1.2.10")})
	}
	w.inject(attacker, s1.nbma, ti())
	w.pump(t0)
	if w.sent(nhrp.TypeResolutionRequest) != 0 || dropped(s1, DropNotFromNHS) != 1 {
		t.Fatalf("resolutions %d, dropped %+v", w.sent(nhrp.TypeResolutionRequest), s1.eng.Stats().Dropped)
	}
	// The same from the hub's address acts (it is the hub's role).
	w.inject(hub.nbma, s1.nbma, ti())
	w.pump(t0)
	if w.sent(nhrp.TypeResolutionRequest) == 0 {
		t.Fatal("a redirect from the NHS was ignored")
	}
}

func TestResolutionReplyMustAnswerTheQuestion(t *testing.T) {
	w, hub, s1, s2 := phase3(t)
	// Hold spoke2's answers back so the request stays pending.
	w.drop = func(f frame) bool { return f.to == hub.nbma && f.from == s2.nbma || f.to == s2.nbma }
	redirect(t, w, s1)
	var req nhrp.Packet
	for _, f := range w.log {
		if req.Decode(f.pkt) == nil && req.Type == nhrp.TypeResolutionRequest && f.from == s1.nbma {
			break
		}
	}
	if req.Type != nhrp.TypeResolutionRequest {
		t.Fatal("no resolution request")
	}
	id := req.RequestID
	reply := func(reqID uint32, dst string, prefixLen uint8, owner string, nbma netip.Addr) []byte {
		return forge(t, &nhrp.Packet{Type: nhrp.TypeResolutionReply, SrcNBMA: s1.nbma.Addr(), SrcProto: ad("10.0.0.11"),
			DstProto: ad(dst), RequestID: reqID, Flags: nhrp.FlagResolutionA,
			CIEs: []nhrp.CIE{{PrefixLength: prefixLen, HoldingTime: 65535, MTU: 1400, NBMA: nbma, Protocol: ad(owner)}}})
	}
	cases := []struct {
		name string
		from netip.AddrPort
		pkt  []byte
		why  DropReason
	}{
		{"guessed request ID", attacker, reply(id+1, "10.1.2.10", 25, "10.0.0.12", attacker.Addr()), DropUnsolicited},
		{"another destination", attacker, reply(id, "10.1.3.10", 25, "10.0.0.12", attacker.Addr()), DropWrongAnswer},
		{"not from the NHS or the owner", attacker, reply(id, "10.1.2.10", 25, "10.0.0.12", s2.nbma.Addr()), DropWrongAnswer},
		{"owner off the tunnel", attacker, reply(id, "10.1.2.10", 25, "192.0.2.99", attacker.Addr()), DropWrongAnswer},
		{"owner is the NHS", attacker, reply(id, "10.1.2.10", 25, "10.0.0.1", attacker.Addr()), DropWrongAnswer},
		{"wider than the route it refines", attacker, reply(id, "10.1.2.10", 8, "10.0.0.12", attacker.Addr()), DropWrongAnswer},
		{"spoofed NHS, wider prefix", hub.nbma, reply(id, "10.1.2.10", 15, "10.0.0.12", attacker.Addr()), DropWrongAnswer},
	}
	for _, c := range cases {
		before := dropped(s1, c.why)
		w.inject(c.from, s1.nbma, c.pkt)
		w.pump(t0)
		if dropped(s1, c.why) != before+1 {
			t.Errorf("%s: not dropped as %v: %+v", c.name, c.why, s1.eng.Stats().Dropped)
		}
		if r, _ := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); r.Source == fib.SourceNHRP {
			t.Fatalf("%s: installed %+v", c.name, r)
		}
	}
	for _, e := range s1.cache.All() {
		if e.NBMA.Addr() == attacker.Addr() {
			t.Fatalf("forged mapping %+v", e)
		}
	}
	// The real answer still counts.
	w.drop = nil
	w.queue = nil
	now := t0.Add(time.Second)
	s1.eng.Tick(now)
	w.pump(now)
	if r, _ := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); r.Source != fib.SourceNHRP || r.NextHop != ad("10.0.0.12") || r.Prefix != pfx("10.1.2.0/24") {
		t.Fatalf("real shortcut %+v", r)
	}
}

func TestSpoofedPurgeAndTakeoverChangeNothing(t *testing.T) {
	w, hub, s1, _ := phase3(t)
	purge := forge(t, &nhrp.Packet{Type: nhrp.TypePurgeRequest, SrcNBMA: s1.nbma.Addr(), SrcProto: ad("10.0.0.11"),
		DstProto: ad("10.0.0.1"), RequestID: 5, Flags: nhrp.FlagPurgeN, CIEs: []nhrp.CIE{{PrefixLength: 32, Protocol: ad("10.0.0.11")}}})
	w.inject(s1.nbma, hub.nbma, purge) // spoofed source: spoke1's own endpoint
	w.pump(t0)
	// The probe went to spoke1, which answered: the binding stays.
	if e, ok := hub.cache.Get(ad("10.0.0.11")); !ok || e.NBMA != s1.nbma {
		t.Fatalf("binding after the spoofed purge: %+v %v", e, ok)
	}
	if st := hub.eng.Stats(); st.ProbesSent != 1 || st.ProbesRefuted != 1 {
		t.Fatalf("probes %+v", st)
	}
	// Then the attacker registers spoke1's address with the unique flag.
	w.inject(attacker, hub.nbma, forge(t, regRequest(ad("10.0.0.11"), ad("10.0.0.1"), attacker.Addr(), 65535, 1)))
	w.pump(t0)
	for now := t0; now.Before(t0.Add(5 * time.Second)); now = now.Add(500 * time.Millisecond) {
		hub.eng.Tick(now)
		w.pump(now)
	}
	if e, ok := hub.cache.Get(ad("10.0.0.11")); !ok || e.NBMA != s1.nbma {
		t.Fatalf("binding after the takeover attempt: %+v %v", e, ok)
	}
	if hub.eng.Stats().ProbesRefuted != 2 {
		t.Fatalf("takeover not verified: %+v", hub.eng.Stats())
	}
	// A purge from anywhere else is not even probed.
	purge2 := forge(t, &nhrp.Packet{Type: nhrp.TypePurgeRequest, SrcNBMA: attacker.Addr(), SrcProto: ad("10.0.0.11"),
		DstProto: ad("10.0.0.1"), RequestID: 6, CIEs: []nhrp.CIE{{PrefixLength: 32, Protocol: ad("10.0.0.11")}}})
	w.inject(attacker, hub.nbma, purge2)
	w.pump(t0)
	if dropped(hub, DropNotOwner) < 2 {
		t.Fatalf("dropped %+v", hub.eng.Stats().Dropped)
	}
	// A spoofed refresh cannot shorten the holding time or drop the
	// unique flag.
	before, _ := hub.cache.Get(ad("10.0.0.11"))
	short := regRequest(ad("10.0.0.11"), ad("10.0.0.1"), s1.nbma.Addr(), 1, 1)
	short.Flags = 0
	w.inject(s1.nbma, hub.nbma, forge(t, short))
	w.pump(t0)
	after, _ := hub.cache.Get(ad("10.0.0.11"))
	if !after.Unique || after.Expires.Before(before.Expires) {
		t.Fatalf("refresh weakened the binding: before %+v after %+v", before, after)
	}
}

func TestSpoofedErrorIndicationIgnored(t *testing.T) {
	w, hub, s1, _ := phase3(t)
	if s1.eng.NHSStatus()[0].State != StateUp {
		t.Fatal("not registered")
	}
	for _, id := range []uint32{1, 2, 3, 0xdeadbeef} {
		off := regRequest(ad("10.0.0.11"), ad("10.0.0.1"), s1.nbma.Addr(), 60, 1)
		off.RequestID = id
		offending := forge(t, off)
		ei := &nhrp.Packet{Type: nhrp.TypeErrorIndication, HopCount: 255, SrcNBMA: hub.nbma.Addr(), SrcProto: ad("10.0.0.1"),
			DstProto: ad("10.0.0.11"), Code: uint16(nhrp.ErrAuthenticationFailure), Payload: offending}
		b, err := ei.AppendEncode(nil)
		if err != nil {
			t.Fatal(err)
		}
		w.inject(hub.nbma, s1.nbma, b) // spoofed: the hub's own address
	}
	w.pump(t0)
	if st := s1.eng.NHSStatus()[0]; st.State != StateUp {
		t.Fatalf("spoke1's NHS moved to %s by a forged Error Indication", st.State)
	}
	if dropped(s1, DropUnsolicited) != 4 {
		t.Fatalf("dropped %+v", s1.eng.Stats().Dropped)
	}
}

func TestResolutionFloodCreatesNoState(t *testing.T) {
	w, hub, _, s2 := phase3(t)
	hub.eng.cfg.MaxReceive = Rate{} // the per-source limit is tested apart
	base := hub.cache.Len()
	for i := 0; i < 20000; i++ {
		src := netip.AddrFrom4([4]byte{byte(10 + i%3), 0, byte(i >> 8), byte(i)})
		nbma := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		// Half for the hub's own LAN (it owns them), half for spoke2's.
		dst := "10.1.2.10"
		if i%2 == 0 {
			dst = "10.0.0.1"
		}
		req := &nhrp.Packet{Type: nhrp.TypeResolutionRequest, SrcNBMA: nbma, SrcProto: src, DstProto: ad(dst),
			RequestID: uint32(i), Flags: nhrp.FlagResolutionQ,
			CIEs: []nhrp.CIE{{PrefixLength: 32, HoldingTime: 65535}}}
		req.Extensions = nhrp.StandardRequestExtensions(nil, nil, nil)
		req.Extensions = req.Extensions[:len(req.Extensions)-1]
		w.inject(netip.AddrPortFrom(nbma, 4754), hub.nbma, forge(t, req))
		if len(w.queue) > 500 {
			w.pump(t0)
			w.log = w.log[:0]
		}
	}
	w.pump(t0)
	if hub.cache.Len() != base {
		t.Fatalf("hub cache grew from %d to %d", base, hub.cache.Len())
	}
	if s2.cache.Len() > 3 {
		t.Fatalf("spoke2 cache has %d entries: %+v", s2.cache.Len(), s2.cache.All())
	}
	if d := hub.eng.Stats().Dropped; d[DropOffSubnet]+d[DropNotRegistered] == 0 {
		t.Fatalf("dropped %+v", d)
	}
}

func TestPerSourceReceiveLimit(t *testing.T) {
	w, hub, _, _ := phase3(t)
	hub.eng.cfg.MaxReceive = Rate{Packets: 10, Interval: time.Second}
	hub.eng.recvLimit = ratelimit.NewPerSource(hub.eng.cfg.MaxReceive)
	for i := 0; i < 50; i++ {
		w.inject(attacker, hub.nbma, forge(t, regRequest(ad("10.0.0.99"), ad("10.0.0.1"), attacker.Addr(), 60, 1)))
	}
	w.pump(t0)
	if got := dropped(hub, DropRateLimited); got != 40 {
		t.Fatalf("rate limited %d of 50, want 40", got)
	}
}

func TestHoldingTimeCappedAndGranted(t *testing.T) {
	w := newWire(t)
	hcfg := hubConfig()
	hcfg.MaxHoldtime = 120 * time.Second
	hub := w.add(ap("192.0.2.1:4754"), hcfg)
	scfg := spokeConfig("10.0.0.11/24")
	scfg.Holdtime = 7200 * time.Second
	sp := w.add(ap("198.51.100.1:4754"), scfg)
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	e, _ := hub.cache.Get(ad("10.0.0.11"))
	if e.Expires != t0.Add(120*time.Second) {
		t.Fatalf("hub kept the spoke for %v", e.Expires.Sub(t0))
	}
	st := sp.eng.NHSStatus()[0]
	if st.Expires != t0.Add(120*time.Second) {
		t.Fatalf("spoke thinks it is registered for %v", st.Expires.Sub(t0))
	}
	if next := sp.eng.NextDeadline(); next != t0.Add(40*time.Second) {
		t.Fatalf("spoke refreshes at %v, want a third of what was granted", next.Sub(t0))
	}
}

func TestFRRStyleRegistrationLearnsTheHubAddress(t *testing.T) {
	// FRR nhrpd with a dynamic NHS puts its own address in the destination
	// field and hop count 1 (../shared/lab/vm README, "What FRR's
	// dynamic-NHS Registration Request looks like"); the conformance test
	// checks the same against FRR's capture.
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), Config{Address: pfx("10.0.0.1/24"), Server: true})
	frr := ap("198.51.100.7:4754")
	req := &nhrp.Packet{Type: nhrp.TypeRegistrationRequest, HopCount: 1, SrcNBMA: frr.Addr(), SrcProto: ad("10.0.0.7"),
		DstProto: ad("10.0.0.7"), RequestID: 9, Flags: nhrp.FlagCiscoNAT,
		CIEs: []nhrp.CIE{{PrefixLength: 32, MTU: 1400, HoldingTime: 7200}}}
	req.Extensions = []nhrp.Extension{nhrp.NewCIEExtension(nhrp.ExtForwardTransitNHS), nhrp.NewCIEExtension(nhrp.ExtReverseTransitNHS),
		nhrp.NewCIEExtension(nhrp.ExtResponderAddress), nhrp.NewNATAddress(), nhrp.NewEnd()}
	b, err := req.AppendEncode(nil)
	if err != nil {
		t.Fatal(err)
	}
	w.inject(frr, hub.nbma, b)
	w.pump(t0)
	var rep nhrp.Packet
	if err := rep.Decode(w.log[len(w.log)-1].pkt); err != nil || rep.Type != nhrp.TypeRegistrationReply {
		t.Fatalf("reply %v %v", rep.Type, err)
	}
	if rep.DstProto != ad("10.0.0.1") || rep.CIEs[0].Code != nhrp.CodeSuccess {
		t.Fatalf("reply destination %v code %v, want the hub's own address", rep.DstProto, rep.CIEs[0].Code)
	}
}

func TestAddressesThatCannotRegister(t *testing.T) {
	w, hub, _, _ := phase3(t)
	for _, a := range []string{"10.0.0.0", "10.0.0.255", "10.0.0.1", "10.9.0.5"} {
		w.inject(attacker, hub.nbma, forge(t, regRequest(ad(a), ad("10.0.0.1"), attacker.Addr(), 60, 1)))
	}
	// An IPv6 protocol type with 4-byte addresses.
	p := regRequest(ad("10.0.0.77"), ad("10.0.0.1"), attacker.Addr(), 60, 1)
	p.ProtocolType = nhrp.ProtoIPv6
	w.inject(attacker, hub.nbma, forge(t, p))
	w.pump(t0)
	for _, a := range []string{"10.0.0.0", "10.0.0.255", "10.9.0.5", "10.0.0.77"} {
		if _, ok := hub.cache.Get(ad(a)); ok {
			t.Errorf("%s registered", a)
		}
	}
	if dropped(hub, DropOffSubnet) != 4 || dropped(hub, DropWrongFamily) != 1 {
		t.Fatalf("dropped %+v", hub.eng.Stats().Dropped)
	}
}

func TestShortcutForAStaticPrefixWinsAndDoesNotLoop(t *testing.T) {
	w, _, s1, _ := phase3(t)
	// spoke1 routes spoke2's LAN by a static route of exactly the prefix
	// spoke2 answers with.
	s1.eng.cfg.Routes.Add(fib.Route{Prefix: pfx("10.1.2.0/24"), NextHop: ad("10.0.0.1"), Source: fib.SourceStatic})
	redirect(t, w, s1)
	if r, _ := s1.eng.cfg.Routes.Lookup(ad("10.1.2.10")); r.Source != fib.SourceNHRP {
		t.Fatalf("the shortcut is not in use: %+v", r)
	}
	n := w.sent(nhrp.TypeResolutionRequest)
	for i := 0; i < 10; i++ {
		w.nodes[ad("192.0.2.1")].eng.Redirect(t0.Add(time.Duration(i)*10*time.Second), s1.nbma, nbma.TransportUDP, ipPacket("10.1.1.10", "10.1.2.10"))
		w.pump(t0)
	}
	if got := w.sent(nhrp.TypeResolutionRequest); got != n {
		t.Fatalf("%d more resolutions after the shortcut was up", got-n)
	}
}

func TestCacheBoundsHold(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	hub.cache = cache.NewWithLimits(cache.Limits{MaxEntries: 20, MaxPerNBMA: 2})
	hub.eng.cache = hub.cache
	hub.eng.cfg.MaxReceive = Rate{}
	for i := 0; i < 100; i++ {
		nbma := netip.AddrFrom4([4]byte{198, 51, 100, byte(i / 5)})
		w.inject(netip.AddrPortFrom(nbma, uint16(1000+i)), hub.nbma,
			forge(t, regRequest(netip.AddrFrom4([4]byte{10, 0, 0, byte(10 + i)}), ad("10.0.0.1"), nbma, 60, 1)))
	}
	w.pump(t0)
	if n := hub.cache.Len(); n > 20 {
		t.Fatalf("%d entries", n)
	}
	for i := 0; i < 20; i++ {
		if n := hub.cache.CountNBMA(netip.AddrFrom4([4]byte{198, 51, 100, byte(i)})); n > 2 {
			t.Fatalf("%d entries at one NBMA address", n)
		}
	}
	if dropped(hub, DropCacheFull) == 0 {
		t.Fatalf("dropped %+v", hub.eng.Stats().Dropped)
	}
	_ = fmt.Sprint
}

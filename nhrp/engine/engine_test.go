package engine

import (
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/nhrp"
	"github.com/dmvpn/dmvpn/nhrp/cache"
)

var (
	ap  = netip.MustParseAddrPort
	ad  = netip.MustParseAddr
	pfx = netip.MustParsePrefix
	t0  = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

// wire is an in-memory NBMA network for engines: sends are queued and
// delivered by pump, so an engine never re-enters itself.
type wire struct {
	t     *testing.T
	nodes map[netip.Addr]*node
	queue []frame
	// nat rewrites the source of packets from an inside NBMA address.
	nat  map[netip.Addr]netip.AddrPort
	drop func(f frame) bool
	log  []frame
}

type frame struct {
	from, to netip.AddrPort
	pkt      []byte
}

type node struct {
	w     *wire
	nbma  netip.AddrPort
	eng   *Engine
	cache *cache.Cache
}

func (n *node) SendNHRP(to netip.AddrPort, _ nbma.Transport, pkt []byte) {
	from := n.nbma
	if pub, ok := n.w.nat[from.Addr()]; ok {
		from = pub
	}
	n.w.queue = append(n.w.queue, frame{from: from, to: to, pkt: append([]byte(nil), pkt...)})
}

func newWire(t *testing.T) *wire {
	return &wire{t: t, nodes: map[netip.Addr]*node{}, nat: map[netip.Addr]netip.AddrPort{}}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (w *wire) add(nbma netip.AddrPort, cfg Config) *node {
	n := &node{w: w, nbma: nbma, cache: cache.New()}
	cfg.NBMA = nbma.Addr()
	if cfg.MTU == 0 {
		cfg.MTU = 1400
	}
	if cfg.Holdtime == 0 {
		cfg.Holdtime = 60 * time.Second
	}
	e, err := New(cfg, n.cache, n, quiet())
	if err != nil {
		w.t.Fatal(err)
	}
	n.eng = e
	w.nodes[nbma.Addr()] = n
	return n
}

// pump delivers queued packets until the network is quiet.
func (w *wire) pump(now time.Time) {
	for i := 0; len(w.queue) > 0; i++ {
		if i > 1000 {
			w.t.Fatal("packet storm")
		}
		f := w.queue[0]
		w.queue = w.queue[1:]
		w.log = append(w.log, f)
		if w.drop != nil && w.drop(f) {
			continue
		}
		dst := f.to.Addr()
		for inside, pub := range w.nat {
			if pub.Addr() == dst {
				dst = inside
			}
		}
		if n, ok := w.nodes[dst]; ok {
			n.eng.HandlePacket(now, f.from, nbma.TransportUDP, f.pkt)
		}
	}
}

func (w *wire) sent(typ nhrp.Type) int {
	c := 0
	for _, f := range w.log {
		var p nhrp.Packet
		if p.Decode(f.pkt) == nil && p.Type == typ {
			c++
		}
	}
	return c
}

func hubConfig() Config {
	return Config{Address: pfx("10.0.0.1/24"), Authentication: []byte("lab"), Server: true}
}

func spokeConfig(addr string) Config {
	return Config{
		Address: pfx(addr), Authentication: []byte("lab"), Unique: true,
		NHS: []NHS{{Protocol: ad("10.0.0.1"), NBMA: ap("192.0.2.1:4754"), Transport: nbma.TransportUDP}},
	}
}

func TestRegistration(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)

	e, ok := hub.cache.Get(ad("10.0.0.11"))
	if !ok || e.Type != cache.Dynamic || e.NBMA != ap("198.51.100.1:4754") || !e.Unique || e.NAT {
		t.Fatalf("hub entry %+v %v", e, ok)
	}
	if e.Expires != t0.Add(60*time.Second) {
		t.Fatalf("expires %v", e.Expires)
	}
	st := sp.eng.NHSStatus()[0]
	if st.State != StateUp {
		t.Fatalf("spoke state %+v", st)
	}
	if nhs, _ := sp.cache.Get(ad("10.0.0.1")); !nhs.Up || nhs.Type != cache.Static || !nhs.Multicast {
		t.Fatalf("spoke's NHS entry %+v", nhs)
	}

	// Refresh at a third of the holding time keeps the entry alive past
	// the original expiry.
	now := t0
	for i := 0; i < 6; i++ {
		now = sp.eng.Tick(now.Add(0))
		if next := sp.eng.NextDeadline(); next.Sub(now) > 20*time.Second {
			t.Fatalf("next deadline %v after %v", next.Sub(now), now)
		}
		now = sp.eng.NextDeadline()
		sp.eng.Tick(now)
		w.pump(now)
		hub.eng.Tick(now)
	}
	if now.Sub(t0) < 100*time.Second {
		t.Fatalf("only advanced %v", now.Sub(t0))
	}
	if _, ok := hub.cache.Get(ad("10.0.0.11")); !ok {
		t.Fatal("refreshed entry expired")
	}
	if got := w.sent(nhrp.TypeRegistrationRequest); got < 6 {
		t.Fatalf("%d registrations sent", got)
	}
}

func TestRetryBackoffWhenNHSSilent(t *testing.T) {
	w := newWire(t)
	sp := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	sp.eng.Start(t0)
	var times []time.Duration
	now := t0
	for i := 0; i < 7; i++ {
		w.pump(now)
		times = append(times, now.Sub(t0))
		now = sp.eng.NextDeadline()
		sp.eng.Tick(now)
	}
	want := []time.Duration{0, 1, 3, 7, 15, 31, 47} // 1,2,4,8,16 s then capped
	for i := range want {
		want[i] *= time.Second
	}
	for i := range want {
		if times[i] != want[i] {
			t.Fatalf("registration times %v, want %v", times, want)
		}
	}
	if st := sp.eng.NHSStatus()[0]; st.State != StateRegistering {
		t.Fatalf("state %v", st.State)
	}
}

func TestUniqueAddressAlreadyRegistered(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	a := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	b := w.add(ap("198.51.100.65:4754"), spokeConfig("10.0.0.11/24"))
	hub.eng.Start(t0)
	a.eng.Start(t0)
	w.pump(t0)
	b.eng.Start(t0)
	w.pump(t0)
	st := b.eng.NHSStatus()[0]
	if st.State != StateRefused || !strings.Contains(st.LastError, "already registered") {
		t.Fatalf("second spoke: %+v", st)
	}
	if e, _ := hub.cache.Get(ad("10.0.0.11")); e.NBMA != a.nbma {
		t.Fatalf("owner replaced: %+v", e)
	}
	if hub.eng.Stats().RegistrationsRefused != 1 {
		t.Fatalf("stats %+v", hub.eng.Stats())
	}
}

func TestWrongAuthenticationRefusedWithErrorIndication(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	cfg := spokeConfig("10.0.0.11/24")
	cfg.Authentication = []byte("wrong")
	sp := w.add(ap("198.51.100.1:4754"), cfg)
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	if _, ok := hub.cache.Get(ad("10.0.0.11")); ok {
		t.Fatal("hub accepted a registration with the wrong secret")
	}
	st := sp.eng.NHSStatus()[0]
	if st.State != StateError || !strings.Contains(st.LastError, "authentication failure") {
		t.Fatalf("spoke: %+v", st)
	}
	if w.sent(nhrp.TypeErrorIndication) != 1 || hub.eng.Stats().AuthFailures != 1 {
		t.Fatalf("error indications %d, stats %+v", w.sent(nhrp.TypeErrorIndication), hub.eng.Stats())
	}
}

func TestExpiryAndPurge(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	s1 := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	s2 := w.add(ap("198.51.100.65:4754"), spokeConfig("10.0.0.12/24"))
	hub.eng.Start(t0)
	s1.eng.Start(t0)
	s2.eng.Start(t0)
	w.pump(t0)
	if hub.cache.Len() != 2 {
		t.Fatalf("hub has %d entries", hub.cache.Len())
	}
	// s1 shuts down cleanly and goes: purged as soon as the hub has
	// seen that it does not answer its liveness probes (1 s apart).
	s1.eng.Shutdown(t0.Add(time.Second))
	delete(w.nodes, s1.nbma.Addr())
	w.pump(t0.Add(time.Second))
	if _, ok := hub.cache.Get(ad("10.0.0.11")); !ok {
		t.Fatal("purge removed spoke1 before checking it was gone")
	}
	for _, at := range []time.Duration{2 * time.Second, 3 * time.Second} {
		if next := hub.eng.NextDeadline(); next != t0.Add(at) {
			t.Fatalf("next deadline %v, want the probe at %v", next.Sub(t0), at)
		}
		hub.eng.Tick(t0.Add(at))
		w.pump(t0.Add(at))
	}
	if _, ok := hub.cache.Get(ad("10.0.0.11")); ok {
		t.Fatal("purge did not remove spoke1")
	}
	if st := hub.eng.Stats(); st.ProbesSent != 2 || st.ProbesRefuted != 0 {
		t.Fatalf("probes %+v", st)
	}
	// s2 vanishes: its entry expires with the holding time.
	delete(w.nodes, s2.nbma.Addr())
	hub.eng.Tick(t0.Add(59 * time.Second))
	if _, ok := hub.cache.Get(ad("10.0.0.12")); !ok {
		t.Fatal("expired too early")
	}
	if next := hub.eng.NextDeadline(); next != t0.Add(60*time.Second) {
		t.Fatalf("next deadline %v", next)
	}
	hub.eng.Tick(t0.Add(60 * time.Second))
	if hub.cache.Len() != 0 {
		t.Fatalf("entries left: %+v", hub.cache.All())
	}
}

func TestPurgeOnlyByOwner(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	s1 := w.add(ap("198.51.100.1:4754"), spokeConfig("10.0.0.11/24"))
	evil := w.add(ap("198.51.100.66:4754"), spokeConfig("10.0.0.11/24"))
	hub.eng.Start(t0)
	s1.eng.Start(t0)
	w.pump(t0)
	evil.eng.mu.Lock()
	evil.eng.nhs[0].State = StateUp
	evil.eng.mu.Unlock()
	evil.eng.Shutdown(t0)
	w.pump(t0)
	if _, ok := hub.cache.Get(ad("10.0.0.11")); !ok {
		t.Fatal("a third party purged spoke1's registration")
	}
}

func TestNATedSpoke(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), hubConfig())
	sp := w.add(ap("192.168.3.2:4754"), spokeConfig("10.0.0.13/24"))
	w.nat[ad("192.168.3.2")] = ap("198.51.100.129:9880")
	hub.eng.Start(t0)
	sp.eng.Start(t0)
	w.pump(t0)
	e, ok := hub.cache.Get(ad("10.0.0.13"))
	if !ok || !e.NAT || e.NBMA != ap("198.51.100.129:9880") || e.ClaimedNBMA != ad("192.168.3.2") {
		t.Fatalf("hub entry %+v", e)
	}
	if e.Attributes() != "DN" {
		t.Fatalf("attributes %q", e.Attributes())
	}
	if st := sp.eng.NHSStatus()[0]; st.State != StateUp || st.NATAddress.Addr() != ad("198.51.100.129") {
		t.Fatalf("spoke status %+v", st)
	}
}

func TestMalformedAnsweredWithErrorIndication(t *testing.T) {
	w := newWire(t)
	hub := w.add(ap("192.0.2.1:4754"), Config{Address: pfx("10.0.0.1/24")})
	hub.eng.Start(t0)
	p := nhrp.Packet{HopCount: 255, Type: nhrp.TypeRegistrationRequest, SrcNBMA: ad("198.51.100.1"),
		SrcProto: ad("10.0.0.11"), DstProto: ad("10.0.0.1"), CIEs: []nhrp.CIE{{HoldingTime: 60}},
		Extensions: []nhrp.Extension{{Compulsory: true, Type: 0x3333}, nhrp.NewEnd()}}
	b, _ := p.AppendEncode(nil)
	hub.eng.HandlePacket(t0, ap("198.51.100.1:4754"), nbma.TransportUDP, b)
	if len(w.queue) != 1 {
		t.Fatalf("%d replies", len(w.queue))
	}
	var ei nhrp.Packet
	if err := ei.Decode(w.queue[0].pkt); err != nil {
		t.Fatal(err)
	}
	if ei.Type != nhrp.TypeErrorIndication || ei.Code != uint16(nhrp.ErrUnrecognizedExtension) || int(ei.ErrorOffset) != int(p.Len())-8 {
		t.Fatalf("got %v code %d offset %d", ei.Type, ei.Code, ei.ErrorOffset)
	}
	if _, ok := hub.cache.Get(ad("10.0.0.11")); ok {
		t.Fatal("registration with an unknown compulsory extension was accepted")
	}
	// A bad checksum is dropped silently, and garbage never crashes.
	b[len(b)-1] ^= 0xff
	w.queue = nil
	hub.eng.HandlePacket(t0.Add(2*time.Second), ap("198.51.100.1:4754"), nbma.TransportUDP, b)
	for _, junk := range [][]byte{nil, {1}, make([]byte, 40)} {
		hub.eng.HandlePacket(t0.Add(3*time.Second), ap("198.51.100.1:4754"), nbma.TransportUDP, junk)
	}
	if len(w.queue) != 0 {
		t.Fatalf("answered a packet that must be dropped silently: %d", len(w.queue))
	}
	if hub.eng.Stats().Malformed != 5 {
		t.Fatalf("malformed count %d", hub.eng.Stats().Malformed)
	}
}

package engine

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
)

// up builds a hub and a spoke with an SA between them.
func up(t *testing.T, rc, ic Config) (*testNet, *node, *node) {
	t.Helper()
	n := newNet(t)
	r := n.add(hubAddr, rc)
	i := n.add(spokeAddr, ic)
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(time.Second)
	checkPair(t, i, r)
	return n, i, r
}

// silence cuts a node off: nothing it sends arrives.
func silence(n *testNet, nd *node) {
	n.filter = func(f *frame) verdict {
		if f.from.Addr() == nd.addr {
			return dropIt
		}
		return deliver
	}
}

// DPD: after DPDInterval without hearing from the peer, an empty
// INFORMATIONAL; unanswered, retransmitted at 0.5, 1, 2, 4 s intervals;
// after the 8 s timeout the peer is dead: ChildSADown, then IKESADown.
func TestDPDDeclaresSilentPeerDead(t *testing.T) {
	cfg := Config{DPDInterval: 10 * time.Second}
	n, i, r := up(t, cfg, cfg)
	upAt := n.now.Add(-time.Second) // established at t0, within the first pump
	silence(n, r)
	n.runFor(time.Minute)
	var probes []time.Duration
	for _, f := range i.sentOf(ikev2.ExchangeInformational, false) {
		probes = append(probes, f.at.Sub(upAt))
	}
	want := []time.Duration{10 * time.Second, 10500 * time.Millisecond, 11500 * time.Millisecond,
		13500 * time.Millisecond, 17500 * time.Millisecond}
	if fmt.Sprint(probes) != fmt.Sprint(want) {
		t.Fatalf("probes at %v, want %v", probes, want)
	}
	down := i.of(IKESADown)
	if len(down) != 1 || down[0].Time.Sub(upAt) != 25500*time.Millisecond || !strings.HasPrefix(down[0].Reason, "dead peer") {
		t.Fatalf("down events %+v", down)
	}
	if len(i.of(ChildSADown)) != 1 || len(i.eng.SAs()) != 0 || i.eng.Stats().Dead != 1 {
		t.Fatalf("events %v, SAs %+v", types(i.events), i.eng.SAs())
	}
	// The silenced responder probes too (DPD on both sides): its probes
	// get no answer through the filter, so it declares us dead in turn.
	if len(r.of(IKESADown)) != 1 {
		t.Fatalf("responder events %v", types(r.events))
	}
}

// A peer that answers is probed once per idle interval and stays up; one
// whose ESP keeps arriving (Traffic) is never probed.
func TestDPDAnsweredAndTraffic(t *testing.T) {
	cfg := Config{DPDInterval: 10 * time.Second}
	n, i, r := up(t, Config{}, cfg)
	n.runFor(35 * time.Second)
	if got := len(i.sentOf(ikev2.ExchangeInformational, false)); got != 3 {
		t.Fatalf("%d probes in 36 s, want 3", got)
	}
	if len(i.of(IKESADown))+len(r.of(IKESADown)) != 0 {
		t.Fatal("an answering peer went down")
	}
	spi := i.liveChildren()[0].Inbound.SPI
	before := len(i.sentOf(ikev2.ExchangeInformational, false))
	for range 10 {
		i.eng.Traffic(n.now, spi)
		n.runFor(5 * time.Second)
	}
	if got := len(i.sentOf(ikev2.ExchangeInformational, false)) - before; got != 0 {
		t.Fatalf("%d probes with traffic flowing", got)
	}
	checkPair(t, i, r)
}

func TestDelete(t *testing.T) {
	for _, side := range []string{"initiator", "responder"} {
		t.Run(side, func(t *testing.T) {
			n, i, r := up(t, Config{}, Config{})
			del, other := i, r
			peer := hubEP
			if side == "responder" {
				del, other = r, i
				peer = r.established()[0].Peer
			}
			if err := del.eng.Delete(n.now, peer, "operator"); err != nil {
				t.Fatal(err)
			}
			// Down at once on the deleting side, Child SA first.
			if ev := types(del.events); !strings.HasSuffix(ev, "child-sa-down(operator) ike-sa-down(operator)") {
				t.Fatalf("deleting side: %s", ev)
			}
			n.runFor(time.Second)
			for _, nd := range []*node{del, other} {
				if len(nd.eng.SAs()) != 0 || len(nd.liveChildren()) != 0 {
					t.Fatalf("%s still holds %+v", nd.addr, nd.eng.SAs())
				}
			}
			if d := other.of(IKESADown); len(d) != 1 || d[0].Reason != "deleted by the peer" || len(other.of(ChildSADown)) != 1 {
				t.Fatalf("other side: %s", types(other.events))
			}
			// Nothing was retransmitted: the Delete was answered.
			if del.eng.Stats().Retransmitted != 0 {
				t.Fatal("the Delete was retransmitted")
			}
		})
	}
}

// A Delete the peer never answers is retransmitted, then forgotten.
func TestDeleteUnanswered(t *testing.T) {
	n, i, r := up(t, Config{}, Config{})
	silence(n, r)
	if err := i.eng.Delete(n.now, hubEP, "bye"); err != nil {
		t.Fatal(err)
	}
	n.runFor(time.Minute)
	if len(i.eng.SAs()) != 0 || i.eng.Stats().Retransmitted != 4 || len(i.of(IKESADown)) != 1 {
		t.Fatalf("SAs %+v, stats %+v, events %s", i.eng.SAs(), i.eng.Stats(), types(i.events))
	}
}

func TestDeleteChild(t *testing.T) {
	for _, side := range []string{"initiator", "responder"} {
		t.Run(side, func(t *testing.T) {
			n, i, r := up(t, Config{}, Config{})
			del, other := i, r
			if side == "responder" {
				del, other = r, i
			}
			spi := del.liveChildren()[0].Inbound.SPI
			if err := del.eng.DeleteChild(n.now, spi, "operator"); err != nil {
				t.Fatal(err)
			}
			n.runFor(time.Second)
			if len(del.liveChildren())+len(other.liveChildren()) != 0 {
				t.Fatal("Child SAs left")
			}
			if d := other.of(ChildSADown); len(d) != 1 || d[0].Child.Outbound.SPI != spi {
				t.Fatalf("other side: %s", types(other.events))
			}
			// The IKE SA stays.
			if len(i.established()) != 1 || len(r.established()) != 1 {
				t.Fatal("IKE SA gone with its Child SA")
			}
			if s := other.eng.Stats(); s.ChildSAs != 0 || s.IKESAs != 1 {
				t.Fatalf("stats %+v", s)
			}
		})
	}
}

// floodInit makes n distinct IKE_SA_INIT requests from distinct addresses
// (engines that initiate and whose datagrams we capture), and returns them.
func floodInit(t *testing.T, count int) []frame {
	t.Helper()
	n := newNet(t)
	var out []frame
	for k := range count {
		a := netip.AddrFrom4([4]byte{10, 9, byte(k >> 8), byte(k)})
		nd := n.add(a.String(), Config{Rand: seeded(byte(k))})
		if err := nd.eng.Initiate(n.now, hubEP); err != nil {
			t.Fatal(err)
		}
		out = append(out, nd.sent[0])
	}
	return out
}

// A flood of half-open IKE_SA_INITs from many addresses: past the cookie
// threshold the responder answers with cookies and keeps nothing; the
// legitimate initiator returns the cookie and gets through.
func TestCookiesUnderFlood(t *testing.T) {
	n := newNet(t)
	r := n.add(hubAddr, Config{CookieThreshold: 8, MaxHalfOpen: 16})
	i := n.add(spokeAddr, Config{})
	flood := floodInit(t, 100)
	for _, f := range flood {
		r.eng.HandlePacket(n.now, f.from, f.pkt)
	}
	s := r.eng.Stats()
	if s.HalfOpen != 8 || s.CookiesSent != 92 {
		t.Fatalf("after the flood: %d half open, %d cookies", s.HalfOpen, s.CookiesSent)
	}
	n.queue = nil // the flood's answers go nowhere
	if err := i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	n.runFor(time.Second)
	if len(i.established()) != 1 || len(i.liveChildren()) != 1 {
		t.Fatalf("legitimate initiator: %s", types(i.events))
	}
	if reqs := i.sentOf(ikev2.ExchangeIKESAInit, false); len(reqs) != 2 {
		t.Fatalf("%d IKE_SA_INIT requests, want 2 (the second with the cookie)", len(reqs))
	}
	espRoundTrip(t, i.liveChildren()[0], r.liveChildren()[0])
	// A forged cookie gets a fresh cookie, no state.
	f := flood[50] // one that was answered with a cookie
	forged := withCookie(t, f.pkt, make([]byte, 36))
	r.eng.HandlePacket(n.now, f.from, forged)
	if s := r.eng.Stats(); s.Dropped[DropBadCookie] != 1 || s.HalfOpen != 8 {
		t.Fatalf("forged cookie: %+v", s)
	}
	// The half-open SAs time out and the table empties.
	n.runFor(time.Minute)
	if s := r.eng.Stats(); s.HalfOpen != 0 || s.IKESAs != 1 {
		t.Fatalf("after the timeout: %+v", s)
	}
}

// withCookie returns the IKE_SA_INIT request msg with a COOKIE in front.
func withCookie(t *testing.T, msg, cookie []byte) []byte {
	t.Helper()
	var m ikev2.Message
	if err := m.Decode(msg); err != nil {
		t.Fatal(err)
	}
	b := ikev2.NewMessage(nil, &m.Header)
	b.Notify(&ikev2.Notify{Type: ikev2.NotifyCookie, Data: cookie})
	for k := range m.Payloads {
		b.Payload(&m.Payloads[k])
	}
	out, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// Without cookies (threshold above the cap) the hard cap holds; the table
// cap and the per-source rate hold too.
func TestBounds(t *testing.T) {
	flood := floodInit(t, 60)
	t.Run("half-open cap", func(t *testing.T) {
		n := newNet(t)
		r := n.add(hubAddr, Config{CookieThreshold: 1000, MaxHalfOpen: 20})
		for _, f := range flood {
			r.eng.HandlePacket(n.now, f.from, f.pkt)
		}
		if s := r.eng.Stats(); s.HalfOpen != 20 || s.Dropped[DropHalfOpenFull] != 40 {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("table cap", func(t *testing.T) {
		n := newNet(t)
		r := n.add(hubAddr, Config{CookieThreshold: 1000, MaxIKESAs: 10})
		for _, f := range flood {
			r.eng.HandlePacket(n.now, f.from, f.pkt)
		}
		if s := r.eng.Stats(); s.IKESAs != 10 || s.Dropped[DropTableFull] != 50 {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("per-source rate", func(t *testing.T) {
		n := newNet(t)
		r := n.add(hubAddr, Config{CookieThreshold: 1000, InitRate: Rate{Packets: 5, Interval: time.Second}})
		// 60 different requests, all from one address (different ports).
		for k, f := range flood {
			r.eng.HandlePacket(n.now, netip.AddrPortFrom(ad("10.8.8.8"), uint16(1000+k)), f.pkt)
		}
		if s := r.eng.Stats(); s.HalfOpen != 5 || s.Dropped[DropRateLimited] != 55 {
			t.Fatalf("%+v", s)
		}
	})
	t.Run("per-endpoint cap", func(t *testing.T) {
		n := newNet(t)
		r := n.add(hubAddr, Config{CookieThreshold: 1000, InitRate: Rate{Packets: 100, Interval: time.Second}})
		for _, f := range flood {
			r.eng.HandlePacket(n.now, ap("10.8.8.8:500"), f.pkt)
		}
		if s := r.eng.Stats(); s.HalfOpen != maxSAsPerPeer || s.Dropped[DropPeerLimit] != 60-maxSAsPerPeer {
			t.Fatalf("%+v", s)
		}
	})
}

// Several spokes behind one NAT (one public address, different ports)
// each get their own SA at the hub.
func TestSpokesBehindOneNAT(t *testing.T) {
	n := newNet(t)
	r := n.add(hubAddr, Config{})
	var spokes []*node
	for k := range 3 {
		s := n.add(fmt.Sprintf("192.168.1.%d", k+10), Config{})
		n.behindNAT(s, "203.0.113.50")
		spokes = append(spokes, s)
	}
	for _, s := range spokes {
		if err := s.eng.Initiate(n.now, hubEP); err != nil {
			t.Fatal(err)
		}
	}
	n.runFor(5 * time.Second)
	if got := len(r.established()); got != 3 {
		t.Fatalf("hub has %d SAs", got)
	}
	hubChildren := r.liveChildren()
	peers := map[netip.AddrPort]bool{}
	for _, c := range hubChildren {
		peers[c.Peer] = true
	}
	if len(hubChildren) != 3 || len(peers) != 3 {
		t.Fatalf("hub Child SAs %d for %d endpoints", len(hubChildren), len(peers))
	}
	for _, s := range spokes {
		c := s.liveChildren()
		if len(c) != 1 {
			t.Fatalf("spoke %v: %s", s.addr, types(s.events))
		}
		matched := false
		for _, h := range hubChildren {
			if h.Inbound.SPI == c[0].Outbound.SPI {
				espRoundTrip(t, c[0], h)
				espRoundTrip(t, h, c[0])
				matched = true
			}
		}
		if !matched {
			t.Fatalf("spoke %v has no partner at the hub", s.addr)
		}
	}
}

// Simultaneous initiation: two spokes start IKE toward each other. Each
// ordering is one row; at the end there is exactly one IKE SA and one
// Child SA pair, the same on both sides, and nothing failed.
func TestSimultaneousInitiation(t *testing.T) {
	const a, b = "198.51.100.1", "198.51.100.2"
	epA, epB := ap(a+":500"), ap(b+":500")
	rows := []struct {
		name string
		run  func(n *testNet, x, y *node)
	}{
		{"crossing requests", func(n *testNet, x, y *node) {
			must(n.t, x.eng.Initiate(n.now, epB))
			must(n.t, y.eng.Initiate(n.now, epA))
			n.runFor(5 * time.Second)
		}},
		{"crossing, the other order", func(n *testNet, x, y *node) {
			must(n.t, y.eng.Initiate(n.now, epA))
			must(n.t, x.eng.Initiate(n.now, epB))
			n.runFor(5 * time.Second)
		}},
		{"one answered before the other starts", func(n *testNet, x, y *node) {
			must(n.t, x.eng.Initiate(n.now, epB))
			n.pump()
			if err := y.eng.Initiate(n.now, epA); err == nil {
				n.t.Fatal("second initiation accepted with an SA up")
			}
			n.runFor(5 * time.Second)
		}},
		{"one starts while the other's IKE_AUTH is in flight", func(n *testNet, x, y *node) {
			must(n.t, x.eng.Initiate(n.now, epB))
			// Deliver IKE_SA_INIT request and response only.
			for range 2 {
				f := n.queue[0]
				n.queue = n.queue[1:]
				n.deliverFrame(f)
			}
			if err := y.eng.Initiate(n.now, epA); err == nil {
				n.t.Fatal("initiation accepted while half open")
			}
			n.runFor(5 * time.Second)
		}},
		{"crossing, every first datagram lost", func(n *testNet, x, y *node) {
			seen := map[int]bool{}
			n.filter = func(f *frame) verdict {
				h := f.header()
				k := int(h.Exchange)<<1 | btoi(h.IsResponse())
				if f.from.Addr() == x.addr {
					k |= 1 << 10
				}
				if !seen[k] {
					seen[k] = true
					return dropIt
				}
				return deliver
			}
			must(n.t, x.eng.Initiate(n.now, epB))
			must(n.t, y.eng.Initiate(n.now, epA))
			n.runFor(30 * time.Second)
		}},
		{"crossing, one request delayed past the other's exchange", func(n *testNet, x, y *node) {
			must(n.t, x.eng.Initiate(n.now, epB))
			must(n.t, y.eng.Initiate(n.now, epA))
			held := n.queue[0] // x's request, delivered last
			n.queue = n.queue[1:]
			n.pump()
			n.queue = append(n.queue, held)
			n.runFor(30 * time.Second)
		}},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			for seed := byte(1); seed <= 8; seed++ {
				n := newNet(t)
				x := n.add(a, Config{Rand: seeded(seed)})
				y := n.add(b, Config{Rand: seeded(seed + 100)})
				row.run(n, x, y)
				n.runFor(time.Minute) // let any half-open leftovers time out
				checkPair(t, x, y)
				crossed := strings.HasPrefix(row.name, "crossing")
				if c := x.eng.Stats().Collisions + y.eng.Stats().Collisions; crossed != (c > 0) {
					t.Fatalf("seed %d: %d collisions resolved", seed, c)
				}
				for _, nd := range []*node{x, y} {
					if len(nd.of(IKESAUp)) != 1 || len(nd.of(IKESAFailed))+len(nd.of(IKESADown)) != 0 {
						t.Fatalf("seed %d: %s: %s", seed, nd.addr, types(nd.events))
					}
				}
			}
		})
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// A restarted peer (new IKE SA with INITIAL_CONTACT) replaces the old SA.
func TestInitialContactReplaces(t *testing.T) {
	n, i, r := up(t, Config{}, Config{})
	// The spoke restarts: a fresh engine at the same address.
	i2 := n.add(spokeAddr, Config{Rand: seeded(77)})
	must(t, i2.eng.Initiate(n.now, hubEP))
	n.runFor(time.Second)
	if len(r.established()) != 1 || len(r.liveChildren()) != 1 {
		t.Fatalf("hub: %+v", r.eng.SAs())
	}
	if d := r.of(IKESADown); len(d) != 1 || !strings.Contains(d[0].Reason, "INITIAL_CONTACT") {
		t.Fatalf("hub events %s", types(r.events))
	}
	espRoundTrip(t, i2.liveChildren()[0], r.liveChildren()[0])
	_ = i
}

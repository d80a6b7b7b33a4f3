package engine

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

// plane is what a data plane builds from one node's events: the inbound
// SAs installed (kept keepOld after their ChildSADown, for packets in
// flight), the outbound SA of each Child SA, and the one outbound in use.
type plane struct {
	t       testing.TB
	name    string
	in      map[uint32]*esp.SA
	gone    map[uint32]time.Time // inbound SPI → when it was reported down
	out     map[uint32]*esp.SA   // by the Child SA's inbound SPI
	outSPI  map[uint32]uint32
	standby map[uint32]bool
	current uint32 // inbound SPI of the Child SA whose outbound is in use (0: none)
	seen    int    // events consumed
	// rekeyOnly: every ChildSADown must be of an SA not in use (a rekey
	// never takes the outbound away).
	rekeyOnly bool
}

const keepOld = 5 * time.Second

func newPlane(t testing.TB, name string) *plane {
	return &plane{t: t, name: name, in: map[uint32]*esp.SA{}, gone: map[uint32]time.Time{}, out: map[uint32]*esp.SA{},
		outSPI: map[uint32]uint32{}, standby: map[uint32]bool{}}
}

// follow consumes the node's new events, checking the contract at each.
func (p *plane) follow(nd *node) {
	p.t.Helper()
	for ; p.seen < len(nd.events); p.seen++ {
		ev := nd.events[p.seen]
		c := ev.Child
		switch ev.Type {
		case ChildSAUp:
			spi := c.Inbound.SPI
			if p.in[spi] != nil {
				p.t.Fatalf("%s: ChildSAUp for inbound %08x installed already", p.name, spi)
			}
			if c.Replaces != 0 && p.in[c.Replaces] == nil {
				p.t.Fatalf("%s: ChildSAUp %08x replaces %08x, which is not installed", p.name, spi, c.Replaces)
			}
			in, err := esp.NewInbound(c.InboundConfig())
			if err != nil {
				p.t.Fatal(err)
			}
			out, err := esp.NewOutbound(c.OutboundConfig())
			if err != nil {
				p.t.Fatal(err)
			}
			p.in[spi], p.out[spi], p.outSPI[spi] = in, out, c.Outbound.SPI
			if c.Standby {
				p.standby[spi] = true
			} else {
				p.current = spi
			}
		case ChildSAActive:
			spi := c.Inbound.SPI
			if !p.standby[spi] || p.in[spi] == nil {
				p.t.Fatalf("%s: ChildSAActive for %08x, not a standby SA installed", p.name, spi)
			}
			delete(p.standby, spi)
			p.current = spi
		case ChildSADown:
			spi := c.Inbound.SPI
			if p.in[spi] == nil {
				p.t.Fatalf("%s: ChildSADown for %08x, not installed", p.name, spi)
			}
			if spi == p.current {
				if p.rekeyOnly {
					p.t.Fatalf("%s: ChildSADown (%s) for %08x, the SA in use", p.name, ev.Reason, spi)
				}
				p.current = 0
			}
			if ev.Reason == "rekeyed" && (c.ReplacedBy == 0 || p.in[c.ReplacedBy] == nil) {
				p.t.Fatalf("%s: %08x rekeyed, replaced by %08x, not installed", p.name, spi, c.ReplacedBy)
			}
			p.gone[spi] = ev.Time
			delete(p.out, spi)
			delete(p.standby, spi)
		}
		if p.rekeyOnly && p.current == 0 && p.seen > 0 {
			p.t.Fatalf("%s: no outbound SA in use after %s", p.name, ev.Type)
		}
	}
}

// expire forgets inbound SAs reported down more than keepOld ago.
func (p *plane) expire(now time.Time) {
	for spi, at := range p.gone {
		if now.Sub(at) > keepOld {
			delete(p.in, spi)
			delete(p.gone, spi)
		}
	}
}

// seal seals a GRE packet on the outbound SA in use.
func (p *plane) seal(payload []byte) []byte {
	p.t.Helper()
	sa := p.out[p.current]
	if sa == nil {
		p.t.Fatalf("%s: nothing to send on", p.name)
	}
	buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
	copy(buf[esp.MaxHeaderLen:], payload)
	start, n, err := sa.Seal(buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderGRE)
	if err != nil {
		p.t.Fatal(err)
	}
	return buf[start : start+n]
}

// open opens an ESP packet with the inbound SA of its SPI.
func (p *plane) open(pkt []byte) error {
	spi, _, err := esp.ParseHeader(pkt)
	if err != nil {
		return err
	}
	sa := p.in[spi]
	if sa == nil {
		return fmt.Errorf("no inbound SA %08x", spi)
	}
	_, _, _, err = sa.Open(pkt)
	return err
}

// checkRekeyed asserts what every rekey row ends with: checkPair (one IKE
// SA, one Child SA pair, keys that agree), the SAs the engines list are
// the ones the events describe, and each side's event stream gave its data
// plane an outbound SA in use at every moment.
func checkRekeyed(t *testing.T, a, b *node) {
	t.Helper()
	checkPair(t, a, b)
	for _, nd := range []*node{a, b} {
		p := newPlane(t, nd.addr.String())
		p.rekeyOnly = true
		p.follow(nd)
		live := nd.liveChildren()
		sas := nd.eng.SAs()
		if len(sas[0].Children) != 1 || sas[0].Children[0].InboundSPI != live[0].Inbound.SPI ||
			sas[0].Children[0].State != "active" || p.current != live[0].Inbound.SPI {
			t.Fatalf("%s: engine lists %+v, events say %08x (in use: %08x)", nd.addr, sas[0].Children, live[0].Inbound.SPI, p.current)
		}
		if sas[0].NumChildren != 1 || sas[0].Group == 0 || sas[0].RekeyAt.IsZero() {
			t.Fatalf("%s: status %+v", nd.addr, sas[0])
		}
		// The IKE SA is the one the last IKESAUp/IKESARekeyed named.
		var last Event
		for _, ev := range nd.events {
			if ev.Type == IKESAUp || ev.Type == IKESARekeyed {
				last = ev
			}
		}
		if last.SPIi != sas[0].SPIi || last.SPIr != sas[0].SPIr {
			t.Fatalf("%s: IKE SA %v/%v, events name %v/%v", nd.addr, sas[0].SPIi, sas[0].SPIr, last.SPIi, last.SPIr)
		}
		for _, ev := range nd.events {
			if ev.Type == IKESADown || ev.Type == IKESAFailed || ev.Type == ChildSAFailed {
				t.Fatalf("%s: %s", nd.addr, types(nd.events))
			}
		}
	}
}

// frameFilter matches frames by exchange and direction.
func isExchange(f *frame, ex ikev2.ExchangeType, response bool) bool {
	h := f.header()
	return h.Exchange == ex && h.IsResponse() == response
}

// nthOf returns a filter dropping (or duplicating) the k-th frame of an
// exchange and direction.
func nthOf(ex ikev2.ExchangeType, response bool, k int, v verdict) func(*frame) verdict {
	seen := 0
	return func(f *frame) verdict {
		if !isExchange(f, ex, response) {
			return deliver
		}
		seen++
		if seen == k {
			return v
		}
		return deliver
	}
}

// holdFirst holds back the first frame matching and delivers it after the
// next n frames (reordering).
func holdFirst(n *testNet, ex ikev2.ExchangeType, response bool, after int) func(*frame) verdict {
	var held *frame
	count := -1
	return func(f *frame) verdict {
		if held == nil && count < 0 && isExchange(f, ex, response) {
			c := *f
			held = &c
			count = 0
			return dropIt
		}
		if held != nil {
			count++
			if count >= after {
				h := *held
				held = nil
				n.queue = append(n.queue, h)
			}
		}
		return deliver
	}
}

func TestRekeyExchanges(t *testing.T) {
	type op func(t *testing.T, n *testNet, i, r *node)
	rekeyChild := func(who func(i, r *node) *node) op {
		return func(t *testing.T, n *testNet, i, r *node) {
			nd := who(i, r)
			must(t, nd.eng.RekeyChild(n.now, nd.liveChildren()[0].Inbound.SPI))
		}
	}
	rekeyIKE := func(who func(i, r *node) *node) op {
		return func(t *testing.T, n *testNet, i, r *node) {
			nd := who(i, r)
			must(t, nd.eng.RekeyIKE(n.now, nd.established()[0].Peer))
		}
	}
	initiator := func(i, r *node) *node { return i }
	responder := func(i, r *node) *node { return r }
	ops := []struct {
		name string
		do   op
		ike  bool
	}{
		{"child/initiator", rekeyChild(initiator), false},
		{"child/responder", rekeyChild(responder), false},
		{"ike/initiator", rekeyIKE(initiator), true},
		{"ike/responder", rekeyIKE(responder), true},
	}
	nets := []struct {
		name  string
		setup func(n *testNet)
		retx  uint64 // retransmissions expected of the rekeying side
	}{
		{"clean", nil, 0},
		{"request lost", func(n *testNet) { n.filter = nthOf(ikev2.ExchangeCreateChildSA, false, 1, dropIt) }, 1},
		{"response lost", func(n *testNet) { n.filter = nthOf(ikev2.ExchangeCreateChildSA, true, 1, dropIt) }, 1},
		{"request duplicated", func(n *testNet) { n.filter = nthOf(ikev2.ExchangeCreateChildSA, false, 1, duplicate) }, 0},
		{"response duplicated", func(n *testNet) { n.filter = nthOf(ikev2.ExchangeCreateChildSA, true, 1, duplicate) }, 0},
		{"delete lost", func(n *testNet) { n.filter = nthOf(ikev2.ExchangeInformational, false, 1, dropIt) }, 1},
		{"response after the delete", func(n *testNet) { n.filter = holdFirst(n, ikev2.ExchangeCreateChildSA, true, 1) }, 1},
	}
	for _, o := range ops {
		for _, nw := range nets {
			t.Run(o.name+"/"+nw.name, func(t *testing.T) {
				n, i, r := up(t, Config{}, Config{})
				ike0 := i.established()[0]
				child0 := i.liveChildren()[0].Inbound.SPI
				if nw.setup != nil {
					nw.setup(n)
				}
				o.do(t, n, i, r)
				n.runFor(time.Minute)
				checkRekeyed(t, i, r)
				who := initiator(i, r)
				if strings.Contains(o.name, "responder") {
					who = r
				}
				if got := who.eng.Stats().Retransmitted; got != nw.retx {
					t.Errorf("retransmitted %d, want %d", got, nw.retx)
				}
				ike1 := i.established()[0]
				rk := i.of(IKESARekeyed)
				if o.ike {
					if ike1.SPIi == ike0.SPIi || len(rk) != 1 || len(r.of(IKESARekeyed)) != 1 ||
						rk[0].OldSPIi != ike0.SPIi || rk[0].OldSPIr != ike0.SPIr || rk[0].Initiator != (who == i) {
						t.Fatalf("IKE SA %v/%v after its rekey (was %v/%v): %+v", ike1.SPIi, ike1.SPIr, ike0.SPIi, ike0.SPIr, rk)
					}
					// No Child SA events for an IKE SA rekey.
					if i.liveChildren()[0].Inbound.SPI != child0 || len(i.of(ChildSAUp)) != 1 || len(r.of(ChildSAUp)) != 1 {
						t.Fatalf("Child SA events for an IKE rekey: %s", types(i.events))
					}
					if s := who.eng.Stats(); s.IKERekeys != 1 {
						t.Fatalf("stats %+v", s)
					}
					return
				}
				if ike1.SPIi != ike0.SPIi || len(rk) != 0 {
					t.Fatalf("the IKE SA changed with a Child SA rekey")
				}
				// The rekeying side: ChildSAUp(new, in use), ChildSADown(old,
				// rekeyed); the other: ChildSAUp(standby), ChildSAActive,
				// ChildSADown(old).
				other := r
				if who == r {
					other = i
				}
				wantWho := "child-sa-up() child-sa-up() child-sa-down(rekeyed)"
				wantOther := "child-sa-up() child-sa-up() child-sa-active() child-sa-down(rekeyed)"
				if got := types(childEvents(who.events)); got != wantWho {
					t.Fatalf("rekeying side: %s, want %s", got, wantWho)
				}
				if got := types(childEvents(other.events)); got != wantOther {
					t.Fatalf("other side: %s, want %s", got, wantOther)
				}
				if up := who.of(ChildSAUp)[1].Child; up.Standby || up.Replaces != child0 && up.Replaces != r.of(ChildSAUp)[0].Child.Inbound.SPI {
					t.Fatalf("rekeying side's new SA %+v", up)
				}
				if up := other.of(ChildSAUp)[1].Child; !up.Standby {
					t.Fatalf("other side's new SA not standby: %+v", up)
				}
				for _, nd := range []*node{i, r} {
					d := nd.of(ChildSADown)[0].Child
					if d.ReplacedBy != nd.liveChildren()[0].Inbound.SPI {
						t.Fatalf("%s: ChildSADown %+v, want replaced by %08x", nd.addr, d, nd.liveChildren()[0].Inbound.SPI)
					}
				}
			})
		}
	}
}

func childEvents(evs []Event) []Event {
	var out []Event
	for _, ev := range evs {
		if ev.Child != nil {
			out = append(out, ev)
		}
	}
	return out
}

// The rekey keys follow RFC 7296 §2.17 with the CREATE_CHILD_SA nonces
// (and, with PFS, g^ir): KEYMAT = prf+(SK_d, [g^ir |] Ni | Nr), the first
// half protecting what the rekey's initiator sends, here the IKE SA's
// responder.
func TestRekeyChildKeysFollowRFC(t *testing.T) {
	for _, pfs := range []ikecrypto.Group{0, ikecrypto.GroupCurve25519} {
		t.Run(fmt.Sprint("pfs=", pfs), func(t *testing.T) {
			n, i, r := up(t, Config{PFSGroup: pfs}, Config{PFSGroup: pfs})
			must(t, r.eng.RekeyChild(n.now, r.liveChildren()[0].Inbound.SPI))
			n.runFor(time.Minute)
			checkRekeyed(t, i, r)
			var sa *ikeSA
			for _, s := range r.eng.bySPI {
				sa = s
			}
			c := r.liveChildren()[0]
			if c.PFS != pfs || i.liveChildren()[0].PFS != pfs {
				t.Fatalf("PFS %v / %v, want %v", c.PFS, i.liveChildren()[0].PFS, pfs)
			}
			req, resp := r.sentOf(ikev2.ExchangeCreateChildSA, false), i.sentOf(ikev2.ExchangeCreateChildSA, true)
			if len(req) != 1 || len(resp) != 1 {
				t.Fatalf("%d requests, %d responses", len(req), len(resp))
			}
			ni := innerNonce(t, sa, req[0], false)
			nr := innerNonce(t, sa, resp[0], true)
			if pfs != 0 {
				// g^ir is gone with the exchange's private keys: with PFS
				// the keys are proven by the ESP round trip above, and
				// they differ from the KEYMAT without it.
				enc := c.Transform.EncKeyLen()
				keymat, err := ikecrypto.PRFPlus(sa.suite.PRF, sa.keys.SKd, enc, ni, nr)
				if err != nil || string(c.Outbound.EncKey) == string(keymat[:enc]) {
					t.Fatalf("PFS keys equal the keys without g^ir (%v)", err)
				}
				return
			}
			enc, integ := c.Transform.EncKeyLen(), c.Transform.IntegKeyLen()
			keymat, err := ikecrypto.PRFPlus(sa.suite.PRF, sa.keys.SKd, 2*(enc+integ), ni, nr)
			if err != nil {
				t.Fatal(err)
			}
			if string(c.Outbound.EncKey) != string(keymat[:enc]) || string(c.Inbound.EncKey) != string(keymat[enc+integ:2*enc+integ]) {
				t.Fatal("the rekey initiator's outbound key is not KEYMAT's first half")
			}
		})
	}
}

// innerNonce decrypts a CREATE_CHILD_SA message sent on sa and returns its
// Nonce payload.
func innerNonce(t *testing.T, sa *ikeSA, f frame, fromInitiator bool) []byte {
	t.Helper()
	ei, ai := sa.keys.SKei, sa.keys.SKai
	// The IKE SA's initiator (the spoke) answered here; r sent the request.
	if !fromInitiator {
		ei, ai = sa.keys.SKer, sa.keys.SKar
	}
	sk, err := ikecrypto.NewSK(sa.suite.Transform, ei, ai)
	if err != nil {
		t.Fatal(err)
	}
	msg := append([]byte(nil), f.msg()...)
	var m ikev2.Message
	if err := m.Decode(msg); err != nil {
		t.Fatal(err)
	}
	off, l, err := sk.Open(msg, m.Find(ikev2.PayloadSK).Offset)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.DecodeInner(msg[off : off+l]); err != nil {
		t.Fatal(err)
	}
	nb, err := ikev2.Find(m.Inner, ikev2.PayloadNonce).Nonce()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), nb...)
}

// Collisions (RFC 7296 §2.8.1, §2.8.2, §2.25): both sides act at the same
// moment; each row for several seeds (both nonce orders). The end: one IKE
// SA and one Child SA pair (none for the delete rows), the same on both
// sides, keys that agree, and at every event an outbound SA in use.
func TestRekeyCollisions(t *testing.T) {
	childSPI := func(nd *node) uint32 { return nd.liveChildren()[0].Inbound.SPI }
	rows := []struct {
		name    string
		act     func(t *testing.T, n *testNet, i, r *node)
		deleted string // "child", "ike" or "" (one pair remains)
	}{
		{"child-child crossing", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyChild(n.now, childSPI(i)))
			must(t, r.eng.RekeyChild(n.now, childSPI(r)))
		}, ""},
		{"child-child, one response held past the other's delete", func(t *testing.T, n *testNet, i, r *node) {
			n.filter = holdFirst(n, ikev2.ExchangeCreateChildSA, true, 3)
			must(t, i.eng.RekeyChild(n.now, childSPI(i)))
			must(t, r.eng.RekeyChild(n.now, childSPI(r)))
		}, ""},
		{"child-child, one request held until the other is done", func(t *testing.T, n *testNet, i, r *node) {
			n.filter = holdFirst(n, ikev2.ExchangeCreateChildSA, false, 3)
			must(t, i.eng.RekeyChild(n.now, childSPI(i)))
			must(t, r.eng.RekeyChild(n.now, childSPI(r)))
		}, ""},
		{"ike-ike crossing", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyIKE(n.now, hubEP))
			must(t, r.eng.RekeyIKE(n.now, r.established()[0].Peer))
		}, ""},
		{"ike-ike, one response held past the other's delete", func(t *testing.T, n *testNet, i, r *node) {
			n.filter = holdFirst(n, ikev2.ExchangeCreateChildSA, true, 3)
			must(t, i.eng.RekeyIKE(n.now, hubEP))
			must(t, r.eng.RekeyIKE(n.now, r.established()[0].Peer))
		}, ""},
		{"ike rekey vs child rekey", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyIKE(n.now, hubEP))
			must(t, r.eng.RekeyChild(n.now, childSPI(r)))
		}, ""},
		{"child rekey vs ike rekey", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyChild(n.now, childSPI(i)))
			must(t, r.eng.RekeyIKE(n.now, r.established()[0].Peer))
		}, ""},
		{"child rekey vs child delete", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyChild(n.now, childSPI(i)))
			must(t, r.eng.DeleteChild(n.now, childSPI(r), "operator"))
		}, "child"},
		{"child delete vs child rekey", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.DeleteChild(n.now, childSPI(i), "operator"))
			must(t, r.eng.RekeyChild(n.now, childSPI(r)))
		}, "child"},
		{"child rekey vs ike delete", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyChild(n.now, childSPI(i)))
			must(t, r.eng.Delete(n.now, r.established()[0].Peer, "operator"))
		}, "ike"},
		{"ike rekey vs ike delete", func(t *testing.T, n *testNet, i, r *node) {
			must(t, i.eng.RekeyIKE(n.now, hubEP))
			must(t, r.eng.Delete(n.now, r.established()[0].Peer, "operator"))
		}, "ike"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			collisions := uint64(0)
			for seed := byte(1); seed <= 8; seed++ {
				n := newNet(t)
				r := n.add(hubAddr, Config{Rand: seeded(seed)})
				i := n.add(spokeAddr, Config{Rand: seeded(seed + 100)})
				must(t, i.eng.Initiate(n.now, hubEP))
				n.runFor(time.Second)
				checkPair(t, i, r)
				row.act(t, n, i, r)
				n.runFor(2 * time.Minute)
				collisions += i.eng.Stats().RekeyCollisions + r.eng.Stats().RekeyCollisions
				switch row.deleted {
				case "":
					checkRekeyed(t, i, r)
				case "child":
					for _, nd := range []*node{i, r} {
						if len(nd.established()) != 1 || len(nd.eng.SAs()) != 1 || len(nd.liveChildren()) != 0 ||
							nd.eng.Stats().ChildSAs != 0 {
							t.Fatalf("seed %d: %s: SAs %+v, events %s", seed, nd.addr, nd.eng.SAs(), types(nd.events))
						}
						p := newPlane(t, nd.addr.String())
						p.follow(nd)
					}
					if i.established()[0].SPIi != r.established()[0].SPIi {
						t.Fatal("the sides disagree on the IKE SA")
					}
				case "ike":
					for _, nd := range []*node{i, r} {
						if len(nd.eng.SAs()) != 0 || len(nd.liveChildren()) != 0 || len(nd.of(IKESADown)) != 1 ||
							nd.eng.Stats().ChildSAs != 0 {
							t.Fatalf("seed %d: %s: SAs %+v, events %s", seed, nd.addr, nd.eng.SAs(), types(nd.events))
						}
						newPlane(t, nd.addr.String()).follow(nd)
					}
				}
			}
			if strings.HasSuffix(row.name, "crossing") {
				if collisions == 0 {
					t.Fatalf("no collision resolved in 8 seeds")
				}
				t.Logf("%d collision resolutions counted over 8 seeds", collisions)
			}
		})
	}
}

// No packet lost: ESP each way every 10 ms of fake time (30 ms in flight,
// IKE delayed 40 ms), through Child SA rekeys by lifetime, an IKE SA
// rekey, a simultaneous Child SA rekey and a lost Delete; every packet
// opens with the inbound SAs the events installed.
func TestRekeyNoPacketLost(t *testing.T) {
	for _, seed := range []byte{1, 2, 3} {
		t.Run(fmt.Sprint("seed ", seed), func(t *testing.T) {
			cfg := Config{ChildLifetime: 20 * time.Second, IKELifetime: 45 * time.Second}
			n := newNet(t)
			rc, ic := cfg, cfg
			rc.Rand, ic.Rand = seeded(seed), seeded(seed+50)
			r := n.add(hubAddr, rc)
			i := n.add(spokeAddr, ic)
			must(t, i.eng.Initiate(n.now, hubEP))
			n.runFor(time.Second)
			checkPair(t, i, r)

			type inflight struct {
				at  time.Time
				to  *plane
				pkt []byte
			}
			var delayed []frame
			lostDelete := false
			n.filter = func(f *frame) verdict {
				if !lostDelete && isExchange(f, ikev2.ExchangeInformational, false) {
					lostDelete = true
					return dropIt
				}
				c := *f
				c.at = n.now.Add(40 * time.Millisecond)
				delayed = append(delayed, c)
				return dropIt
			}
			pi, pr := newPlane(t, "spoke"), newPlane(t, "hub")
			pi.rekeyOnly, pr.rekeyOnly = true, true
			var flight []inflight
			sent, opened := 0, 0
			const step = 10 * time.Millisecond
			end := n.now.Add(100 * time.Second)
			for n.now.Before(end) {
				n.now = n.now.Add(step)
				switch n.now.Sub(t0).Round(step) {
				case 30 * time.Second: // both at once: a collision
					must(t, i.eng.RekeyChild(n.now, pi.current))
					must(t, r.eng.RekeyChild(n.now, pr.current))
				case 60 * time.Second:
					must(t, r.eng.RekeyIKE(n.now, r.established()[0].Peer))
				}
				for _, nd := range []*node{i, r} {
					if d := nd.eng.NextDeadline(); !d.IsZero() && !d.After(n.now) {
						nd.eng.Tick(n.now)
					}
				}
				due := delayed
				delayed = nil
				for _, f := range due {
					if f.at.After(n.now) {
						delayed = append(delayed, f)
						continue
					}
					n.deliverFrame(f)
				}
				n.pump()
				pi.follow(i)
				pr.follow(r)
				pi.expire(n.now)
				pr.expire(n.now)
				keep := flight[:0]
				for _, f := range flight {
					if f.at.After(n.now) {
						keep = append(keep, f)
						continue
					}
					if err := f.to.open(f.pkt); err != nil {
						t.Fatalf("at %v: %s cannot open a packet: %v\nspoke: %s\nhub: %s", n.now.Sub(t0), f.to.name, err,
							types(i.events), types(r.events))
					}
					opened++
				}
				flight = keep
				for _, x := range [][2]*plane{{pi, pr}, {pr, pi}} {
					flight = append(flight, inflight{at: n.now.Add(30 * time.Millisecond), to: x[1],
						pkt: x[0].seal([]byte("\x00\x00\x08\x00 GRE"))})
					sent++
				}
			}
			if len(i.of(ChildSADown)) < 3 || len(i.of(IKESARekeyed)) < 1 || !lostDelete {
				t.Fatalf("too few rekeys: %s", types(i.events))
			}
			t.Logf("%d packets sent, %d opened (rest in flight), %d Child SA rekeys at the spoke, %d IKE SA rekeys, %d collisions",
				sent, opened, len(i.of(ChildSADown)), len(i.of(IKESARekeyed)), i.eng.Stats().RekeyCollisions+r.eng.Stats().RekeyCollisions)
			if sent-opened > 2*3+2 {
				t.Fatalf("%d sent, %d opened", sent, opened)
			}
		})
	}
}

// Lifetimes: a Child SA is rekeyed in [80 %, 90 %) of its lifetime, the
// IKE SA too, each new SA again; SAStatus says when.
func TestLifetimeRekeys(t *testing.T) {
	cfg := Config{ChildLifetime: 100 * time.Second, IKELifetime: 300 * time.Second}
	n, i, r := up(t, cfg, cfg)
	upAt := t0
	if st := i.eng.SAs()[0]; st.RekeyAt.Before(upAt.Add(240*time.Second)) || !st.RekeyAt.Before(upAt.Add(270*time.Second)) ||
		st.Expires != upAt.Add(300*time.Second) || len(st.Children) != 1 || st.Children[0].Expires != upAt.Add(100*time.Second) {
		t.Fatalf("status %+v", st)
	}
	n.runFor(400 * time.Second)
	checkRekeyed(t, i, r)
	// Every CREATE_CHILD_SA request, whoever sent it, in order.
	var reqs []frame
	for _, f := range n.log {
		if isExchange(&f, ikev2.ExchangeCreateChildSA, false) {
			reqs = append(reqs, f)
		}
	}
	// Child SAs made at 0 and then at each rekey: each rekey between 80
	// and 90 s after the previous one (the IKE SA's rekey moves them
	// unchanged).
	prev := upAt
	childRekeys, ikeRekeys := 0, 0
	for _, ev := range i.events {
		switch ev.Type {
		case ChildSAUp, ChildSAActive:
			if ev.Child.Replaces == 0 {
				continue
			}
			if ev.Type == ChildSAUp && ev.Child.Standby {
				continue
			}
			d := ev.Time.Sub(prev)
			if d < 80*time.Second || d >= 90*time.Second+time.Second {
				t.Fatalf("Child SA rekeyed %v after the previous one", d)
			}
			prev = ev.Time
			childRekeys++
		case IKESARekeyed:
			if d := ev.Time.Sub(upAt); d < 240*time.Second || d >= 270*time.Second {
				t.Fatalf("IKE SA rekeyed at %v", d)
			}
			ikeRekeys++
		}
	}
	if childRekeys != 4 || ikeRekeys != 1 || len(reqs) != 5 {
		t.Fatalf("%d Child SA rekeys, %d IKE SA rekeys, %d requests in 400 s: %s", childRekeys, ikeRekeys, len(reqs), types(i.events))
	}
}

// A peer that never answers: the Child SA is deleted at its hard lifetime
// (the rekey still retransmitting), then the IKE SA is dead; an IKE SA
// whose rekey is never answered in time is deleted at its own.
func TestLifetimeHardExpiry(t *testing.T) {
	t.Run("child", func(t *testing.T) {
		cfg := Config{ChildLifetime: 10 * time.Second}
		n, i, r := up(t, Config{}, cfg)
		silence(n, r)
		n.runFor(time.Minute)
		d := i.of(ChildSADown)
		if len(d) != 1 || d[0].Reason != "lifetime expired: not rekeyed" || d[0].Time != t0.Add(10*time.Second) {
			t.Fatalf("events %s (%+v)", types(i.events), d)
		}
		if id := i.of(IKESADown); len(id) != 1 || !strings.Contains(id[0].Reason, "no answer to Child SA rekey") {
			t.Fatalf("events %s", types(i.events))
		}
		if len(i.eng.SAs()) != 0 {
			t.Fatalf("SAs left %+v", i.eng.SAs())
		}
	})
	t.Run("ike", func(t *testing.T) {
		cfg := Config{IKELifetime: 10 * time.Second}
		n, i, r := up(t, Config{}, cfg)
		silence(n, r)
		n.runFor(time.Minute)
		d := i.of(IKESADown)
		if len(d) != 1 || d[0].Reason != "IKE SA lifetime expired: not rekeyed" || d[0].Time != t0.Add(10*time.Second) {
			t.Fatalf("events %s", types(i.events))
		}
	})
}

// A CREATE_CHILD_SA that is not a rekey (a further Child SA) is refused:
// one pair per peer.
func TestAdditionalChildRefused(t *testing.T) {
	n, i, r := up(t, Config{}, Config{})
	var sa *ikeSA
	for _, s := range i.eng.bySPI {
		sa = s
	}
	i.eng.mu.Lock()
	r0 := &request{kind: reqRekeyChild, old: sa.children[0], nonce: make([]byte, 32), child: &childSA{inSPI: 0x1234}}
	msg, err := i.eng.seal(sa, sa.header(ikev2.ExchangeCreateChildSA, sa.nextID, false), func(b *ikev2.Builder) {
		b.SA(espSAPayload(i.eng.cfg.ESPProposals, r0.child.inSPI, 0))
		b.Nonce(r0.nonce)
		b.TSi(hostTS(i.eng.cfg.Local))
		b.TSr(hostTS(ad(hubAddr)))
	})
	i.eng.mu.Unlock()
	must(t, err)
	r.eng.HandlePacket(n.now, ap(spokeAddr+":500"), msg)
	resp := r.sentOf(ikev2.ExchangeCreateChildSA, true)
	if len(resp) != 1 {
		t.Fatalf("%d answers", len(resp))
	}
	var rs *ikeSA
	for _, s := range r.eng.bySPI {
		rs = s
	}
	// The answer carries NO_ADDITIONAL_SAS (decrypt it as the initiator).
	sk, _ := ikecrypto.NewSK(rs.suite.Transform, rs.keys.SKer, rs.keys.SKar)
	m := append([]byte(nil), resp[0].msg()...)
	var dm ikev2.Message
	must(t, dm.Decode(m))
	off, l, err := sk.Open(m, dm.Find(ikev2.PayloadSK).Offset)
	must(t, err)
	must(t, dm.DecodeInner(m[off:off+l]))
	if _, ok := ikev2.FindNotify(dm.Inner, ikev2.NotifyNoAdditionalSAs); !ok {
		t.Fatal("no NO_ADDITIONAL_SAS")
	}
	if len(r.liveChildren()) != 1 {
		t.Fatal("a further Child SA came up")
	}
}

func TestRekeyAPIErrors(t *testing.T) {
	n, i, _ := up(t, Config{}, Config{})
	if err := i.eng.RekeyChild(n.now, 0xdead); !errors.Is(err, ErrNoSA) {
		t.Fatalf("RekeyChild of nothing: %v", err)
	}
	if err := i.eng.RekeyIKE(n.now, ap("203.0.113.1:500")); !errors.Is(err, ErrNoSA) {
		t.Fatalf("RekeyIKE of nothing: %v", err)
	}
	spi := i.liveChildren()[0].Inbound.SPI
	must(t, i.eng.RekeyChild(n.now, spi))
	must(t, i.eng.RekeyChild(n.now, spi)) // under way: nil, nothing more sent
	if got := len(i.sentOf(ikev2.ExchangeCreateChildSA, false)); got != 1 {
		t.Fatalf("%d rekey requests", got)
	}
}

package engine

// State-machine fuzzing: a responder (hub) and an initiator (spoke) stopped
// mid-exchange (IKE_SA_INIT done both ways, the spoke's IKE_AUTH held back)
// get arbitrary sequences of datagrams (raw, or the held messages mutated),
// clock steps and API calls. After every step: no panic, every table within
// its bound, and no SA up without a verified AUTH: in "mismatch" mode the
// two PSKs differ, so no valid AUTH exists and nothing may come up; in
// "match" mode only the one real handshake may, once per side (plus one
// per handshake the fuzzer starts with Initiate).
//
//	go test ./ikev2/engine -run '^$' -fuzz FuzzEngine -fuzztime 3m -parallel 1

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/ikev2"
	ikecrypto "github.com/dmvpn/dmvpn/ikev2/crypto"
)

var fuzzFrom = []netip.AddrPort{ap(spokeAddr + ":500"), ap(spokeAddr + ":4500"), ap(hubAddr + ":500"),
	ap(hubAddr + ":4500"), ap("203.0.113.66:500"), ap("203.0.113.66:31337"), ap("[2001:db8::66]:500")}

type fuzzRig struct {
	n      *testNet
	r, i   *node
	held   []frame // datagrams withheld by the harness
	match  bool
	rBound Config
	// started counts handshakes the fuzzer started through Initiate: each
	// may legitimately bring one more SA up in match mode.
	started int
	// planes follow each node's events as a data plane would.
	planes map[*node]*plane
}

func newFuzzRig(t testing.TB, match bool) *fuzzRig {
	n := newNet(t)
	rc := Config{PSK: []byte("hub secret"), CookieThreshold: 4, MaxHalfOpen: 8, MaxIKESAs: 12,
		DPDInterval: 5 * time.Second, InitRate: Rate{Packets: 50, Interval: time.Second}}
	ic := Config{PSK: []byte("spoke secret"), DPDInterval: 5 * time.Second}
	if match {
		ic.PSK = rc.PSK
	}
	g := &fuzzRig{n: n, match: match, rBound: rc, planes: map[*node]*plane{}}
	g.r = n.add(hubAddr, rc)
	g.i = n.add(spokeAddr, ic)
	if err := g.i.eng.Initiate(n.now, hubEP); err != nil {
		t.Fatal(err)
	}
	// IKE_SA_INIT both ways; hold the IKE_AUTH request.
	for range 2 {
		f := n.queue[0]
		n.queue = n.queue[1:]
		g.held = append(g.held, f)
		n.deliverFrame(f)
	}
	g.held = append(g.held, n.queue...)
	n.queue = nil
	return g
}

// step runs one operation from the fuzzer's bytes, returning the rest.
func (g *fuzzRig) step(data []byte) []byte {
	op, arg := data[0], byte(0)
	if len(data) > 1 {
		arg = data[1]
	}
	data = data[min(2, len(data)):]
	n := g.n
	from := fuzzFrom[int(arg)%len(fuzzFrom)]
	to := g.r
	if op&1 == 1 {
		to = g.i
	}
	switch op >> 1 % 8 {
	case 0, 1: // a raw datagram of the next L octets
		l := 0
		if len(data) > 0 {
			l = int(data[0]) << 2
			data = data[1:]
		}
		l = min(l, len(data))
		pkt := data[:l]
		data = data[l:]
		if arg&0x80 != 0 {
			to.eng.HandlePacketNATT(n.now, from, pkt)
		} else {
			to.eng.HandlePacket(n.now, from, pkt)
		}
	case 2, 3: // a held message with one octet changed (or none)
		if len(g.held) == 0 || len(data) < 3 {
			break
		}
		f := g.held[int(data[0])%len(g.held)]
		pkt := append([]byte(nil), f.pkt...)
		if pos := int(binary.BigEndian.Uint16(data[1:])); pos < len(pkt) && arg&1 == 1 {
			pkt[pos] ^= arg | 1
		}
		data = data[3:]
		f.pkt = pkt
		n.deliverFrame(f)
	case 4: // let the network run: deliver what the engines sent
		for _, f := range n.queue {
			if len(g.held) < 64 {
				g.held = append(g.held, f)
			}
		}
		n.pump()
	case 5: // time passes
		n.now = n.now.Add(time.Duration(arg) * 100 * time.Millisecond)
		g.r.eng.Tick(n.now)
		g.i.eng.Tick(n.now)
	case 6: // API calls
		switch arg % 6 {
		case 0:
			if to.eng.Initiate(n.now, from) == nil {
				g.started++
			}
		case 1:
			_ = to.eng.Delete(n.now, from, "fuzz")
		case 2:
			for _, c := range to.liveChildren() {
				_ = to.eng.DeleteChild(n.now, c.Inbound.SPI, "fuzz")
			}
		case 3:
			for _, c := range to.liveChildren() {
				to.eng.Traffic(n.now, c.Inbound.SPI)
			}
		case 4:
			for _, c := range to.liveChildren() {
				_ = to.eng.RekeyChild(n.now, c.Inbound.SPI)
			}
		case 5:
			for _, s := range to.established() {
				_ = to.eng.RekeyIKE(n.now, s.Peer)
			}
		}
	case 7: // drop what is queued
		n.queue = n.queue[:0]
	}
	if len(n.queue) > 256 {
		n.queue = n.queue[:0]
	}
	return data
}

// check asserts the invariants.
func (g *fuzzRig) check(t *testing.T) {
	for _, nd := range []*node{g.r, g.i} {
		e := nd.eng
		e.mu.Lock()
		if e.nHalf > g.rBound.MaxHalfOpen && nd == g.r || e.nHalf != len(e.halfOpen) || e.nHalf < 0 {
			t.Fatalf("%s: %d half open (%d indexed)", nd.addr, e.nHalf, len(e.halfOpen))
		}
		if nd == g.r && len(e.bySPI) > g.rBound.MaxIKESAs {
			t.Fatalf("%d IKE SAs", len(e.bySPI))
		}
		count := 0
		for k, list := range e.byKey {
			if len(list) > maxSAsPerPeer+1 {
				t.Fatalf("%d SAs for %v", len(list), k)
			}
			count += len(list)
			for _, sa := range list {
				if e.bySPI[sa.ours] != sa || len(sa.queue) > maxQueued || len(sa.children) > maxChildren {
					t.Fatalf("SA %x: indexed %v, queue %d, children %d", sa.ours, e.bySPI[sa.ours] == sa, len(sa.queue), len(sa.children))
				}
			}
		}
		if count != len(e.bySPI) {
			t.Fatalf("%d SAs by endpoint, %d by SPI", count, len(e.bySPI))
		}
		if e.timers.HeapLen() > 4*e.timers.Live()+65 {
			t.Fatalf("timer heap %d for %d timers", e.timers.HeapLen(), e.timers.Live())
		}
		e.mu.Unlock()
		ups, firsts := len(nd.of(IKESAUp)), 0
		for _, ev := range nd.of(ChildSAUp) {
			if ev.Child.Replaces == 0 {
				firsts++
			}
		}
		if !g.match && (ups > 0 || len(nd.of(ChildSAUp)) > 0 || len(nd.of(IKESARekeyed)) > 0) {
			t.Fatalf("%s: an SA came up with mismatched keys: %s", nd.addr, types(nd.events))
		}
		if g.match && (ups > 1+g.started || firsts > 1+g.started) {
			t.Fatalf("%s: more SAs up than handshakes: %s", nd.addr, types(nd.events))
		}
		// The event stream stays one a data plane can follow: Child SAs
		// up once, active only from standby, down only when up, replaced
		// by one that is up (plane.follow fails the test otherwise).
		p := g.planes[nd]
		if p == nil {
			p = newPlane(t, nd.addr.String())
			g.planes[nd] = p
		}
		p.follow(nd)
	}
}

func FuzzEngine(f *testing.F) {
	// Seeds: deliver the held IKE_AUTH, run, let time pass, ...
	f.Add([]byte{0, 4, 2, 4, 9, 0, 10, 0, 11, 50})
	f.Add([]byte{1, 4, 4, 0, 8, 0, 10, 200, 10, 200})
	f.Add([]byte{0, 0, 4, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0, 4, 3, 2, 0, 0, 40, 8, 0, 12, 1, 10, 50, 13, 3})
	f.Add([]byte{1, 4, 5, 2, 0, 1, 8, 0, 12, 0, 10, 100, 10, 100, 10, 100})
	// Established, then rekeys (Child, IKE, both sides, crossing), time.
	f.Add([]byte{1, 4, 2, 2, 0, 0, 8, 0, 12, 4, 13, 4, 8, 0, 10, 30, 12, 5, 13, 5, 8, 0, 10, 200, 10, 200})
	f.Add([]byte{1, 4, 2, 2, 0, 0, 8, 0, 13, 4, 8, 0, 12, 5, 14, 0, 8, 0, 10, 50, 12, 1, 8, 0, 10, 200})
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1 || len(data) > 4096 {
			return
		}
		g := newFuzzRig(t, data[0]&1 == 1)
		data = data[1:]
		for steps := 0; len(data) > 0 && steps < 256; steps++ {
			data = g.step(data)
			g.check(t)
		}
	})
}

// The held messages and the engines' replies are real IKE: a short run of
// the fuzz harness's seeds must reach the established state in match mode
// (so the fuzzer starts from a rig that can go somewhere).
func TestFuzzRigReachesEstablished(t *testing.T) {
	g := newFuzzRig(t, true)
	g.n.deliverFrame(g.held[2])
	g.n.pump()
	checkPair(t, g.i, g.r)
	g = newFuzzRig(t, false)
	g.n.deliverFrame(g.held[2])
	g.n.runFor(time.Minute)
	if len(g.r.of(IKESAFailed)) != 1 || len(g.i.of(IKESAFailed)) != 1 {
		t.Fatalf("mismatch: %s / %s", types(g.r.events), types(g.i.events))
	}
}

// A tampered IKE_AUTH is dropped (integrity) and changes nothing: the
// half-open SA waits, and the genuine request still completes.
func TestTamperedAuthDropped(t *testing.T) {
	g := newFuzzRig(t, true)
	auth := g.held[2]
	// In the ciphertext, in the ICV, in the message ID.
	for _, pos := range []int{ikev2.HeaderLen + 8, len(auth.pkt) - 1, 20} {
		f := auth
		f.pkt = append([]byte(nil), auth.pkt...)
		f.pkt[pos] ^= 0x40
		g.n.deliverFrame(f)
	}
	s := g.r.eng.Stats()
	if s.Dropped[DropIntegrity] != 2 || s.Dropped[DropOutOfWindow] != 1 || s.HalfOpen != 1 || len(g.r.events) != 0 {
		t.Fatalf("after tampering: %+v, events %s", s, types(g.r.events))
	}
	g.n.deliverFrame(auth)
	g.n.pump()
	checkPair(t, g.i, g.r)
}

// Both ends here are ours, so a mistake made the same way on both sides
// (keys used in the wrong direction) would still agree with itself. This
// pins the directions to RFC 7296 independently: the initiator's SK
// payloads open with SK_ei/SK_ai (§2.14), and its outbound Child SA keys
// are the first octets of KEYMAT = prf+(SK_d, Ni | Nr) (§2.17).
func TestKeyDirectionsFollowRFC(t *testing.T) {
	g := newFuzzRig(t, true)
	auth := append([]byte(nil), g.held[2].pkt...)
	g.n.deliverFrame(g.held[2])
	g.n.pump()
	checkPair(t, g.i, g.r)
	var sa *ikeSA
	for _, s := range g.i.eng.bySPI {
		sa = s
	}
	sk, err := ikecrypto.NewSK(sa.suite.Transform, sa.keys.SKei, sa.keys.SKai)
	if err != nil {
		t.Fatal(err)
	}
	var m ikev2.Message
	if err := m.Decode(auth); err != nil {
		t.Fatal(err)
	}
	if _, _, err := sk.Open(auth, m.Find(ikev2.PayloadSK).Offset); err != nil {
		t.Fatalf("the initiator's IKE_AUTH does not open with SK_ei: %v", err)
	}
	c := g.i.liveChildren()[0]
	enc, integ := c.Transform.EncKeyLen(), c.Transform.IntegKeyLen()
	keymat, err := ikecrypto.PRFPlus(sa.suite.PRF, sa.keys.SKd, 2*(enc+integ), sa.ni, sa.nr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(c.Outbound.EncKey, keymat[:enc]) || !bytes.Equal(c.Outbound.IntegKey, keymat[enc:enc+integ]) ||
		!bytes.Equal(c.Inbound.EncKey, keymat[enc+integ:2*enc+integ]) || !bytes.Equal(c.Inbound.IntegKey, keymat[2*enc+integ:]) {
		t.Fatal("Child SA keys are not KEYMAT's halves in the initiator's direction")
	}
}

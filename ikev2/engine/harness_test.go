package engine

import (
	"bytes"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/ikev2"
)

// The test network: engines in one process, datagrams queued in memory
// and delivered by pump (an engine never re-enters itself), a fake clock
// that jumps from deadline to deadline, an optional NAT in front of some
// nodes, and a filter that can drop, duplicate or hold datagrams.

var (
	ap = netip.MustParseAddrPort
	ad = netip.MustParseAddr
	t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

type frame struct {
	seq      int
	from, to netip.AddrPort
	natt     bool
	pkt      []byte // the UDP payload (marker included on 4500)
	at       time.Time
}

// msg is the IKE message in the frame (without the marker).
func (f *frame) msg() []byte {
	if f.natt {
		return f.pkt[ikev2.NonESPMarkerLen:]
	}
	return f.pkt
}

func (f *frame) header() ikev2.Header {
	h, _ := ikev2.DecodeHeader(f.msg())
	return h
}

type verdict uint8

const (
	deliver verdict = iota
	dropIt
	duplicate
)

type testNet struct {
	t     testing.TB
	now   time.Time
	nodes map[netip.Addr]*node
	queue []frame
	seq   int
	log   []frame
	// natted nodes: inside address → public address; endpoints are mapped
	// per inside endpoint to a port of the public address.
	natPub  map[netip.Addr]netip.Addr
	natOut  map[netip.AddrPort]netip.AddrPort
	natBack map[netip.AddrPort]netip.AddrPort
	filter  func(f *frame) verdict
}

type node struct {
	n      *testNet
	addr   netip.Addr
	eng    *Engine
	events []Event
	sent   []frame
}

func newNet(t testing.TB) *testNet {
	return &testNet{t: t, now: t0, nodes: map[netip.Addr]*node{}, natPub: map[netip.Addr]netip.Addr{},
		natOut: map[netip.AddrPort]netip.AddrPort{}, natBack: map[netip.AddrPort]netip.AddrPort{}}
}

// seeded is a deterministic randomness source per node.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

func (n *testNet) add(addr string, cfg Config) *node {
	nd := &node{n: n, addr: ad(addr)}
	cfg.Local = nd.addr
	if cfg.PSK == nil && !anyPeerPSK(cfg.Peers) {
		cfg.PSK = []byte("cloud secret")
	}
	if cfg.Rand == nil {
		cfg.Rand = seeded(byte(len(n.nodes) + 1))
	}
	prev := cfg.OnEvent
	cfg.OnEvent = func(ev Event) {
		nd.events = append(nd.events, ev)
		if prev != nil {
			prev(ev)
		}
	}
	e, err := New(cfg, nd, quiet())
	if err != nil {
		n.t.Fatal(err)
	}
	nd.eng = e
	n.nodes[nd.addr] = nd
	return nd
}

// behindNAT puts the node behind a NAT with public address pub.
func (n *testNet) behindNAT(nd *node, pub string) { n.natPub[nd.addr] = ad(pub) }

func (nd *node) SendIKE(to netip.AddrPort, natt bool, pkt []byte) {
	port := uint16(ikev2.Port)
	if natt {
		port = ikev2.NATTPort
	}
	from := netip.AddrPortFrom(nd.addr, port)
	n := nd.n
	if pub, ok := n.natPub[nd.addr]; ok {
		out, ok := n.natOut[from]
		if !ok {
			out = netip.AddrPortFrom(pub, uint16(40000+len(n.natOut)))
			n.natOut[from], n.natBack[out] = out, from
		}
		from = out
	}
	n.seq++
	f := frame{seq: n.seq, from: from, to: to, natt: natt, pkt: bytes.Clone(pkt), at: n.now}
	nd.sent = append(nd.sent, f)
	n.queue = append(n.queue, f)
}

// deliverFrame hands f to the node it is addressed to (through the NAT).
func (n *testNet) deliverFrame(f frame) {
	dst := f.to
	if in, ok := n.natBack[dst]; ok {
		dst = in
	}
	nd := n.nodes[dst.Addr()]
	if nd == nil {
		return
	}
	if _, natted := n.natPub[nd.addr]; natted && f.to.Addr() == nd.addr {
		return // a NAT lets nothing in to the inside address
	}
	if dst.Port() == ikev2.NATTPort {
		nd.eng.HandlePacketNATT(n.now, f.from, f.pkt)
	} else {
		nd.eng.HandlePacket(n.now, f.from, f.pkt)
	}
}

// pump delivers queued datagrams until the network is quiet.
func (n *testNet) pump() {
	for i := 0; len(n.queue) > 0; i++ {
		if i > 10000 {
			n.t.Fatal("datagram storm")
		}
		f := n.queue[0]
		n.queue = n.queue[1:]
		n.log = append(n.log, f)
		v := deliver
		if n.filter != nil {
			v = n.filter(&f)
		}
		switch v {
		case dropIt:
			continue
		case duplicate:
			n.deliverFrame(f)
		}
		n.deliverFrame(f)
	}
}

// run pumps and runs timers until the clock reaches until.
func (n *testNet) run(until time.Time) {
	n.pump()
	for i := 0; ; i++ {
		if i > 100000 {
			n.t.Fatal("timer storm")
		}
		next := time.Time{}
		for _, nd := range n.nodes {
			if d := nd.eng.NextDeadline(); !d.IsZero() && (next.IsZero() || d.Before(next)) {
				next = d
			}
		}
		if next.IsZero() || next.After(until) {
			break
		}
		if next.After(n.now) {
			n.now = next
		}
		for _, nd := range n.nodes {
			if d := nd.eng.NextDeadline(); !d.IsZero() && !d.After(n.now) {
				nd.eng.Tick(n.now)
			}
		}
		n.pump()
	}
	if until.After(n.now) {
		n.now = until
	}
}

func (n *testNet) runFor(d time.Duration) { n.run(n.now.Add(d)) }

// of returns the node's events of type t.
func (nd *node) of(t EventType) []Event {
	var out []Event
	for _, ev := range nd.events {
		if ev.Type == t {
			out = append(out, ev)
		}
	}
	return out
}

// up returns the node's Child SAs that came up and did not go down.
func (nd *node) liveChildren() []*ChildSA {
	var out []*ChildSA
	for _, ev := range nd.events {
		switch ev.Type {
		case ChildSAUp:
			out = append(out, ev.Child)
		case ChildSADown:
			for i, c := range out {
				if c.Inbound.SPI == ev.Child.Inbound.SPI {
					out = append(out[:i], out[i+1:]...)
					break
				}
			}
		}
	}
	return out
}

// established returns the node's established IKE SAs.
func (nd *node) established() []SAStatus {
	var out []SAStatus
	for _, s := range nd.eng.SAs() {
		if s.State == stateEstablished.String() {
			out = append(out, s)
		}
	}
	return out
}

// sentOf lists the frames the node sent of exchange ex (requests or
// responses).
func (nd *node) sentOf(ex ikev2.ExchangeType, response bool) []frame {
	var out []frame
	for _, f := range nd.sent {
		if h := f.header(); h.Exchange == ex && h.IsResponse() == response {
			out = append(out, f)
		}
	}
	return out
}

// checkPair asserts that a and b hold exactly one IKE SA with each other,
// the same one, with one Child SA pair whose keys agree (an ESP packet
// sealed with one side's outbound SA opens with the other's inbound SA,
// both ways).
func checkPair(t testing.TB, a, b *node) {
	t.Helper()
	ea, eb := a.established(), b.established()
	if len(ea) != 1 || len(eb) != 1 || len(a.eng.SAs()) != 1 || len(b.eng.SAs()) != 1 {
		t.Fatalf("IKE SAs: %s has %+v, %s has %+v", a.addr, a.eng.SAs(), b.addr, b.eng.SAs())
	}
	if ea[0].SPIi != eb[0].SPIi || ea[0].SPIr != eb[0].SPIr || ea[0].Initiator == eb[0].Initiator {
		t.Fatalf("the sides disagree: %+v vs %+v", ea[0], eb[0])
	}
	ca, cb := a.liveChildren(), b.liveChildren()
	if len(ca) != 1 || len(cb) != 1 {
		t.Fatalf("Child SAs: %d at %s, %d at %s", len(ca), a.addr, len(cb), b.addr)
	}
	if ca[0].Mode != cb[0].Mode || ca[0].Transform != cb[0].Transform || ca[0].ESN != cb[0].ESN {
		t.Fatalf("Child SAs differ: %+v vs %+v", ca[0], cb[0])
	}
	espRoundTrip(t, ca[0], cb[0])
	espRoundTrip(t, cb[0], ca[0])
}

// espRoundTrip seals a GRE packet with from's outbound SA and opens it
// with to's inbound SA.
func espRoundTrip(t testing.TB, from, to *ChildSA) {
	t.Helper()
	if from.Outbound.SPI != to.Inbound.SPI {
		t.Fatalf("outbound SPI %08x, the peer's inbound %08x", from.Outbound.SPI, to.Inbound.SPI)
	}
	out, err := esp.NewOutbound(from.OutboundConfig())
	if err != nil {
		t.Fatal(err)
	}
	in, err := esp.NewInbound(to.InboundConfig())
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("\x00\x00\x08\x00 a GRE packet with an IPv4 inside")
	buf := make([]byte, esp.MaxHeaderLen+len(payload)+esp.MaxTrailerLen)
	copy(buf[esp.MaxHeaderLen:], payload)
	start, n, err := out.Seal(buf, esp.MaxHeaderLen, len(payload), esp.NextHeaderGRE)
	if err != nil {
		t.Fatal(err)
	}
	pkt := buf[start : start+n]
	off, m, nh, err := in.Open(pkt)
	if err != nil {
		t.Fatalf("the peer cannot open what we seal: %v", err)
	}
	if nh != esp.NextHeaderGRE || !bytes.Equal(pkt[off:off+m], payload) {
		t.Fatalf("opened %x (next header %d), want %x", pkt[off:off+m], nh, payload)
	}
}

func anyPeerPSK(m map[netip.Addr]Peer) bool {
	for _, p := range m {
		if len(p.PSK) > 0 {
			return true
		}
	}
	return false
}

package ipsec_test

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/esp"
	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/ipsec"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
	"github.com/dmvpn/dmvpn/underlay/memnet"
)

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	addrC = netip.MustParseAddr("192.0.2.3")
)

// node is one side: its Layer over memnet sockets.
type node struct {
	l      *ipsec.Layer
	addr   netip.Addr
	mu     sync.Mutex
	needSA []netip.AddrPort
	ike    [][]byte
	clk    *clock.Fake
}

func newNode(t *testing.T, net *memnet.Network, clk *clock.Fake, a netip.Addr) *node {
	t.Helper()
	raw, err := net.Listen(netip.AddrPortFrom(a, 0), nbma.TransportGRE)
	if err != nil {
		t.Fatal(err)
	}
	udp, err := net.Listen(netip.AddrPortFrom(a, esp.UDPPort), nbma.TransportUDP)
	if err != nil {
		t.Fatal(err)
	}
	n := &node{addr: a, clk: clk}
	n.l = ipsec.New(ipsec.Config{Local: a, Raw: raw, UDP: udp, Now: clk.Now,
		OnNeedSA: func(p netip.AddrPort, _ nbma.Transport) { n.mu.Lock(); n.needSA = append(n.needSA, p); n.mu.Unlock() },
		OnIKE: func(_ netip.AddrPort, p []byte) {
			n.mu.Lock()
			n.ike = append(n.ike, append([]byte(nil), p...))
			n.mu.Unlock()
		}})
	t.Cleanup(func() { n.l.Close() })
	return n
}

func keys(tr esp.Transform, seed byte) (enc, integ []byte) {
	enc = make([]byte, tr.EncKeyLen())
	for i := range enc {
		enc[i] = seed + byte(i)*3
	}
	if k := tr.IntegKeyLen(); k > 0 {
		integ = make([]byte, k)
		for i := range integ {
			integ[i] = seed ^ byte(i*7+1)
		}
	}
	return enc, integ
}

// childPair returns the two sides of one Child SA between a and b: what a
// installs and what b installs (a's outbound is b's inbound).
func childPair(tr esp.Transform, a, b netip.Addr, spiA, spiB uint32, udp, tunnel bool) (ipsec.ChildSA, ipsec.ChildSA) {
	ea, ia := keys(tr, byte(spiA))
	eb, ib := keys(tr, byte(spiB))
	port := uint16(0)
	if udp {
		port = esp.UDPPort
	}
	// spiA is the SPI a receives on.
	inA := esp.Config{SPI: spiA, Transform: tr, EncKey: ea, IntegKey: ia}
	inB := esp.Config{SPI: spiB, Transform: tr, EncKey: eb, IntegKey: ib}
	ca := ipsec.ChildSA{Peer: netip.AddrPortFrom(b, port), UDP: udp, Tunnel: tunnel, Local: a, Remote: b, In: inA, Out: inB}
	cb := ipsec.ChildSA{Peer: netip.AddrPortFrom(a, port), UDP: udp, Tunnel: tunnel, Local: b, Remote: a, In: inB, Out: inA}
	return ca, cb
}

func install(t *testing.T, n *node, c ipsec.ChildSA, standby bool) {
	t.Helper()
	a := ipsec.Now
	if standby {
		a = ipsec.Later
	}
	if err := n.l.Install(c, a); err != nil {
		t.Fatalf("Install: %v", err)
	}
}

// greDatagram is a GRE packet (key 7, protocol IPv4) in a buffer with the
// data plane's headroom and tailroom.
func greDatagram(peer netip.AddrPort, body string) underlay.Datagram {
	buf := make([]byte, 2048)
	h := gre.Header{KeyPresent: true, Key: 7, Protocol: gre.ProtoIPv4}
	n := copy(buf[64:], body)
	start, err := gre.Encapsulate(buf[:64+n], 64, &h)
	if err != nil {
		panic(err)
	}
	return underlay.Datagram{Buf: buf, Off: start, Len: 64 + n - start, Peer: peer}
}

func send(t *testing.T, f underlay.Conn, ds ...underlay.Datagram) {
	t.Helper()
	if n, err := f.WriteBatch(ds); err != nil || n != len(ds) {
		t.Fatalf("WriteBatch = %d, %v; want %d", n, err, len(ds))
	}
}

type got struct {
	peer netip.AddrPort
	body string
}

// recv reads n GRE datagrams from f (bounded by a timeout) and returns
// their peers and inner bodies.
func recv(t *testing.T, f underlay.Conn, n int) []got {
	t.Helper()
	var out []got
	done := make(chan struct{})
	go func() {
		defer close(done)
		ds := make([]underlay.Datagram, 16)
		for i := range ds {
			ds[i].Buf = make([]byte, 4096)
		}
		for len(out) < n {
			for i := range ds {
				ds[i].Off = 64 - 8
			}
			k, err := f.ReadBatch(ds)
			if err != nil {
				return
			}
			for _, d := range ds[:k] {
				h, inner, err := gre.Decode(d.Payload())
				if err != nil || !h.KeyPresent || h.Key != 7 {
					out = append(out, got{d.Peer, fmt.Sprintf("bad GRE: %v", err)})
					continue
				}
				out = append(out, got{d.Peer, string(inner)})
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("received %d of %d datagrams in 10s: %v", len(out), n, out)
	}
	return out
}

func TestRoundTripEveryModeAndTransform(t *testing.T) {
	for _, tr := range []esp.Transform{esp.GCM128, esp.GCM256, esp.ChaCha20Poly1305, esp.CBC128SHA1, esp.CBC256SHA512} {
		for _, mode := range []struct{ udp, tunnel bool }{{false, false}, {true, false}, {false, true}, {true, true}} {
			t.Run(fmt.Sprintf("%v/udp=%v/tunnel=%v", tr, mode.udp, mode.tunnel), func(t *testing.T) {
				clk := clock.NewFake(time.Unix(1e9, 0))
				net := memnet.New(clk)
				// Nothing but ESP (and on 4500 nothing else) may cross.
				var clear int
				var mu sync.Mutex
				net.SetFilter(func(from, to netip.AddrPort, tt nbma.Transport, pkt []byte) bool {
					if _, _, err := gre.Decode(pkt); err == nil && len(pkt) > 8 && pkt[0]&0x20 != 0 && pkt[2] == 0x08 {
						mu.Lock()
						clear++
						mu.Unlock()
					}
					return true
				})
				a, b := newNode(t, net, clk, addrA), newNode(t, net, clk, addrB)
				ca, cb := childPair(tr, addrA, addrB, 0x1001, 0x2002, mode.udp, mode.tunnel)
				install(t, a, ca, false)
				install(t, b, cb, false)
				t1 := nbma.TransportGRE
				if mode.udp {
					t1 = nbma.TransportUDP
				}
				send(t, a.l.Face(t1), greDatagram(ca.Key(), "hello from a"), greDatagram(ca.Key(), "second"))
				g := recv(t, b.l.Face(t1), 2)
				want := []got{{cb.Key(), "hello from a"}, {cb.Key(), "second"}}
				if fmt.Sprint(g) != fmt.Sprint(want) {
					t.Fatalf("b got %v, want %v", g, want)
				}
				send(t, b.l.Face(t1), greDatagram(cb.Key(), "reply"))
				if g := recv(t, a.l.Face(t1), 1); g[0] != (got{ca.Key(), "reply"}) {
					t.Fatalf("a got %v", g)
				}
				if clear != 0 {
					t.Fatalf("%d clear-text GRE packets crossed the network", clear)
				}
				sa := b.l.SAs()
				if len(sa) != 1 || sa[0].InPackets != 2 || sa[0].OutPackets != 1 || sa[0].State != "current" {
					t.Fatalf("b's SAs: %+v", sa)
				}
			})
		}
	}
}

// A datagram for a peer without an SA waits (never leaves in clear text),
// the node is told once, and the queue leaves in order when the SA comes.
func TestWaitsForSAThenSendsInOrder(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	net := memnet.New(clk)
	var crossed int
	net.SetFilter(func(from, to netip.AddrPort, _ nbma.Transport, pkt []byte) bool { crossed++; return true })
	a, b := newNode(t, net, clk, addrA), newNode(t, net, clk, addrB)
	ca, cb := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, false, false)
	peer := ca.Key()
	for i := range 3 {
		send(t, a.l.Face(nbma.TransportGRE), greDatagram(peer, fmt.Sprint("early ", i)))
	}
	if crossed != 0 {
		t.Fatalf("%d datagrams left without an SA", crossed)
	}
	if len(a.needSA) != 1 || a.needSA[0] != peer {
		t.Fatalf("OnNeedSA calls: %v, want one for %v", a.needSA, peer)
	}
	if s := a.l.PeerState(peer); s != "waiting" {
		t.Fatalf("PeerState = %q, want waiting", s)
	}
	install(t, b, cb, false)
	install(t, a, ca, false)
	g := recv(t, b.l.Face(nbma.TransportGRE), 3)
	for i, x := range g {
		if x.body != fmt.Sprint("early ", i) {
			t.Fatalf("after the SA came: %v", g)
		}
	}
	st := a.l.Stats()
	if st.Queued != 3 || st.Dequeued != 3 || st.Waiting != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestWaitingIsBounded(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	net := memnet.New(clk)
	raw, _ := net.Listen(netip.AddrPortFrom(addrA, 0), nbma.TransportGRE)
	l := ipsec.New(ipsec.Config{Local: addrA, Raw: raw, QueueLen: 4, MaxWaiting: 2, WaitTimeout: 5 * time.Second, Now: clk.Now})
	defer l.Close()
	f := l.Face(nbma.TransportGRE)
	for i := range 10 {
		f.WriteBatch([]underlay.Datagram{greDatagram(netip.AddrPortFrom(addrB, 0), fmt.Sprint(i))})
	}
	f.WriteBatch([]underlay.Datagram{greDatagram(netip.AddrPortFrom(addrC, 0), "c")})
	n, _ := f.WriteBatch([]underlay.Datagram{greDatagram(netip.AddrPortFrom(netip.MustParseAddr("192.0.2.9"), 0), "third peer")})
	st := l.Stats()
	if n != 0 || st.QueueDrops != 1 || st.Waiting != 2 {
		t.Fatalf("third waiting peer: n=%d stats %+v", n, st)
	}
	// A failed IKE drops the wait at once (the next packet tries again).
	if n := l.DropWaiting(netip.AddrPortFrom(addrC, 0)); n != 1 || l.Stats().Waiting != 1 {
		t.Fatalf("DropWaiting = %d, waiting %d", n, l.Stats().Waiting)
	}
	clk.Advance(5 * time.Second)
	l.Expire(clk.Now())
	if st := l.Stats(); st.Waiting != 0 || st.WaitExpired != 5 { // 4 kept for B (oldest dropped), 1 for C (dropped)
		t.Fatalf("after the wait timeout: %+v", st)
	}
}

// Forged, replayed, misdirected and unknown packets change nothing and are
// counted; the genuine packet still opens.
func TestHostileInbound(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	out := &chanConn{t: nbma.TransportGRE, in: make(chan rxd, 64)}
	a := ipsec.New(ipsec.Config{Local: addrA, Raw: out, Now: clk.Now})
	in := &chanConn{t: nbma.TransportGRE, in: make(chan rxd, 64)}
	b := ipsec.New(ipsec.Config{Local: addrB, Raw: in, Now: clk.Now})
	ca, cb := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, false, false)
	if err := a.Install(ca, ipsec.Now); err != nil {
		t.Fatal(err)
	}
	if err := b.Install(cb, ipsec.Now); err != nil {
		t.Fatal(err)
	}
	send(t, a.Face(nbma.TransportGRE), greDatagram(ca.Key(), "genuine"), greDatagram(ca.Key(), "second"))
	esp1, esp2 := out.sent[0], out.sent[1]
	tampered := append([]byte(nil), esp1...)
	tampered[len(tampered)-20] ^= 1
	unknown := append([]byte(nil), esp1...)
	unknown[3] ^= 0xff
	fromA, fromC := netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrC, 0)
	for _, x := range []rxd{
		{fromC, esp1},            // right SPI, wrong source
		{fromA, unknown},         // unknown SPI
		{fromA, []byte{1, 2, 3}}, // not ESP
		{fromA, tampered},        // forged (ICV)
		{fromA, esp1},            // genuine
		{fromA, esp1},            // replayed
		{fromA, esp2},            // genuine
	} {
		in.in <- x
	}
	g := recv(t, b.Face(nbma.TransportGRE), 2)
	if fmt.Sprint(g) != fmt.Sprint([]got{{fromA, "genuine"}, {fromA, "second"}}) {
		t.Fatalf("got %v", g)
	}
	st := b.Stats()
	if st.WrongSource != 1 || st.UnknownSPI != 1 || st.Malformed != 1 || st.AuthFailed != 1 || st.Replayed != 1 || st.Opened != 2 {
		t.Fatalf("stats %+v", st)
	}
	if sa := b.SAs(); sa[0].ReplayDrops != 1 || sa[0].AuthFailures != 1 || sa[0].InPackets != 2 {
		t.Fatalf("SA %+v", sa[0])
	}
}

type rxd struct {
	peer netip.AddrPort
	pkt  []byte
}

// chanConn is an underlay.Conn for tests: ReadBatch takes what the test
// puts on in; WriteBatch keeps copies in sent (keep is false: it counts
// only, allocation free).
type chanConn struct {
	t      nbma.Transport
	in     chan rxd
	mu     sync.Mutex
	sent   [][]byte
	count  int
	noKeep bool
}

func (c *chanConn) ReadBatch(ds []underlay.Datagram) (int, error) {
	x, ok := <-c.in
	if !ok {
		return 0, net.ErrClosed
	}
	ds[0].Len = copy(ds[0].Buf[ds[0].Off:], x.pkt)
	ds[0].Peer = x.peer
	return 1, nil
}

func (c *chanConn) WriteBatch(ds []underlay.Datagram) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := range ds {
		c.count++
		if !c.noKeep {
			c.sent = append(c.sent, append([]byte(nil), ds[i].Payload()...))
		}
	}
	return len(ds), nil
}

func (c *chanConn) BatchSize() int            { return 16 }
func (c *chanConn) Transport() nbma.Transport { return c.t }
func (c *chanConn) LocalAddr() netip.AddrPort { return netip.AddrPort{} }
func (c *chanConn) Close() error              { return nil }

// Across a rekey the peer always has one current outbound SA, packets
// sealed with the old SA still open while it lingers, and afterwards the
// old SPI is unknown.
func TestRekeyMakeBeforeBreak(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	net := memnet.New(clk)
	a, b := newNode(t, net, clk, addrA), newNode(t, net, clk, addrB)
	old1, old2 := childPair(esp.CBC128SHA1, addrA, addrB, 0x1001, 0x2002, false, false)
	install(t, a, old1, false)
	install(t, b, old2, false)
	fa, fb := a.l.Face(nbma.TransportGRE), b.l.Face(nbma.TransportGRE)
	send(t, fa, greDatagram(old1.Key(), "before"))
	recv(t, fb, 1)

	// b answers the rekey: inbound of the new SA first, outbound stays old.
	new1, new2 := childPair(esp.CBC128SHA1, addrA, addrB, 0x1003, 0x2004, false, false)
	install(t, b, new2, true)
	send(t, fb, greDatagram(new2.Key(), "b still on old"))
	// a gets the response: new SA current at once; the old one retires.
	install(t, a, new1, false)
	if up, ok := a.l.Remove(old1.In.SPI); !up || !ok {
		t.Fatalf("Remove old at a: up=%v found=%v", up, ok)
	}
	send(t, fa, greDatagram(new1.Key(), "a on new"))
	// Both arrive: b's old-SA packet opens at a's lingering inbound SA.
	if g := recv(t, a.l.Face(nbma.TransportGRE), 1); g[0].body != "b still on old" {
		t.Fatalf("a got %v", g)
	}
	if g := recv(t, fb, 1); g[0].body != "a on new" {
		t.Fatalf("b got %v", g)
	}
	// b sees the delete: activates the new SA, retires the old.
	if !b.l.Activate(new2.In.SPI) {
		t.Fatal("Activate")
	}
	b.l.Remove(old2.In.SPI)
	send(t, fb, greDatagram(new2.Key(), "b on new"))
	if g := recv(t, a.l.Face(nbma.TransportGRE), 1); g[0].body != "b on new" {
		t.Fatalf("a got %v", g)
	}
	for _, sa := range b.l.SAs() {
		if (sa.InboundSPI == 0x2004) != (sa.State == "current") {
			t.Fatalf("b's SAs: %+v", b.l.SAs())
		}
	}
	// The linger ends: the old inbound SA goes.
	clk.Advance(ipsec.DefaultLinger)
	a.l.Expire(clk.Now())
	b.l.Expire(clk.Now())
	if n := len(a.l.SAs()); n != 1 {
		t.Fatalf("a has %d SAs after the linger", n)
	}
	// The last SA removed: the peer has lost its protection.
	if up, _ := a.l.Remove(new1.In.SPI); up {
		t.Fatal("Remove of the last SA said the peer is still up")
	}
	if a.l.Up(new1.Key()) {
		t.Fatal("peer still up")
	}
}

// A multicast batch (one payload shared by several datagrams) is sealed
// for each peer with its own SA and the shared bytes stay intact.
func TestSharedPayloadSealedPerPeer(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	net := memnet.New(clk)
	a, b, c := newNode(t, net, clk, addrA), newNode(t, net, clk, addrB), newNode(t, net, clk, addrC)
	ab, ba := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, false, false)
	ac, ca := childPair(esp.GCM128, addrA, addrC, 0x1003, 0x3003, false, false)
	install(t, a, ab, false)
	install(t, b, ba, false)
	install(t, a, ac, false)
	install(t, c, ca, false)
	d := greDatagram(ab.Key(), "to everyone")
	orig := append([]byte(nil), d.Payload()...)
	d.Shared = true
	d2 := d
	d2.Peer = ac.Key()
	send(t, a.l.Face(nbma.TransportGRE), d, d2)
	if !bytes.Equal(d.Payload(), orig) {
		t.Fatal("the shared payload was changed")
	}
	if g := recv(t, b.l.Face(nbma.TransportGRE), 1); g[0].body != "to everyone" {
		t.Fatalf("b got %v", g)
	}
	if g := recv(t, c.l.Face(nbma.TransportGRE), 1); g[0].body != "to everyone" {
		t.Fatalf("c got %v", g)
	}
}

// On UDP 4500, IKE goes to OnIKE and keepalives are counted; neither
// reaches the data plane.
func TestUDPDemultiplexing(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	in := &chanConn{t: nbma.TransportUDP, in: make(chan rxd, 8)}
	var ike [][]byte
	l := ipsec.New(ipsec.Config{Local: addrB, UDP: in, Now: clk.Now,
		OnIKE: func(_ netip.AddrPort, p []byte) { ike = append(ike, append([]byte(nil), p...)) }})
	ab, ba := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, true, false)
	ab.BehindNAT = true // A keeps its NAT mapping open; B does not
	out := &chanConn{t: nbma.TransportUDP}
	la := ipsec.New(ipsec.Config{Local: addrA, UDP: out, Now: clk.Now})
	la.Install(ab, ipsec.Now)
	l.Install(ba, ipsec.Now)
	send(t, la.Face(nbma.TransportUDP), greDatagram(ab.Key(), "esp"))
	from := netip.AddrPortFrom(addrA, esp.UDPPort)
	in.in <- rxd{from, []byte{0xff}}
	in.in <- rxd{from, append([]byte{0, 0, 0, 0}, bytes.Repeat([]byte{9}, 28)...)}
	in.in <- rxd{from, out.sent[0]}
	g := recv(t, l.Face(nbma.TransportUDP), 1)
	if g[0] != (got{from, "esp"}) {
		t.Fatalf("got %v", g)
	}
	st := l.Stats()
	if len(ike) != 1 || st.IKERx != 1 || st.KeepalivesRx != 1 {
		t.Fatalf("ike %d, stats %+v", len(ike), st)
	}
	if n := la.SendKeepalives(); n != 1 || !bytes.Equal(out.sent[1], []byte{0xff}) {
		t.Fatalf("SendKeepalives = %d, sent %x", n, out.sent[1:])
	}
	if n := l.SendKeepalives(); n != 0 {
		t.Fatalf("the side not behind NAT sent %d keepalives", n)
	}
}

// The steady state allocates nothing: sealing a batch in place and
// opening it.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops items at random")
	}
	clk := clock.NewFake(time.Unix(1e9, 0))
	out := &chanConn{t: nbma.TransportGRE, noKeep: true}
	a := ipsec.New(ipsec.Config{Local: addrA, Raw: out, Now: clk.Now})
	ab, _ := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, false, false)
	a.Install(ab, ipsec.Now)
	ds := []underlay.Datagram{greDatagram(ab.Key(), "x"), greDatagram(ab.Key(), "y")}
	offs := []int{ds[0].Off, ds[1].Off}
	f := a.Face(nbma.TransportGRE)
	allocs := testing.AllocsPerRun(100, func() {
		ds[0].Off, ds[1].Off = offs[0], offs[1]
		ds[0].Len, ds[1].Len = 13, 9
		f.WriteBatch(ds)
	})
	if allocs != 0 {
		t.Fatalf("WriteBatch allocates %.1f times per batch", allocs)
	}
}

// A responder's SA (OnInbound) sends nothing until the initiator's first
// packet proves it installed the SA; then what waited leaves. Without a
// packet it becomes current after MaxStandby.
func TestOnInboundActivation(t *testing.T) {
	clk := clock.NewFake(time.Unix(1e9, 0))
	net := memnet.New(clk)
	var crossed int
	net.SetFilter(func(from, to netip.AddrPort, _ nbma.Transport, pkt []byte) bool { crossed++; return true })
	a, b := newNode(t, net, clk, addrA), newNode(t, net, clk, addrB)
	ca, cb := childPair(esp.GCM128, addrA, addrB, 0x1001, 0x2002, false, false)
	send(t, b.l.Face(nbma.TransportGRE), greDatagram(cb.Key(), "b's reply"))
	if err := b.l.Install(cb, ipsec.OnInbound); err != nil {
		t.Fatal(err)
	}
	if crossed != 0 || b.l.Up(cb.Key()) {
		t.Fatalf("the responder sent before the initiator used the SA (%d datagrams)", crossed)
	}
	install(t, a, ca, false)
	send(t, a.l.Face(nbma.TransportGRE), greDatagram(ca.Key(), "a's first"))
	if g := recv(t, b.l.Face(nbma.TransportGRE), 1); g[0].body != "a's first" {
		t.Fatalf("b got %v", g)
	}
	if g := recv(t, a.l.Face(nbma.TransportGRE), 1); g[0].body != "b's reply" {
		t.Fatalf("a got %v", g)
	}

	// A silent initiator: the responder's SA becomes current anyway.
	c := newNode(t, net, clk, addrC)
	_, cc := childPair(esp.GCM128, addrA, addrC, 0x1003, 0x3003, false, false)
	if err := c.l.Install(cc, ipsec.OnInbound); err != nil {
		t.Fatal(err)
	}
	if next := c.l.Expire(clk.Now()); !next.Equal(clk.Now().Add(ipsec.MaxStandby)) {
		t.Fatalf("Expire's next = %v, want in MaxStandby", next)
	}
	clk.Advance(ipsec.MaxStandby)
	c.l.Expire(clk.Now())
	if !c.l.Up(cc.Key()) {
		t.Fatal("the OnInbound SA did not become current after MaxStandby")
	}
}

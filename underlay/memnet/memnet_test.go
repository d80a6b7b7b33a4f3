package memnet

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/clock"
	"github.com/dmvpn/dmvpn/nbma"
	"github.com/dmvpn/dmvpn/underlay"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	gre = nbma.TransportGRE
	udp = nbma.TransportUDP

	headroom = 8
	timeout  = 5 * time.Second
)

var (
	hub     = netip.MustParseAddr("192.0.2.1")
	spoke1  = netip.MustParseAddr("198.51.100.1")
	spoke2  = netip.MustParseAddr("198.51.100.65")
	public3 = netip.MustParseAddr("198.51.100.129")
	inside3 = netip.MustParseAddr("192.168.3.2")
	inside4 = netip.MustParseAddr("192.168.3.3")
	lan3    = netip.MustParsePrefix("192.168.3.0/24")
)

func newNet(t *testing.T) (*Network, *clock.Fake) {
	clk := clock.NewFake(time.Unix(1_700_000_000, 0))
	return New(clk), clk
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }

func listen(t *testing.T, n *Network, a netip.AddrPort, tr nbma.Transport) *Conn {
	t.Helper()
	c, err := n.ListenConn(a, tr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// send writes one datagram per payload from c to peer and expects all to be
// accepted.
func send(t *testing.T, c underlay.Conn, peer netip.AddrPort, payloads ...[]byte) {
	t.Helper()
	ds := make([]underlay.Datagram, len(payloads))
	for i, p := range payloads {
		buf := make([]byte, headroom+len(p))
		copy(buf[headroom:], p)
		ds[i] = underlay.Datagram{Buf: buf, Off: headroom, Len: len(p), Peer: peer}
	}
	n, err := c.WriteBatch(ds)
	if n != len(ds) || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, len(ds))
	}
}

func msgs(prefix string, first, n int) [][]byte {
	var ps [][]byte
	for i := first; i < first+n; i++ {
		ps = append(ps, fmt.Appendf(nil, "%s-%d", prefix, i))
	}
	return ps
}

type got struct {
	peer netip.AddrPort
	data string
}

// drain returns everything queued at c without blocking.
func drain(t *testing.T, c *Conn) []got {
	t.Helper()
	var out []got
	ds := make([]underlay.Datagram, 3) // small, to exercise several batches
	for c.Pending() > 0 {
		for i := range ds {
			ds[i] = underlay.Datagram{Buf: make([]byte, 2048), Off: headroom}
		}
		n, err := c.ReadBatch(ds)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range ds[:n] {
			if d.Off != headroom {
				t.Fatalf("Off moved to %d", d.Off)
			}
			out = append(out, got{d.Peer, string(d.Payload())})
		}
	}
	return out
}

func want(peer netip.AddrPort, payloads ...[]byte) []got {
	var out []got
	for _, p := range payloads {
		out = append(out, got{peer, string(p)})
	}
	return out
}

func expect(t *testing.T, c *Conn, w []got) {
	t.Helper()
	g := drain(t, c)
	if !slices.Equal(g, w) {
		t.Fatalf("%v received\n%v\nwant\n%v", c.LocalAddr(), g, w)
	}
}

func TestDelivery(t *testing.T) {
	tests := []struct {
		name      string
		tr        nbma.Transport
		from, to  netip.AddrPort
		peer      netip.AddrPort // what the sender writes to
		wantPeer  netip.AddrPort // what the receiver sees
		delivered bool
	}{
		{"gre", gre, ap(spoke1, 0), ap(hub, 0), ap(hub, 0), ap(spoke1, 0), true},
		{"gre ignores peer port", gre, ap(spoke1, 0), ap(hub, 0), ap(hub, 4754), ap(spoke1, 0), true},
		{"gre 4in6 peer", gre, ap(spoke1, 0), ap(hub, 0), netip.AddrPortFrom(netip.AddrFrom16(hub.As16()), 0), ap(spoke1, 0), true},
		{"udp", udp, ap(spoke1, 4754), ap(hub, 4754), ap(hub, 4754), ap(spoke1, 4754), true},
		{"udp other port", udp, ap(spoke1, 4754), ap(hub, 4754), ap(hub, 4755), netip.AddrPort{}, false},
		{"udp ipv6", udp, netip.MustParseAddrPort("[2001:db8::1]:4754"), netip.MustParseAddrPort("[2001:db8::2]:4754"),
			netip.MustParseAddrPort("[2001:db8::2]:4754"), netip.MustParseAddrPort("[2001:db8::1]:4754"), true},
		{"nobody there", gre, ap(spoke1, 0), ap(hub, 0), ap(spoke2, 0), netip.AddrPort{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n, _ := newNet(t)
			a := listen(t, n, tc.from, tc.tr)
			b := listen(t, n, tc.to, tc.tr)
			if a.Transport() != tc.tr || a.LocalAddr() != tc.from || a.BatchSize() != BatchSize {
				t.Fatalf("conn %v %v %d", a.Transport(), a.LocalAddr(), a.BatchSize())
			}
			send(t, a, tc.peer, []byte("hello"))
			if tc.delivered {
				expect(t, b, want(tc.wantPeer, []byte("hello")))
			} else {
				expect(t, b, nil)
			}
			s := n.Stats()
			if s.Sent != 1 || (s.Delivered == 1) != tc.delivered || (s.DroppedNoListener == 1) == tc.delivered {
				t.Errorf("stats %+v", s)
			}
			if as := a.Stats(); as.Sent != 1 || (as.Dropped == 1) == tc.delivered {
				t.Errorf("sender stats %+v", as)
			}
		})
	}
}

func TestCopiedOnSend(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	buf := []byte("xxABCD")
	d := []underlay.Datagram{{Buf: buf, Off: 2, Len: 4, Peer: ap(hub, 0)}}
	if _, err := a.WriteBatch(d); err != nil {
		t.Fatal(err)
	}
	copy(buf, "zzzzzz")
	expect(t, b, want(ap(spoke1, 0), []byte("ABCD")))
}

func TestTransportsSeparate(t *testing.T) {
	n, _ := newNet(t)
	g1 := listen(t, n, ap(spoke1, 0), gre)
	u1 := listen(t, n, ap(spoke1, 4754), udp)
	g2 := listen(t, n, ap(hub, 0), gre)
	u2 := listen(t, n, ap(hub, 4754), udp)
	send(t, g1, ap(hub, 4754), []byte("gre"))
	send(t, u1, ap(hub, 4754), []byte("udp"))
	expect(t, g2, want(ap(spoke1, 0), []byte("gre")))
	expect(t, u2, want(ap(spoke1, 4754), []byte("udp")))
	// Nothing listens on UDP port 0 semantics, and GRE never reaches UDP.
	g3 := listen(t, n, ap(spoke2, 0), gre)
	send(t, u1, ap(spoke2, 4754), []byte("lost"))
	expect(t, g3, nil)
}

func TestWriteBadPeer(t *testing.T) {
	n, _ := newNet(t)
	u := listen(t, n, ap(spoke1, 4754), udp)
	b := listen(t, n, ap(hub, 4754), udp)
	ds := []underlay.Datagram{
		{Buf: []byte("a"), Len: 1, Peer: ap(hub, 0)},
		{Buf: []byte("b"), Len: 1, Peer: netip.AddrPort{}},
		{Buf: []byte("c"), Len: 1, Peer: ap(hub, 4754)},
	}
	sent, err := u.WriteBatch(ds)
	if sent != 1 || err == nil {
		t.Fatalf("WriteBatch = %d, %v; want 1 and an error", sent, err)
	}
	expect(t, b, want(ap(spoke1, 4754), []byte("c")))
	if s := u.Stats(); s.Sent != 1 || s.SendErrors != 2 {
		t.Errorf("stats %+v", s)
	}
}

func TestBatchRead(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	p := msgs("m", 0, 10)
	send(t, a, ap(hub, 0), p...)
	ds := make([]underlay.Datagram, 4)
	var sizes []int
	var all []got
	for b.Pending() > 0 {
		for i := range ds {
			ds[i] = underlay.Datagram{Buf: make([]byte, 64), Off: headroom}
		}
		k, err := b.ReadBatch(ds)
		if err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, k)
		for _, d := range ds[:k] {
			all = append(all, got{d.Peer, string(d.Payload())})
		}
	}
	if !slices.Equal(sizes, []int{4, 4, 2}) {
		t.Errorf("batch sizes %v, want [4 4 2]", sizes)
	}
	if !slices.Equal(all, want(ap(spoke1, 0), p...)) {
		t.Errorf("got %v", all)
	}
	if s := b.Stats(); s.Received != 10 {
		t.Errorf("stats %+v", s)
	}
}

func TestTooBig(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	send(t, a, ap(hub, 0), bytes.Repeat([]byte("x"), 100), []byte("small"))
	ds := []underlay.Datagram{{Buf: make([]byte, 50), Off: headroom}}
	k, err := b.ReadBatch(ds)
	if k != 1 || err != nil || string(ds[0].Payload()) != "small" {
		t.Fatalf("ReadBatch = %d, %v, %q", k, err, ds[0].Payload())
	}
	if s := n.Stats(); s.DroppedTooBig != 1 {
		t.Errorf("stats %+v", s)
	}
}

// received returns the indices of the "m-i" messages c got.
func received(t *testing.T, c *Conn) []int {
	var idx []int
	for _, g := range drain(t, c) {
		var i int
		if _, err := fmt.Sscanf(g.data, "m-%d", &i); err != nil {
			t.Fatal(err)
		}
		idx = append(idx, i)
	}
	return idx
}

func TestLoss(t *testing.T) {
	const total = 2000
	run := func(seed uint64, loss float64) []int {
		n, _ := newNet(t)
		n.SetSeed(seed)
		n.SetImpairment(Impairment{Loss: loss})
		a := listen(t, n, ap(spoke1, 0), gre)
		b := listen(t, n, ap(hub, 0), gre)
		send(t, a, ap(hub, 0), msgs("m", 0, total)...)
		got := received(t, b)
		if s := n.Stats(); s.DroppedLoss != uint64(total-len(got)) || s.Delivered != uint64(len(got)) {
			t.Errorf("stats %+v for %d received", s, len(got))
		}
		return got
	}
	tests := []struct {
		loss     float64
		min, max int
	}{
		{0, total, total},
		{0.3, total * 6 / 10, total * 8 / 10},
		{1, 0, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.loss), func(t *testing.T) {
			g := run(7, tc.loss)
			if len(g) < tc.min || len(g) > tc.max {
				t.Fatalf("%d of %d arrived with loss %v", len(g), total, tc.loss)
			}
			if again := run(7, tc.loss); !slices.Equal(g, again) {
				t.Fatal("same seed, different losses")
			}
		})
	}
	if a, b := run(1, 0.3), run(2, 0.3); slices.Equal(a, b) {
		t.Error("different seeds, same losses")
	}
}

func TestLinkImpairment(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	c := listen(t, n, ap(spoke2, 0), gre)
	n.SetLinkImpairment(spoke1, hub, Impairment{Loss: 1})
	send(t, a, ap(hub, 0), []byte("x"))
	send(t, a, ap(spoke2, 0), []byte("y"))
	send(t, b, ap(spoke1, 0), []byte("z")) // the other direction is fine
	expect(t, b, nil)
	expect(t, c, want(ap(spoke1, 0), []byte("y")))
	expect(t, a, want(ap(hub, 0), []byte("z")))
	n.ClearLinkImpairment(spoke1, hub)
	send(t, a, ap(hub, 0), []byte("x"))
	expect(t, b, want(ap(spoke1, 0), []byte("x")))
}

func TestDelay(t *testing.T) {
	n, clk := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	n.SetImpairment(Impairment{Delay: 10 * time.Millisecond})
	send(t, a, ap(hub, 0), []byte("one"), []byte("two"))
	clk.Advance(5 * time.Millisecond)
	send(t, a, ap(hub, 0), []byte("three"))
	if b.Pending() != 0 {
		t.Fatal("delivered before the delay")
	}
	clk.Advance(4 * time.Millisecond)
	expect(t, b, nil)
	clk.Advance(time.Millisecond)
	expect(t, b, want(ap(spoke1, 0), []byte("one"), []byte("two")))
	clk.Advance(5 * time.Millisecond)
	expect(t, b, want(ap(spoke1, 0), []byte("three")))
	if s := n.Stats(); s.Delayed != 3 || s.Delivered != 3 {
		t.Errorf("stats %+v", s)
	}

	// A receiver that closes while a datagram is in flight drops it.
	send(t, a, ap(hub, 0), []byte("late"))
	b.Close()
	clk.Advance(time.Second)
	if s := n.Stats(); s.DroppedClosed != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestReorder(t *testing.T) {
	n, clk := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	n.SetImpairment(Impairment{ReorderEvery: 3})
	send(t, a, ap(hub, 0), msgs("m", 1, 7)...)
	if g := received(t, b); !slices.Equal(g, []int{1, 2, 4, 3, 5, 7, 6}) {
		t.Fatalf("order %v", g)
	}
	send(t, a, ap(hub, 0), msgs("m", 8, 2)...) // 9 is held
	if g := received(t, b); !slices.Equal(g, []int{8}) {
		t.Fatalf("order %v", g)
	}
	// Changing the impairment releases it.
	n.SetImpairment(Impairment{ReorderEvery: 2, ReorderTimeout: 50 * time.Millisecond, Delay: 10 * time.Millisecond})
	if g := received(t, b); !slices.Equal(g, []int{9}) {
		t.Fatalf("order %v", g)
	}
	// Now every second one is held until the timeout, then delayed.
	send(t, a, ap(hub, 0), msgs("m", 10, 2)...)
	clk.Advance(10 * time.Millisecond)
	if g := received(t, b); !slices.Equal(g, []int{10}) {
		t.Fatalf("order %v", g)
	}
	clk.Advance(49 * time.Millisecond)
	if g := received(t, b); len(g) != 0 {
		t.Fatalf("released early: %v", g)
	}
	clk.Advance(11 * time.Millisecond)
	if g := received(t, b); !slices.Equal(g, []int{11}) {
		t.Fatalf("order %v", g)
	}
	if s := n.Stats(); s.Reordered != 4 || s.Delivered != 11 || s.Sent != 11 {
		t.Errorf("stats %+v", s)
	}
}

func TestFilter(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 4754), udp)
	b := listen(t, n, ap(hub, 4754), udp)
	var mu sync.Mutex
	var seen []string
	n.SetFilter(func(from, to netip.AddrPort, tr nbma.Transport, pkt []byte) bool {
		mu.Lock()
		defer mu.Unlock()
		seen = append(seen, fmt.Sprintf("%v>%v %v %s", from, to, tr, pkt))
		return !bytes.HasPrefix(pkt, []byte("drop"))
	})
	send(t, a, ap(hub, 4754), []byte("keep"), []byte("drop me"))
	send(t, a, ap(hub, 9), []byte("nobody"))
	expect(t, b, want(ap(spoke1, 4754), []byte("keep")))
	wantSeen := []string{
		"198.51.100.1:4754>192.0.2.1:4754 udp keep",
		"198.51.100.1:4754>192.0.2.1:4754 udp drop me",
		"198.51.100.1:4754>192.0.2.1:9 udp nobody",
	}
	if !slices.Equal(seen, wantSeen) {
		t.Errorf("filter saw %q", seen)
	}
	if s := n.Stats(); s.DroppedFilter != 1 || s.DroppedNoListener != 1 {
		t.Errorf("stats %+v", s)
	}
	n.SetFilter(nil)
	send(t, a, ap(hub, 4754), []byte("drop not"))
	expect(t, b, want(ap(spoke1, 4754), []byte("drop not")))
}

func TestNATUDP(t *testing.T) {
	n, _ := newNet(t)
	if err := n.AddNAT(lan3, public3, NATModeUDPOnly); err != nil {
		t.Fatal(err)
	}
	h := listen(t, n, ap(hub, 4754), udp)
	s3 := listen(t, n, ap(inside3, 4754), udp)
	s4 := listen(t, n, ap(inside4, 4754), udp)
	other := listen(t, n, ap(spoke1, 4754), udp)

	send(t, s3, ap(hub, 4754), []byte("from 3"))
	send(t, s4, ap(hub, 4754), []byte("from 4"))
	g := drain(t, h)
	if len(g) != 2 {
		t.Fatalf("hub got %v", g)
	}
	// The first flow keeps its port, the second gets another; both come
	// from the public address.
	if g[0] != (got{ap(public3, 4754), "from 3"}) || g[1].peer.Addr() != public3 || g[1].peer.Port() == 4754 || g[1].data != "from 4" {
		t.Fatalf("hub saw %v", g)
	}
	// Replies to the observed endpoints reach the right inside hosts.
	send(t, h, g[0].peer, []byte("to 3"))
	send(t, h, g[1].peer, []byte("to 4"))
	expect(t, s3, want(ap(hub, 4754), []byte("to 3")))
	expect(t, s4, want(ap(hub, 4754), []byte("to 4")))
	// The mapping is kept for later flows from the same endpoint.
	send(t, s4, ap(spoke1, 4754), []byte("4 to 1"))
	expect(t, other, want(g[1].peer, []byte("4 to 1")))

	tests := []struct {
		name string
		from *Conn
		to   netip.AddrPort
	}{
		{"unsolicited to a mapped port", other, g[0].peer},
		{"to an unmapped port", h, ap(public3, 5555)},
		{"to a private address", h, ap(inside3, 4754)},
		{"hairpin", s3, g[1].peer},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Stats().DroppedNAT
			send(t, tc.from, tc.to, []byte("no"))
			expect(t, s3, nil)
			expect(t, s4, nil)
			if n.Stats().DroppedNAT != before+1 {
				t.Errorf("not counted as a NAT drop: %+v", n.Stats())
			}
		})
	}

	// Inside hosts talk directly, with their real addresses.
	send(t, s3, ap(inside4, 4754), []byte("lan"))
	expect(t, s4, want(ap(inside3, 4754), []byte("lan")))

	// After the router forgets its mappings, replies are dropped.
	if !n.ResetNAT(public3) {
		t.Fatal("ResetNAT found no NAT")
	}
	send(t, h, g[0].peer, []byte("stale"))
	expect(t, s3, nil)
}

func TestNATGRE(t *testing.T) {
	tests := []struct {
		mode NATMode
		pass bool
	}{
		{NATModeUDPOnly, false},
		{NATModePermissive, true},
	}
	for _, tc := range tests {
		t.Run(tc.mode.String(), func(t *testing.T) {
			n, _ := newNet(t)
			if err := n.AddNAT(lan3, public3, tc.mode); err != nil {
				t.Fatal(err)
			}
			h := listen(t, n, ap(hub, 0), gre)
			s1 := listen(t, n, ap(spoke1, 0), gre)
			s3 := listen(t, n, ap(inside3, 0), gre)
			s4 := listen(t, n, ap(inside4, 0), gre)

			// Sent first from outside: dropped in every mode.
			send(t, h, ap(public3, 0), []byte("unsolicited"))
			expect(t, s3, nil)

			send(t, s3, ap(hub, 0), []byte("3 to hub"))
			if !tc.pass {
				expect(t, h, nil)
				send(t, h, ap(public3, 0), []byte("reply"))
				expect(t, s3, nil)
				if s := n.Stats(); s.DroppedNAT != 3 {
					t.Errorf("stats %+v", s)
				}
				return
			}
			expect(t, h, want(ap(public3, 0), []byte("3 to hub")))
			send(t, h, ap(public3, 0), []byte("reply"))
			expect(t, s3, want(ap(hub, 0), []byte("reply")))
			// A second inside host to the same hub clashes: dropped.
			send(t, s4, ap(hub, 0), []byte("4 to hub"))
			expect(t, h, nil)
			// ... but it may talk GRE to another outside host.
			send(t, s4, ap(spoke1, 0), []byte("4 to spoke1"))
			expect(t, s1, want(ap(public3, 0), []byte("4 to spoke1")))
			send(t, s1, ap(public3, 0), []byte("spoke1 to 4"))
			expect(t, s4, want(ap(spoke1, 0), []byte("spoke1 to 4")))
			expect(t, s3, nil)
			if s := n.Stats(); s.DroppedNAT != 2 {
				t.Errorf("stats %+v", s)
			}
		})
	}
}

// TestNATToNAT: two spokes behind different NATs reach each other over UDP
// only after both have sent (hole punching), as with real home routers.
func TestNATToNAT(t *testing.T) {
	n, _ := newNet(t)
	lanB := netip.MustParsePrefix("10.9.0.0/16")
	publicB := netip.MustParseAddr("203.0.113.7")
	insideB := netip.MustParseAddr("10.9.0.2")
	if err := n.AddNAT(lan3, public3, NATModeUDPOnly); err != nil {
		t.Fatal(err)
	}
	if err := n.AddNAT(lanB, publicB, NATModePermissive); err != nil {
		t.Fatal(err)
	}
	a := listen(t, n, ap(inside3, 4754), udp)
	b := listen(t, n, ap(insideB, 4754), udp)
	send(t, a, ap(publicB, 4754), []byte("a1")) // opens a's NAT, dropped at b's
	expect(t, b, nil)
	send(t, b, ap(public3, 4754), []byte("b1")) // opens b's NAT, let in by a's
	expect(t, a, want(ap(publicB, 4754), []byte("b1")))
	send(t, a, ap(publicB, 4754), []byte("a2"))
	expect(t, b, want(ap(public3, 4754), []byte("a2")))
}

func TestAddNATErrors(t *testing.T) {
	n, _ := newNet(t)
	if err := n.AddNAT(lan3, public3, NATModeUDPOnly); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		inside netip.Prefix
		public netip.Addr
		mode   NATMode
	}{
		{netip.MustParsePrefix("192.168.0.0/16"), spoke1, NATModeUDPOnly}, // overlaps
		{netip.MustParsePrefix("10.0.0.0/8"), public3, NATModeUDPOnly},    // public in use
		{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParseAddr("10.1.1.1"), NATModeUDPOnly},
		{netip.MustParsePrefix("10.0.0.0/8"), spoke1, 0},
		{netip.Prefix{}, spoke1, NATModeUDPOnly},
	} {
		if err := n.AddNAT(tc.inside, tc.public, tc.mode); err == nil {
			t.Errorf("AddNAT(%v, %v, %v) succeeded", tc.inside, tc.public, tc.mode)
		}
	}
}

func TestListen(t *testing.T) {
	n, _ := newNet(t)
	listen(t, n, ap(hub, 0), gre)
	listen(t, n, ap(hub, 4754), udp)
	for _, tc := range []struct {
		a  netip.AddrPort
		tr nbma.Transport
	}{
		{ap(hub, 0), gre},
		{ap(hub, 4754), udp},
		{ap(spoke1, 47), gre},
		{ap(netip.IPv4Unspecified(), 0), gre},
		{netip.AddrPort{}, udp},
		{ap(spoke1, 1), 0},
	} {
		if c, err := n.Listen(tc.a, tc.tr); err == nil {
			c.Close()
			t.Errorf("Listen(%v, %v) succeeded", tc.a, tc.tr)
		}
	}
	c1 := listen(t, n, ap(hub, 0), udp)
	c2 := listen(t, n, ap(hub, 0), udp)
	if c1.LocalAddr().Port() == 0 || c1.LocalAddr() == c2.LocalAddr() {
		t.Errorf("ephemeral ports %v %v", c1.LocalAddr(), c2.LocalAddr())
	}
	// Closing frees the address.
	c1.Close()
	if c, err := n.Listen(c1.LocalAddr(), udp); err != nil {
		t.Error(err)
	} else {
		c.Close()
	}
}

func TestQueueLimit(t *testing.T) {
	n, _ := newNet(t)
	n.SetQueueLimit(2)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	send(t, a, ap(hub, 0), msgs("m", 0, 3)...)
	if g := received(t, b); !slices.Equal(g, []int{0, 1}) {
		t.Fatalf("got %v", g)
	}
	if s := n.Stats(); s.DroppedQueueFull != 1 {
		t.Errorf("stats %+v", s)
	}
	if s := b.Stats(); s.Dropped != 1 || s.Received != 2 {
		t.Errorf("receiver stats %+v", s)
	}
}

func TestCloseUnblocksReadBatch(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	errc := make(chan error, 1)
	go func() {
		_, err := b.ReadBatch([]underlay.Datagram{{Buf: make([]byte, 64)}})
		errc <- err
	}()
	select {
	case err := <-errc:
		t.Fatalf("ReadBatch returned early: %v", err)
	case <-time.After(20 * time.Millisecond):
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err != net.ErrClosed {
			t.Fatalf("ReadBatch: %v, want net.ErrClosed", err)
		}
	case <-time.After(timeout):
		t.Fatal("ReadBatch still blocked after Close")
	}
	if _, err := b.WriteBatch([]underlay.Datagram{{Buf: []byte("x"), Len: 1, Peer: ap(spoke1, 0)}}); err != net.ErrClosed {
		t.Errorf("WriteBatch after Close: %v", err)
	}
	if err := b.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	send(t, a, ap(hub, 0), []byte("gone"))
	if s := n.Stats(); s.DroppedNoListener != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestCloseDropsQueued(t *testing.T) {
	n, _ := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	send(t, a, ap(hub, 0), msgs("m", 0, 3)...)
	b.Close()
	if _, err := b.ReadBatch(make([]underlay.Datagram, 1)); err != net.ErrClosed {
		t.Fatalf("ReadBatch: %v", err)
	}
	if s := n.Stats(); s.DroppedClosed != 3 || s.Sent != s.Delivered {
		t.Errorf("stats %+v", s)
	}
}

// TestBlockingReadWakes: a ReadBatch already waiting gets a datagram sent
// later, including one delivered by the fake clock.
func TestBlockingReadWakes(t *testing.T) {
	n, clk := newNet(t)
	a := listen(t, n, ap(spoke1, 0), gre)
	b := listen(t, n, ap(hub, 0), gre)
	n.SetImpairment(Impairment{Delay: time.Second})
	type res struct {
		data string
		err  error
	}
	rc := make(chan res, 1)
	go func() {
		ds := []underlay.Datagram{{Buf: make([]byte, 64)}}
		_, err := b.ReadBatch(ds)
		rc <- res{string(ds[0].Payload()), err}
	}()
	send(t, a, ap(hub, 0), []byte("wake"))
	clk.Advance(time.Second)
	select {
	case r := <-rc:
		if r.err != nil || r.data != "wake" {
			t.Fatalf("ReadBatch: %q, %v", r.data, r.err)
		}
	case <-time.After(timeout):
		t.Fatal("ReadBatch did not wake")
	}
}

// TestConcurrent runs writers and a reader at once (meaningful with -race)
// and checks the counters add up.
func TestConcurrent(t *testing.T) {
	n := New(nil)
	n.SetImpairment(Impairment{Loss: 0.1, ReorderEvery: 5, Delay: time.Millisecond})
	b, err := n.ListenConn(ap(hub, 4754), udp)
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 4, 500
	var wg sync.WaitGroup
	for w := range writers {
		c, err := n.ListenConn(ap(spoke1, uint16(5000+w)), udp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		wg.Go(func() {
			for i := range each {
				ds := []underlay.Datagram{{Buf: fmt.Appendf(nil, "%d-%d", w, i), Peer: ap(hub, 4754)}}
				ds[0].Len = len(ds[0].Buf)
				if _, err := c.WriteBatch(ds); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	readDone := make(chan int)
	go func() {
		got := 0
		ds := make([]underlay.Datagram, 16)
		for i := range ds {
			ds[i].Buf = make([]byte, 64)
		}
		for {
			k, err := b.ReadBatch(ds)
			if err != nil {
				readDone <- got
				return
			}
			got += k
		}
	}()
	wg.Wait()
	// Let delayed datagrams land, then flush held ones.
	deadline := time.Now().Add(timeout)
	n.SetImpairment(Impairment{})
	for {
		s := n.Stats()
		if s.Delivered+s.Dropped() == s.Sent && s.Received == s.Delivered {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters never settled: %+v", s)
		}
		time.Sleep(time.Millisecond)
	}
	b.Close()
	got := <-readDone
	s := n.Stats()
	if s.Sent != writers*each || uint64(got) != s.Received || s.DroppedLoss == 0 || s.Reordered == 0 {
		t.Errorf("read %d, stats %+v", got, s)
	}
}

// BenchmarkRoundTrip: one batch written and read back; the in-memory path
// with no delay allocates nothing per datagram.
func BenchmarkRoundTrip(b *testing.B) {
	n := New(nil)
	x, _ := n.ListenConn(ap(spoke1, 0), gre)
	y, _ := n.ListenConn(ap(hub, 0), gre)
	defer x.Close()
	defer y.Close()
	const batch = 64
	ds := make([]underlay.Datagram, batch)
	rd := make([]underlay.Datagram, batch)
	for i := range ds {
		ds[i] = underlay.Datagram{Buf: make([]byte, 1500), Off: headroom, Len: 1400, Peer: ap(hub, 0)}
		rd[i] = underlay.Datagram{Buf: make([]byte, 1500)}
	}
	b.ReportAllocs()
	b.SetBytes(batch * 1400)
	for b.Loop() {
		if _, err := x.WriteBatch(ds); err != nil {
			b.Fatal(err)
		}
		for got := 0; got < batch; {
			for i := range rd {
				rd[i].Off = headroom
			}
			k, err := y.ReadBatch(rd)
			if err != nil {
				b.Fatal(err)
			}
			got += k
		}
	}
}

func TestZeroAllocs(t *testing.T) {
	n := New(nil)
	x := listen(t, n, ap(spoke1, 4754), udp)
	y := listen(t, n, ap(hub, 4754), udp)
	ds := []underlay.Datagram{{Buf: make([]byte, 1500), Off: headroom, Len: 1000, Peer: ap(hub, 4754)}}
	rd := []underlay.Datagram{{Buf: make([]byte, 1500), Off: headroom}}
	round := func() {
		x.WriteBatch(ds)
		y.ReadBatch(rd)
	}
	round()
	if a := testing.AllocsPerRun(100, round); a > 0.1 && !raceEnabled {
		t.Errorf("%v allocations per round trip", a)
	}
}

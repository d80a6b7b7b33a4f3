//go:build linux

package underlay

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/dmvpn/dmvpn/gre"
	"github.com/dmvpn/dmvpn/nbma"
	"golang.org/x/sys/unix"
)

// These tests need root: each opens its sockets in a private network
// namespace (inNetns) and sends only to loopback addresses there.

const (
	testHeadroom = 16
	testTimeout  = 5 * time.Second
)

var (
	lo1 = netip.MustParseAddr("127.0.0.1")
	lo2 = netip.MustParseAddr("127.0.0.2")
	lo3 = netip.MustParseAddr("127.0.0.3")
)

type testConn interface {
	StatsConn
	SetReadDeadline(time.Time) error
}

// newDatagrams returns n datagrams with size-byte buffers and Off at the
// test headroom.
func newDatagrams(n, size int) []Datagram {
	ds := make([]Datagram, n)
	for i := range ds {
		ds[i] = Datagram{Buf: make([]byte, size), Off: testHeadroom}
	}
	return ds
}

// greFrame is GRE packet i: a keyed GRE header (key i, protocol IPv4)
// followed by a recognisable body of bodyLen bytes.
func greFrame(i, bodyLen int) []byte {
	h := gre.Header{KeyPresent: true, Key: uint32(i), Protocol: gre.ProtoIPv4}
	b := make([]byte, h.Len()+bodyLen)
	if _, err := h.PutHeader(b); err != nil {
		panic(err)
	}
	for j := h.Len(); j < len(b); j++ {
		b[j] = byte(i + j)
	}
	return b
}

// setPayload puts p behind the headroom of d and addresses it to peer.
func setPayload(d *Datagram, p []byte, peer netip.AddrPort) {
	d.Off = testHeadroom
	d.Len = copy(d.Buf[d.Off:], p)
	d.Peer = peer
}

type received struct {
	peer    netip.AddrPort
	off     int
	payload []byte
}

// readN reads until n datagrams have arrived, failing after testTimeout.
func readN(t testing.TB, c testConn, n int) []received {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	ds := newDatagrams(c.BatchSize(), 2048)
	var got []received
	for len(got) < n {
		for i := range ds {
			ds[i].Off = testHeadroom
		}
		k, err := c.ReadBatch(ds)
		if err != nil {
			t.Fatalf("ReadBatch after %d of %d datagrams: %v", len(got), n, err)
		}
		for _, d := range ds[:k] {
			got = append(got, received{d.Peer, d.Off, bytes.Clone(d.Payload())})
		}
	}
	if len(got) != n {
		t.Fatalf("got %d datagrams, want %d", len(got), n)
	}
	return got
}

// expectNothing checks that c receives nothing within d.
func expectNothing(t testing.TB, c testConn, d time.Duration) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(d)); err != nil {
		t.Fatal(err)
	}
	defer c.SetReadDeadline(time.Time{})
	ds := newDatagrams(4, 2048)
	n, err := c.ReadBatch(ds)
	if !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("ReadBatch = %d, %v; want a deadline error (first from %v)", n, err, ds[0].Peer)
	}
}

// closeAll closes the Conns that were opened.
func closeAll[C interface {
	comparable
	Conn
}](cs []C) {
	var none C
	for _, c := range cs {
		if c != none {
			c.Close()
		}
	}
}

// The sockets as the node opens them (node.listenReal): GRE in raw IPv4,
// IP protocol 47, and GRE-in-UDP, neither handing on less than the smallest
// GRE header. Most tests here use them; a payload is a payload to the socket.
var (
	greSpec = Spec{Transport: nbma.TransportGRE, MinLen: gre.MinLen}
	udpSpec = Spec{Transport: nbma.TransportUDP, MinLen: gre.MinLen}
)

func listenGRE(local netip.Addr) (*IPConn, error)      { return ListenIP(local, 47, greSpec) }
func listenUDP(local netip.AddrPort) (*UDPConn, error) { return ListenUDP(local, udpSpec) }

func listenGREs(t testing.TB, addrs ...netip.Addr) []*IPConn {
	t.Helper()
	cs := make([]*IPConn, len(addrs))
	t.Cleanup(func() { closeAll(cs) })
	inNetns(t, func() error {
		for i, a := range addrs {
			c, err := listenGRE(a)
			if err != nil {
				return err
			}
			cs[i] = c
		}
		return nil
	})
	return cs
}

func listenUDPs(t testing.TB, addrs ...netip.AddrPort) []*UDPConn {
	t.Helper()
	cs := make([]*UDPConn, len(addrs))
	t.Cleanup(func() { closeAll(cs) })
	inNetns(t, func() error {
		for i, a := range addrs {
			c, err := listenUDP(a)
			if err != nil {
				return err
			}
			cs[i] = c
		}
		return nil
	})
	return cs
}

// sendFrames sends frames first..first+n-1 from c to peer in one WriteBatch.
func sendFrames(t testing.TB, c Conn, peer netip.AddrPort, first, n, bodyLen int) {
	t.Helper()
	ds := newDatagrams(n, 2048)
	for i := range ds {
		setPayload(&ds[i], greFrame(first+i, bodyLen), peer)
	}
	sent, err := c.WriteBatch(ds)
	if err != nil || sent != n {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", sent, err, n)
	}
}

// checkFrames checks that got holds frames first..first+len(got)-1 in
// order, from peer, each starting at wantOff (any offset if negative) with a
// valid GRE header.
func checkFrames(t testing.TB, got []received, peer netip.AddrPort, first, bodyLen, wantOff int) {
	t.Helper()
	for i, r := range got {
		want := greFrame(first+i, bodyLen)
		if r.peer != peer {
			t.Errorf("datagram %d: Peer %v, want %v", i, r.peer, peer)
		}
		if wantOff >= 0 && r.off != wantOff {
			t.Errorf("datagram %d: Off %d, want %d", i, r.off, wantOff)
		}
		if !bytes.Equal(r.payload, want) {
			t.Errorf("datagram %d: payload %x, want %x", i, r.payload, want)
			continue
		}
		h, _, err := gre.Decode(r.payload)
		if err != nil || h.Key != uint32(first+i) {
			t.Errorf("datagram %d: GRE decode key %d, %v", i, h.Key, err)
		}
	}
}

func TestGREBatch(t *testing.T) {
	cs := listenGREs(t, lo2, lo1)
	a, b := cs[0], cs[1]
	if got, want := b.LocalAddr(), netip.AddrPortFrom(lo1, 0); got != want {
		t.Fatalf("LocalAddr %v, want %v", got, want)
	}
	if b.Transport() != nbma.TransportGRE {
		t.Fatalf("Transport %v", b.Transport())
	}
	const n = 100
	sendFrames(t, a, netip.AddrPortFrom(lo1, 0), 0, n, 200)
	got := readN(t, b, n)
	// Off moved past the 20-byte IPv4 header the kernel delivers.
	checkFrames(t, got, netip.AddrPortFrom(lo2, 0), 0, 200, testHeadroom+20)
	// The sender's socket is bound to 127.0.0.2 and sees none of it.
	expectNothing(t, a, 100*time.Millisecond)

	// Reply to the peer as read.
	sendFrames(t, b, got[0].peer, 1000, 3, 10)
	checkFrames(t, readN(t, a, 3), netip.AddrPortFrom(lo1, 0), 1000, 10, testHeadroom+20)

	if s := b.Stats(); s.Received != n || s.Sent != 3 || s.Dropped != 0 || s.SendErrors != 0 {
		t.Errorf("receiver stats %+v", s)
	}
	if s := a.Stats(); s.Sent != n || s.Received != 3 {
		t.Errorf("sender stats %+v", s)
	}
}

// TestGREBoundAddressFilter records what the kernel does with raw sockets
// bound to different addresses: an unbound one sees GRE to every local
// address, a bound one only GRE to its own.
func TestGREBoundAddressFilter(t *testing.T) {
	cs := listenGREs(t, lo1, lo2, netip.Addr{}, lo3)
	b1, b2, wild, sender := cs[0], cs[1], cs[2], cs[3]
	if got, want := wild.LocalAddr(), netip.AddrPortFrom(netip.IPv4Unspecified(), 0); got != want {
		t.Fatalf("LocalAddr %v, want %v", got, want)
	}
	sendFrames(t, sender, netip.AddrPortFrom(lo1, 0), 0, 2, 8)
	sendFrames(t, sender, netip.AddrPortFrom(lo2, 0), 2, 2, 8)
	from := netip.AddrPortFrom(lo3, 0)
	checkFrames(t, readN(t, b1, 2), from, 0, 8, testHeadroom+20)
	checkFrames(t, readN(t, b2, 2), from, 2, 8, testHeadroom+20)
	checkFrames(t, readN(t, wild, 4), from, 0, 8, testHeadroom+20)
	expectNothing(t, b1, 50*time.Millisecond)
	expectNothing(t, b2, 50*time.Millisecond)
	expectNothing(t, sender, 50*time.Millisecond)
	for _, c := range cs {
		if s := c.Stats(); s.Dropped != 0 {
			t.Errorf("%v dropped %d: the kernel let through GRE for another address", c.LocalAddr(), s.Dropped)
		}
	}
}

// TestGREIPOptions sends with IPv4 options so the received header is longer
// than 20 bytes; ReadBatch must skip it by its IHL.
func TestGREIPOptions(t *testing.T) {
	cs := listenGREs(t, lo2, lo1)
	a, b := cs[0], cs[1]
	var serr error
	err := a.rc.Control(func(fd uintptr) {
		// Four NOPs: one 32-bit word of options, IHL 6.
		serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IP, unix.IP_OPTIONS, "\x01\x01\x01\x01")
	})
	if err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	sendFrames(t, a, netip.AddrPortFrom(lo1, 0), 0, 5, 30)
	checkFrames(t, readN(t, b, 5), netip.AddrPortFrom(lo2, 0), 0, 30, testHeadroom+24)
}

// TestGREFragments: on a 1500-byte MTU a 3000-byte GRE packet leaves in
// fragments (the kernel's default path-MTU mode fragments rather than
// refusing) and arrives reassembled, in one piece.
func TestGREFragments(t *testing.T) {
	var a, b *IPConn
	t.Cleanup(func() { closeAll([]*IPConn{a, b}) })
	inNetns(t, func() error {
		if err := linkMTU("lo", 1500); err != nil {
			return err
		}
		if ifi, err := net.InterfaceByName("lo"); err != nil || ifi.MTU != 1500 {
			return fmt.Errorf("lo MTU not set: %v %v", ifi, err)
		}
		var err error
		if a, err = listenGRE(lo2); err != nil {
			return err
		}
		b, err = listenGRE(lo1)
		return err
	})
	ds := newDatagrams(1, 4096)
	setPayload(&ds[0], greFrame(1, 3000), netip.AddrPortFrom(lo1, 0))
	if n, err := a.WriteBatch(ds); n != 1 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	if err := b.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	rd := newDatagrams(1, 4096)
	if n, err := b.ReadBatch(rd); n != 1 || err != nil {
		t.Fatalf("ReadBatch = %d, %v", n, err)
	}
	checkFrames(t, []received{{rd[0].Peer, rd[0].Off, rd[0].Payload()}}, netip.AddrPortFrom(lo2, 0), 1, 3000, testHeadroom+20)
}

// TestGREDropsShort mixes packets too short for GRE into a batch: they are
// dropped and counted, and the good ones still come back in order with no
// gaps in the batch.
func TestGREDropsShort(t *testing.T) {
	cs := listenGREs(t, lo2, lo1)
	a, b := cs[0], cs[1]
	peer := netip.AddrPortFrom(lo1, 0)
	ds := newDatagrams(6, 256)
	setPayload(&ds[0], []byte{0, 0}, peer)
	setPayload(&ds[1], greFrame(0, 40), peer)
	setPayload(&ds[2], []byte{1}, peer)
	setPayload(&ds[3], []byte{1, 2, 3}, peer)
	setPayload(&ds[4], greFrame(1, 40), peer)
	setPayload(&ds[5], greFrame(2, 40), peer)
	if n, err := a.WriteBatch(ds); n != 6 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	// Wait until all six are queued, so one recvmmsg sees the mix.
	time.Sleep(20 * time.Millisecond)
	got := readN(t, b, 3)
	// A packet moved down over a dropped one is copied without its IPv4
	// header, so its Off stays at the headroom; one read in place has Off
	// past the header. Either way Off is at the GRE header.
	checkFrames(t, got, netip.AddrPortFrom(lo2, 0), 0, 40, -1)
	for i, r := range got {
		if r.off != testHeadroom && r.off != testHeadroom+20 {
			t.Errorf("datagram %d: Off %d", i, r.off)
		}
	}
	if s := b.Stats(); s.Dropped != 3 || s.Received != 3 {
		t.Errorf("stats %+v, want 3 dropped, 3 received", s)
	}
}

func TestGREWriteBadPeer(t *testing.T) {
	cs := listenGREs(t, lo2, lo1)
	a, b := cs[0], cs[1]
	ds := newDatagrams(3, 256)
	setPayload(&ds[0], greFrame(0, 8), netip.AddrPortFrom(lo1, 0))
	setPayload(&ds[1], greFrame(99, 8), netip.MustParseAddrPort("[2001:db8::1]:0"))
	setPayload(&ds[2], greFrame(1, 8), netip.AddrPortFrom(lo1, 4754)) // port ignored
	n, err := a.WriteBatch(ds)
	if n != 2 || err == nil {
		t.Fatalf("WriteBatch = %d, %v; want 2 and an error", n, err)
	}
	checkFrames(t, readN(t, b, 2), netip.AddrPortFrom(lo2, 0), 0, 8, testHeadroom+20)
	if s := a.Stats(); s.Sent != 2 || s.SendErrors != 1 {
		t.Errorf("stats %+v", s)
	}
}

func TestGREConcurrentWriters(t *testing.T) {
	cs := listenGREs(t, lo2, lo1)
	a, b := cs[0], cs[1]
	const writers, batches, per = 4, 10, 20
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			ds := newDatagrams(per, 256)
			for k := range batches {
				for i := range ds {
					setPayload(&ds[i], greFrame(w<<16|k*per+i, 16), netip.AddrPortFrom(lo1, 0))
				}
				if n, err := a.WriteBatch(ds); n != per || err != nil {
					errc <- fmt.Errorf("writer %d: WriteBatch = %d, %v", w, n, err)
					return
				}
			}
		})
	}
	got := readN(t, b, writers*batches*per)
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	seen := map[uint32]bool{}
	for _, r := range got {
		h, _, err := gre.Decode(r.payload)
		if err != nil {
			t.Fatal(err)
		}
		if seen[h.Key] {
			t.Fatalf("key %#x twice", h.Key)
		}
		seen[h.Key] = true
		if !bytes.Equal(r.payload, greFrame(int(h.Key), 16)) {
			t.Fatalf("key %#x: corrupt payload", h.Key)
		}
	}
}

func TestCloseUnblocksRead(t *testing.T) {
	g := listenGREs(t, lo1)[0]
	u := listenUDPs(t, netip.AddrPortFrom(lo1, 0))[0]
	for _, c := range []Conn{g, u} {
		t.Run(c.Transport().String(), func(t *testing.T) {
			errc := make(chan error, 1)
			go func() {
				_, err := c.ReadBatch(newDatagrams(4, 256))
				errc <- err
			}()
			time.Sleep(20 * time.Millisecond) // let it block
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			select {
			case err := <-errc:
				if err != net.ErrClosed {
					t.Fatalf("ReadBatch after Close: %v, want net.ErrClosed", err)
				}
			case <-time.After(testTimeout):
				t.Fatal("ReadBatch still blocked after Close")
			}
			if _, err := c.ReadBatch(newDatagrams(1, 64)); err != net.ErrClosed {
				t.Fatalf("second ReadBatch: %v", err)
			}
			if _, err := c.WriteBatch(newDatagrams(1, 64)); err == nil {
				t.Fatal("WriteBatch after Close succeeded")
			}
		})
	}
}

func TestReadBatchBadBuffer(t *testing.T) {
	g := listenGREs(t, lo1)[0]
	ds := newDatagrams(2, 64)
	ds[1].Off = 64
	if _, err := g.ReadBatch(ds); err == nil {
		t.Fatal("ReadBatch accepted a datagram with no room")
	}
}

func TestUDPBatch(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, gre.UDPPort))
	a, b := cs[0], cs[1]
	if a.LocalAddr().Addr() != lo2 || a.LocalAddr().Port() == 0 {
		t.Fatalf("LocalAddr %v: want 127.0.0.2 and the port the kernel chose", a.LocalAddr())
	}
	if got, want := b.LocalAddr(), netip.AddrPortFrom(lo1, gre.UDPPort); got != want || b.Transport() != nbma.TransportUDP {
		t.Fatalf("LocalAddr %v %v, want %v udp", got, b.Transport(), want)
	}
	const n = 200 // more than one BatchSize
	sendFrames(t, a, b.LocalAddr(), 0, n, 300)
	got := readN(t, b, n)
	// UDP: Off stays where the caller put it; Peer has the source port.
	checkFrames(t, got, a.LocalAddr(), 0, 300, testHeadroom)
	sendFrames(t, b, got[0].peer, 500, 4, 0)
	checkFrames(t, readN(t, a, 4), b.LocalAddr(), 500, 0, testHeadroom)
	if s := b.Stats(); s.Received != n || s.Sent != 4 || s.Dropped != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestUDPDropsShortAndTruncated(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0))
	a, b := cs[0], cs[1]
	ds := newDatagrams(4, 2048)
	setPayload(&ds[0], []byte{1, 2}, b.LocalAddr())
	setPayload(&ds[1], greFrame(7, 1500), b.LocalAddr()) // too big for the reader below
	setPayload(&ds[2], greFrame(8, 20), b.LocalAddr())
	setPayload(&ds[3], nil, b.LocalAddr())
	if n, err := a.WriteBatch(ds); n != 4 || err != nil {
		t.Fatalf("WriteBatch = %d, %v", n, err)
	}
	time.Sleep(20 * time.Millisecond)
	if err := b.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
		t.Fatal(err)
	}
	rd := newDatagrams(4, 512)
	n, err := b.ReadBatch(rd)
	if err != nil || n != 1 {
		t.Fatalf("ReadBatch = %d, %v; want 1", n, err)
	}
	checkFrames(t, []received{{rd[0].Peer, rd[0].Off, rd[0].Payload()}}, a.LocalAddr(), 8, 20, testHeadroom)
	if s := b.Stats(); s.Dropped != 3 {
		t.Errorf("stats %+v, want 3 dropped", s)
	}
}

func TestUDPWriteBadPeer(t *testing.T) {
	cs := listenUDPs(t, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0))
	a, b := cs[0], cs[1]
	ds := newDatagrams(4, 256)
	setPayload(&ds[0], greFrame(0, 8), netip.AddrPortFrom(lo1, 0))                    // port 0
	setPayload(&ds[1], greFrame(0, 8), netip.MustParseAddrPort("[::1]:4754"))         // IPv6 on an IPv4 socket
	setPayload(&ds[2], greFrame(0, 8), netip.AddrPort{})                              // nothing
	setPayload(&ds[3], greFrame(0, 8), netip.AddrPortFrom(lo1, b.LocalAddr().Port())) // fine
	n, err := a.WriteBatch(ds)
	if n != 1 || err == nil {
		t.Fatalf("WriteBatch = %d, %v; want 1 and an error", n, err)
	}
	checkFrames(t, readN(t, b, 1), a.LocalAddr(), 0, 8, testHeadroom)
}

// TestUDPDualStack: a socket on [::] talks to IPv4 and IPv6 peers, and IPv4
// peers appear as plain IPv4 addresses both ways.
func TestUDPDualStack(t *testing.T) {
	var a6, a4, dual *UDPConn
	t.Cleanup(func() { closeAll([]*UDPConn{a6, a4, dual}) })
	inNetns(t, func() error {
		var err error
		if dual, err = listenUDP(netip.MustParseAddrPort("[::]:0")); err != nil {
			return err
		}
		if a4, err = listenUDP(netip.AddrPortFrom(lo2, 0)); err != nil {
			return err
		}
		a6, err = listenUDP(netip.MustParseAddrPort("[::1]:0"))
		return err
	})
	port := dual.LocalAddr().Port()
	sendFrames(t, a4, netip.AddrPortFrom(lo1, port), 0, 2, 8)
	checkFrames(t, readN(t, dual, 2), a4.LocalAddr(), 0, 8, testHeadroom)
	sendFrames(t, a6, netip.AddrPortFrom(netip.IPv6Loopback(), port), 2, 2, 8)
	checkFrames(t, readN(t, dual, 2), a6.LocalAddr(), 2, 8, testHeadroom)
	sendFrames(t, dual, a4.LocalAddr(), 4, 1, 8)
	sendFrames(t, dual, a6.LocalAddr(), 5, 1, 8)
	from4 := readN(t, a4, 1)
	from6 := readN(t, a6, 1)
	checkFrames(t, from4, netip.AddrPortFrom(lo1, port), 4, 8, testHeadroom)
	checkFrames(t, from6, netip.AddrPortFrom(netip.IPv6Loopback(), port), 5, 8, testHeadroom)
}

// roundTrip sends ds from a to b and reads them all back into rd.
func roundTrip(tb testing.TB, a, b Conn, ds, rd []Datagram) {
	n, err := a.WriteBatch(ds)
	if err != nil || n != len(ds) {
		tb.Fatalf("WriteBatch = %d, %v", n, err)
	}
	for got := 0; got < n; {
		for i := range rd {
			rd[i].Off = testHeadroom
		}
		k, err := b.ReadBatch(rd[:min(len(rd), n-got)])
		if err != nil {
			tb.Fatalf("ReadBatch: %v", err)
		}
		got += k
	}
}

func pairFor(tb testing.TB, tr nbma.Transport) (a, b testConn) {
	switch tr {
	case nbma.TransportGRE:
		cs := listenGREs(tb, lo2, lo1)
		return cs[0], cs[1]
	default:
		cs := listenUDPs(tb, netip.AddrPortFrom(lo2, 0), netip.AddrPortFrom(lo1, 0))
		return cs[0], cs[1]
	}
}

func roundTripData(b testConn, batch, size int) (ds, rd []Datagram) {
	peer := b.LocalAddr()
	ds = newDatagrams(batch, 2048)
	for i := range ds {
		setPayload(&ds[i], greFrame(i, size-8), peer)
	}
	return ds, newDatagrams(batch, 2048)
}

// TestZeroAllocs checks the steady state of WriteBatch + ReadBatch allocates
// nothing (run without -race: the race detector allocates), on every path:
// raw GRE; GRE-in-UDP with GSO and GRO (runs coalesced on send, split on
// receive, also into batches smaller than a coalesced message so datagrams
// wait in the reader between calls, and with mixed sizes so runs and single
// datagrams share a sendmmsg); GRE-in-UDP without offloads.
func TestZeroAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates")
	}
	for _, tc := range []struct {
		name     string
		tr       nbma.Transport
		offloads bool
		readLen  int // datagrams per ReadBatch (0: the whole batch)
		mixed    bool
	}{
		{name: "gre", tr: nbma.TransportGRE},
		{name: "udp", tr: nbma.TransportUDP, offloads: true},
		{name: "udp small reads", tr: nbma.TransportUDP, offloads: true, readLen: 5},
		{name: "udp mixed sizes", tr: nbma.TransportUDP, offloads: true, mixed: true},
		{name: "udp no offloads", tr: nbma.TransportUDP},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := pairFor(t, tc.tr)
			if tc.tr == nbma.TransportUDP {
				if tc.offloads {
					requireOffloads(t, a.(*UDPConn), b.(*UDPConn))
				} else {
					setOffloads(t, a.(*UDPConn), false, false)
					setOffloads(t, b.(*UDPConn), false, false)
				}
			}
			if err := b.SetReadDeadline(time.Now().Add(testTimeout)); err != nil {
				t.Fatal(err)
			}
			ds, rd := roundTripData(b, 64, 1000)
			if tc.mixed {
				for i := range ds {
					if i%7 == 3 {
						setPayload(&ds[i], greFrame(i, 300+i), b.LocalAddr())
					}
				}
			}
			if tc.readLen > 0 {
				rd = rd[:tc.readLen]
			}
			roundTrip(t, a, b, ds, rd) // warm up the pools
			if allocs := testing.AllocsPerRun(100, func() { roundTrip(t, a, b, ds, rd) }); allocs != 0 {
				t.Fatalf("%v allocations per round trip of %d datagrams, want 0", allocs, len(ds))
			}
			sa, sb := a.Stats(), b.Stats()
			if sb.Received != sa.Sent || sb.Dropped != 0 || sa.SendErrors != 0 {
				t.Fatalf("sender %+v receiver %+v", sa, sb)
			}
			if used := sa.GSOMsgs > 0 && sb.GROMsgs > 0; used != tc.offloads {
				t.Fatalf("offloads used %v, want %v: sender %+v receiver %+v", used, tc.offloads, sa, sb)
			}
		})
	}
}

func benchmarkRoundTrip(b *testing.B, tr nbma.Transport, batch, size int) {
	x, y := pairFor(b, tr)
	if err := y.SetReadDeadline(time.Now().Add(time.Minute)); err != nil {
		b.Fatal(err)
	}
	ds, rd := roundTripData(y, batch, size)
	roundTrip(b, x, y, ds, rd)
	b.ReportAllocs()
	b.SetBytes(int64(batch * size))
	b.ResetTimer()
	for b.Loop() {
		roundTrip(b, x, y, ds, rd)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*batch)/b.Elapsed().Seconds(), "pkts/s")
}

// Each op writes a batch from one socket and reads it at the other.
func BenchmarkGRERoundTrip64x1400(b *testing.B) { benchmarkRoundTrip(b, nbma.TransportGRE, 64, 1400) }
func BenchmarkUDPRoundTrip64x1400(b *testing.B) { benchmarkRoundTrip(b, nbma.TransportUDP, 64, 1400) }
func BenchmarkGRERoundTrip1x64(b *testing.B)    { benchmarkRoundTrip(b, nbma.TransportGRE, 1, 64) }
func BenchmarkUDPRoundTrip1x64(b *testing.B)    { benchmarkRoundTrip(b, nbma.TransportUDP, 1, 64) }
